"""Wiring of the pipeline: broker, actors, an in-process worker and the process manager."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import dramatiq

from commands.service import HeatersApplication
from infra.broker import make_broker, queue_depths
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import ObjectStorage
from processors.actors import PipelineActors
from processors.middleware import StageTiming
from processors.process_manager import PipelineProcessManager
from processors.stages import PipelineContext, clean_workdirs
from processors.work_ledger import WorkLedger

if TYPE_CHECKING:
    from infra.clip_embedder import ClipEmbedder

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """The pipeline of one process, by role: a process manager (follows the log, sends work) and/or
    a worker side (the actors, their work ledger). Each role opens only the connections it uses."""

    context: PipelineContext
    broker: dramatiq.Broker
    actors: PipelineActors
    manager: PipelineProcessManager | None
    ledger: WorkLedger | None
    worker: dramatiq.Worker | None = None

    def start(
        self,
        *,
        worker: bool = True,
        worker_threads: int = 2,
        queues: set[str] | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        if worker:
            clean_workdirs(self.context.settings)  # what killed workers left behind
            self.worker = dramatiq.Worker(
                self.broker, queues=queues, worker_threads=worker_threads, worker_timeout=100
            )
            self.worker.start()
        if self.manager is not None:
            self.manager.start(poll_seconds=poll_seconds)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.stop()
        if self.worker is not None:
            self.worker.stop()
        self.broker.close()
        if self.ledger is not None:
            self.ledger.close()

    def queue_depths(self) -> dict[str, int]:
        return queue_depths(self.broker)


def build_pipeline(
    settings: Settings,
    app: HeatersApplication,
    address: DatabaseAddress,
    storage: ObjectStorage,
    *,
    embedder_factory: Callable[[], ClipEmbedder] | None = None,
    broker: dramatiq.Broker | None = None,
    min_backoff_ms: int = 1_000,
    manager: bool = True,
    worker: bool = True,
) -> Pipeline:
    """``manager``: follow the log and send work; ``worker``: run the actors (claims, heartbeats)."""
    context = PipelineContext(app, storage, settings, embedder_factory)
    broker = broker or make_broker(settings)
    broker.add_middleware(StageTiming())
    ledger = (
        WorkLedger(
            address,
            settings.database_schema,
            heartbeat_seconds=settings.stage_heartbeat_seconds,
            heartbeat_timeout_seconds=settings.stage_heartbeat_timeout_seconds,
            start_timeout_seconds=settings.dispatch_start_timeout_seconds,
        )
        if worker
        else None
    )
    actors = PipelineActors(
        broker, lambda: context, settings.max_attempts, min_backoff_ms=min_backoff_ms, ledger=ledger
    )
    for queue in actors.queues:
        broker.declare_queue(queue)

    def dispatch(stage: str, aggregate_id: UUID, delay_ms: int | None) -> object:
        return actors.dispatch(stage, aggregate_id, delay_ms)

    process_manager = (
        PipelineProcessManager(
            app,
            address,
            settings.database_schema,
            dispatch,
            archive_grace_seconds=settings.archive_grace_seconds,
            start_timeout_seconds=settings.dispatch_start_timeout_seconds,
            heartbeat_timeout_seconds=settings.stage_heartbeat_timeout_seconds,
        )
        if manager
        else None
    )
    return Pipeline(context, broker, actors, process_manager, ledger)
