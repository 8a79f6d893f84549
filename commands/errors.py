"""Errors of the command side besides :class:`domain.errors.DomainError`."""

from __future__ import annotations

from uuid import UUID


class NotFound(LookupError):
    """No video or clip has the given id."""

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"no {kind} with id {ident}")
        self.kind = kind
        self.ident = ident


class Conflict(Exception):
    """Someone else changed the clip this command decided on; nothing was stored."""

    def __init__(self, clip_id: UUID, state: str) -> None:
        super().__init__(
            f"clip {clip_id} was changed by someone else meanwhile (it is now {state}); nothing was saved, "
            "reload and decide again"
        )
        self.clip_id = clip_id
        self.state = state


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
