"""Wiring of the pipeline: broker, actors, an in-process worker and the process manager."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING
from uuid import UUID

import dramatiq
from dramatiq.middleware import Retries

from commands.service import HeatersApplication
from infra.broker import make_broker, queue_depths
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.media.allocator import keep_freed_arrays
from infra.object_storage import ObjectStorage
from processors.actors import declare_actors, dispatch
from processors.middleware import StageContext, StageFailures, StageTiming, WorkClaims
from processors.process_manager import PipelineProcessManager
from processors.queues import QUEUES
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
    manager: PipelineProcessManager | None
    ledger: WorkLedger | None
    workers: list[dramatiq.Worker] = field(default_factory=list)

    def start(
        self,
        *,
        worker: bool = True,
        worker_threads: int = 2,
        queues: set[str] | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        """Start the process manager and, with ``worker``, the actors of ``queues`` (default all).

        Downloads get a worker of their own (``HEATERS_INGEST_WORKER_THREADS`` threads) beside the one
        for the other queues (``worker_threads``), so a slow download never holds up proxies, shots or
        embeddings of videos already downloaded; so do embeddings (``HEATERS_EMBEDDING_WORKER_THREADS``),
        whose threads pool their clips into shared batches."""
        if worker:
            clean_workdirs(self.context.settings)  # what killed workers left behind
            keep_freed_arrays(self.context.settings.media_allocator_tuning)
            wanted = set(queues or QUEUES)
            settings = self.context.settings
            groups: list[tuple[set[str], int]] = []
            own = {"ingest": settings.ingest_worker_threads, "embeddings": settings.embedding_worker_threads}
            for queue, threads in own.items():
                if queue in wanted and len(wanted) > 1:
                    groups.append(({queue}, threads))
                    wanted = wanted - {queue}
            groups.append((wanted, worker_threads))
            for group, threads in groups:
                started = dramatiq.Worker(
                    self.broker, queues=group, worker_threads=threads, worker_timeout=100
                )
                started.start()
                self.workers.append(started)
                log.info("worker for %s: %d threads", ", ".join(sorted(group)), threads)
        if self.manager is not None:
            self.manager.start(poll_seconds=poll_seconds)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.stop()
        for started in self.workers:
            started.stop()
        self.broker.close()
        if self.ledger is not None:
            self.ledger.close()

    def queue_depths(self) -> dict[str, int]:
        return queue_depths(self.broker)

    def dispatch(self, stage: str, aggregate_id: UUID, delay_ms: int | None = None) -> str:
        """Send one stage's message for a video or clip (the process manager sends through this)."""
        return dispatch(self.broker, stage, aggregate_id, delay_ms)


def build_pipeline(
    settings: Settings,
    app: HeatersApplication,
    address: DatabaseAddress,
    storage: ObjectStorage,
    *,
    embedder_factory: Callable[[], ClipEmbedder] | None = None,
    manager: bool = True,
    worker: bool = True,
) -> Pipeline:
    """``manager``: follow the log and send work; ``worker``: run the actors (claims, heartbeats)."""
    context = PipelineContext(app, storage, settings, embedder_factory)
    broker = make_broker(settings)
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
    broker.add_middleware(StageFailures(context), before=Retries)  # its after-hook sees Retries' decision
    broker.add_middleware(StageTiming())
    broker.add_middleware(StageContext(context))
    if ledger is not None:
        broker.add_middleware(WorkClaims(ledger))
    declare_actors(broker)
    process_manager = (
        PipelineProcessManager(
            app,
            address,
            settings.database_schema,
            partial(dispatch, broker),
            archive_grace_seconds=settings.archive_grace_seconds,
            start_timeout_seconds=settings.dispatch_start_timeout_seconds,
            heartbeat_timeout_seconds=settings.stage_heartbeat_timeout_seconds,
        )
        if manager
        else None
    )
    return Pipeline(context, broker, process_manager, ledger)
