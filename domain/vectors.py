"""Compact vectors for events: a clip's embedding vectors as little-endian IEEE floats (float32 or
float16) concatenated and base64-encoded, so an ``Embedded`` event holds a short string rather than
hundreds of JSON float literals. Pure (stdlib ``struct`` and ``base64`` only)."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence

from domain.errors import DomainError

#: dtype name → (struct format character, bytes per value).
DTYPES: dict[str, tuple[str, int]] = {"float32": ("f", 4), "float16": ("e", 2)}
DEFAULT_DTYPE = "float32"


def _format(dtype: str) -> tuple[str, int]:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise DomainError(f"unknown vector dtype {dtype!r}; dtypes are {', '.join(DTYPES)}") from None


def encode_vectors(vectors: Sequence[Sequence[float]], dtype: str = DEFAULT_DTYPE) -> str:
    """Base64 of the vectors' values, row after row, as little-endian ``dtype``. All vectors must have
    one non-zero dimension and finite values (that fit in the dtype)."""
    char, _ = _format(dtype)
    if not vectors or not vectors[0] or any(len(v) != len(vectors[0]) for v in vectors):
        raise DomainError("vectors must be non-empty and of one dimension")
    flat = [float(x) for v in vectors for x in v]
    if not all(math.isfinite(x) for x in flat):
        raise DomainError("vectors must hold finite numbers")
    try:
        packed = struct.pack(f"<{len(flat)}{char}", *flat)
    except (OverflowError, struct.error) as error:
        raise DomainError(f"vector values do not fit in {dtype}: {error}") from None
    return base64.b64encode(packed).decode("ascii")


def packed_bytes(data: str, dtype: str, dimension: int) -> bytes:
    """The little-endian bytes of ``data``, checked to hold one or more whole vectors."""
    _, size = _format(dtype)
    raw = base64.b64decode(data, validate=True)
    if dimension < 1 or not raw or len(raw) % (size * dimension):
        raise DomainError(f"{len(raw)} bytes of {dtype} are not whole vectors of dimension {dimension}")
    return raw


def decode_raw(data: str, dtype: str, dimension: int) -> tuple[float, ...]:
    """All values, flat (``count * dimension`` of them)."""
    char, size = _format(dtype)
    raw = packed_bytes(data, dtype, dimension)
    return struct.unpack(f"<{len(raw) // size}{char}", raw)


def decode_vectors(data: str, dtype: str, dimension: int) -> list[list[float]]:
    """The vectors :func:`encode_vectors` stored (float16 values come back as the nearest float)."""
    flat = decode_raw(data, dtype, dimension)
    return [list(flat[i : i + dimension]) for i in range(0, len(flat), dimension)]


def vector_count(data: str, dtype: str, dimension: int) -> int:
    """How many vectors ``data`` holds, without decoding them."""
    _, size = _format(dtype)
    padding = data.count("=", -2)
    return (len(data) * 3 // 4 - padding) // (size * dimension) if dimension > 0 else 0
