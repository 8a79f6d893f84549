"""Errors raised by the domain when a command breaks one of its rules, and the words they use."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID


class DomainError(Exception):
    """A command broke a rule of the domain; the message says which and why."""


class PartitionError(DomainError):
    """The clips of a video would no longer partition ``[0, frame_count)`` exactly."""


class Conflict(DomainError):
    """A decision was refused because another decision stands on a clip (or the clip changed since the
    reviewer saw it). Nothing was stored. The message names the clip, its state, who decided it and
    when, and what the reviewer can do now."""

    def __init__(
        self,
        message: str,
        clip_id: UUID,
        state: str,
        decided_by: str | None = None,
        decided_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.clip_id = clip_id
        self.state = state
        self.decided_by = decided_by
        self.decided_at = decided_at


def short_id(ident: UUID | str) -> str:
    """The first 8 hex digits of an id: what messages show (the full id is in the page's links)."""
    return str(ident)[:8]


def person(actor: str | None) -> str:
    """``user:rita`` → ``rita``; a pipeline stage keeps its ``stage:`` prefix."""
    if not actor:
        return "someone"
    return actor.removeprefix("user:")


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "an unknown time"
