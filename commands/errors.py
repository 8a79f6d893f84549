"""Errors of the command side besides :class:`domain.errors.DomainError`."""

from __future__ import annotations

from uuid import UUID

from domain.errors import Conflict

__all__ = ["Conflict", "NotFound", "parse_id"]


class NotFound(LookupError):
    """No video or clip has the given id."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"no {kind} with id {ident}")
        self.kind = kind
        self.ident = ident


def parse_id(value: object, kind: str = "id") -> UUID:
    """A UUID from user input, or a ``ValueError`` that says what was wrong."""
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a UUID string, got {type(value).__name__}")
    try:
        return UUID(value.strip())
    except ValueError:
        raise ValueError(f"{kind} {value!r} is not a valid id (expected a UUID)") from None
