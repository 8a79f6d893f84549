"""What every Heaters aggregate and event shares: an actor on each event, stable topics, and
per-stage progress of the media pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import DomainError
from domain.stages import StageMove, StageStatus

#: Actor of events recorded by the pipeline: ``stage:<name>``; people are ``user:<name>``.
SYSTEM_ACTOR = "stage:system"


def user_actor(name: str) -> str:
    return f"user:{name}"


def stage_actor(stage: str) -> str:
    return f"stage:{stage}"


@dataclass(frozen=True)
class StageProgress:
    """How far one pipeline stage of an aggregate has got."""

    status: StageStatus = StageStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    #: ``attempts`` when a person last asked for a retry: each retry gets a fresh budget of attempts.
    retry_base: int = 0

    def started(self, attempt: int) -> StageProgress:
        return replace(self, status=StageStatus.RUNNING, attempts=max(self.attempts, attempt))

    def succeeded(self) -> StageProgress:
        return replace(self, status=StageStatus.DONE, last_error=None)

    def failed(self, reason: str, attempt: int) -> StageProgress:
        return replace(
            self, status=StageStatus.FAILED, last_error=reason, attempts=max(self.attempts, attempt)
        )

    def takes_failure(self, attempt: int, reason: str) -> bool:
        """Whether a failure report of ``attempt`` is news: not once the stage is done, not twice."""
        if self.status == StageStatus.DONE or (
            self.status == StageStatus.FAILED and self.attempts >= attempt
        ):
            return False
        if not reason.strip():
            raise DomainError("a failure needs a reason a person can act on")
        return True

    def retried(self) -> StageProgress:
        return replace(self, status=StageStatus.PENDING, retry_base=self.attempts)

    def moved(self, move: StageMove, event: Any) -> StageProgress:
        """This progress after ``event``, which makes the ``move`` (``attempt`` and ``reason`` are its)."""
        if move is StageMove.START:
            return self.started(event.attempt)
        if move is StageMove.DONE:
            return self.succeeded()
        if move is StageMove.FAIL:
            return self.failed(event.reason, event.attempt)
        return self.retried()

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "attempts": self.attempts, "last_error": self.last_error}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> StageProgress:
        """The progress :meth:`as_dict` gave (a read model's copy; it keeps no ``retry_base``)."""
        return cls(StageStatus(stored["status"]), int(stored["attempts"]), stored["last_error"])


class HeatersAggregate(Aggregate):
    """Base aggregate: every event names who caused it (a user or a pipeline stage)."""

    class Event(Aggregate.Event):
        actor: str

    class Created(Event, Aggregate.Created):
        pass
