"""What every Heaters aggregate and event shares: an actor on each event, stable topics, and
per-stage progress of the media pipeline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from eventsourcing.domain import Aggregate

from domain.errors import DomainError

StageStatus = Literal["pending", "running", "done", "failed"]

#: Actor of events recorded by the pipeline: ``stage:<name>``; people are ``user:<name>``.
SYSTEM_ACTOR = "stage:system"


def user_actor(name: str) -> str:
    return f"user:{name}"


def stage_actor(stage: str) -> str:
    return f"stage:{stage}"


@dataclass(frozen=True)
class StageProgress:
    """How far one pipeline stage of an aggregate has got."""

    status: StageStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    #: ``attempts`` when a person last asked for a retry: each retry gets a fresh budget of attempts.
    retry_base: int = 0

    def started(self, attempt: int) -> StageProgress:
        return replace(self, status="running", attempts=max(self.attempts, attempt))

    def succeeded(self) -> StageProgress:
        return replace(self, status="done", last_error=None)

    def failed(self, reason: str, attempt: int) -> StageProgress:
        return replace(self, status="failed", last_error=reason, attempts=max(self.attempts, attempt))

    def takes_failure(self, attempt: int, reason: str) -> bool:
        """Whether a failure report of ``attempt`` is news: not once the stage is done, not twice."""
        if self.status == "done" or (self.status == "failed" and self.attempts >= attempt):
            return False
        if not reason.strip():
            raise DomainError("a failure needs a reason a person can act on")
        return True

    def retried(self) -> StageProgress:
        return replace(self, status="pending", retry_base=self.attempts)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "attempts": self.attempts, "last_error": self.last_error}


class HeatersAggregate(Aggregate):
    """Base aggregate: every event names who caused it (a user or a pipeline stage)."""

    class Event(Aggregate.Event):
        actor: str

    class Created(Event, Aggregate.Created):
        pass
