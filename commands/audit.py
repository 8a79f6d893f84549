"""What the auditor sees of an aggregate, the same in the CLI (``heaters history``) and on the web's
history pages: an "as of" point parsed from what a person typed, the state of an aggregate as plain
fields, and JSON for event payloads and state."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

#: A ``+`` left unescaped in a typed URL arrives as a space: ``…T12:00:00 01:00``.
_SPACED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
EXAMPLE = "e.g. 2026-01-31T12:00:00+00:00 or 2026-01-31T12:00:00Z"


def _time(text: str, unparsable: str) -> datetime:
    try:
        when = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} {unparsable} ({EXAMPLE})") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{text!r} needs a timezone ({EXAMPLE})")
    return when


def parse_time(text: str) -> datetime:
    """An ISO-8601 time with a timezone (``2026-01-31T12:00:00+01:00``, ``…Z``); ValueError saying
    what is wrong otherwise."""
    return _time(text, "is not an ISO-8601 time with a timezone")


def parse_as_of(text: str) -> int | datetime:
    """A version number, or else an ISO-8601 time with a timezone."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    return _time(text, "is neither a version number nor an ISO-8601 time")


def state_of(aggregate: object) -> dict[str, Any]:
    """An aggregate's fields by name (without the leading ``_``) and its ``state``."""
    state = {k.lstrip("_"): v for k, v in vars(aggregate).items() if k != "_pending_events"}
    state["state"] = getattr(aggregate, "state", None)
    return state


def jsonable(value: object) -> object:
    """``json.dumps``'s ``default`` for what events and aggregates hold: ids and paths as text, times in
    ISO-8601, sets sorted, objects with ``as_dict`` (stage progress) or public fields as dicts."""
    if isinstance(value, UUID | Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        return as_dict()
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)
