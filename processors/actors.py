"""Dramatiq actors: tiny wrappers that run one stage for one video or clip.

Separate queues keep long downloads from starving review-critical work: ``ingest`` (downloads),
``media`` (proxy, sprites, shots, keyframes, export, purge) and ``embeddings``. Each stage has its own
time limit; failures are retried with exponential backoff up to ``HEATERS_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import dramatiq
from dramatiq.middleware import CurrentMessage

from processors import stages
from processors.stages import PipelineContext
from processors.work_ledger import WorkLedger

log = logging.getLogger(__name__)

MINUTE_MS = 60_000


@dataclass(frozen=True)
class StageSpec:
    queue: str
    time_limit_ms: int


STAGE_SPECS: dict[str, StageSpec] = {
    "download": StageSpec("ingest", 180 * MINUTE_MS),
    "proxy": StageSpec("media", 120 * MINUTE_MS),
    "sprites": StageSpec("media", 60 * MINUTE_MS),
    "shots": StageSpec("media", 60 * MINUTE_MS),
    "keyframes": StageSpec("media", 5 * MINUTE_MS),
    "embedding": StageSpec("embeddings", 10 * MINUTE_MS),
    "export": StageSpec("media", 10 * MINUTE_MS),
    "purge": StageSpec("media", 5 * MINUTE_MS),
}


def _attempt() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) + 1 if message is not None else 1


class PipelineActors:
    """The pipeline's actors on one broker; ``dispatch(stage, id)`` sends one message."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        context: Callable[[], PipelineContext],
        max_attempts: int,
        min_backoff_ms: int = 1_000,
        max_backoff_ms: int = 5 * MINUTE_MS,
        ledger: WorkLedger | None = None,
    ) -> None:
        self.broker = broker
        self.ledger = ledger
        self.max_attempts = max_attempts
        self.actors: dict[str, dramatiq.Actor[Any, Any]] = {}

        def final(attempt: int) -> bool:
            return attempt >= max_attempts

        def video_stage(stage: str) -> Callable[[str], None]:
            def run(video_id: str) -> None:
                stages.VIDEO_STAGES[stage](context(), UUID(video_id), final)

            return run

        def clip_stage(stage: str) -> Callable[[str], None]:
            def run(clip_id: str) -> None:
                stages.CLIP_STAGES[stage](context(), UUID(clip_id), _attempt(), final)

            return run

        def purge(clip_id: str) -> None:
            stages.purge_archived(context(), UUID(clip_id))

        functions: dict[str, Callable[[str], None]] = {
            **{s: video_stage(s) for s in stages.VIDEO_STAGES},
            **{s: clip_stage(s) for s in stages.CLIP_STAGES},
            "purge": purge,
        }

        def claimed(stage: str, fn: Callable[[str], None]) -> Callable[[str], None]:
            """Run under a claim on the work row: skipped while a live attempt elsewhere holds it,
            and its heartbeat proves this one alive while it runs."""

            def run(aggregate_id: str) -> None:
                if ledger is None:
                    fn(aggregate_id)
                    return
                with ledger.running(stage, UUID(aggregate_id)) as claim:
                    if claim is not None:
                        fn(aggregate_id)

            return run

        for stage, bare in functions.items():
            spec = STAGE_SPECS[stage]
            fn = claimed(stage, bare)
            fn.__name__ = f"heaters_{stage}"
            self.actors[stage] = dramatiq.Actor(
                fn,
                broker=broker,
                actor_name=f"heaters_{stage}",
                queue_name=spec.queue,
                priority=0,
                options={
                    "time_limit": spec.time_limit_ms,
                    "max_retries": max_attempts - 1,
                    "min_backoff": min_backoff_ms,
                    "max_backoff": max_backoff_ms,
                },
            )

    def dispatch(self, stage: str, aggregate_id: UUID, delay_ms: int | None = None) -> str:
        message = self.actors[stage].send_with_options(args=(str(aggregate_id),), delay=delay_ms)
        log.info("dispatched %s for %s (message %s)", stage, aggregate_id, message.message_id)
        return str(message.message_id)

    @property
    def queues(self) -> set[str]:
        return {spec.queue for spec in STAGE_SPECS.values()}
