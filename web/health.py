"""Health and metrics endpoints, open without a login (for load balancers, compose and Prometheus):
``/healthz`` (the process answers), ``/readyz`` (and reaches PostgreSQL), ``/metrics``."""

from __future__ import annotations

import logging
from collections import Counter as Tally

import psycopg
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Response

from infra.config import Settings
from infra.database import DatabaseAddress
from infra.metrics import CONTENT_TYPE, exposition
from web.readmodels import ReadModels
from web.review import Projections

log = logging.getLogger(__name__)


class Health(Controller):
    include_in_schema = False

    @get("/healthz", sync_to_thread=False)
    def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", sync_to_thread=True)
    def readyz(self, rm: NamedDependency[ReadModels]) -> Response[dict[str, str]]:
        try:
            rm.one("SELECT 1 AS ok")
        except (psycopg.Error, TimeoutError) as error:
            log.warning("not ready: the database does not answer (%s)", error)
            return Response(
                {"status": "unavailable", "error": "the database does not answer"}, status_code=503
            )
        return Response({"status": "ready"})

    @get("/metrics", sync_to_thread=True)
    def metrics(
        self,
        projections: NamedDependency[Projections],
        queue_depths: NamedDependency[dict[str, int] | None],
        settings: NamedDependency[Settings],
        address: NamedDependency[DatabaseAddress],
    ) -> Response[bytes]:
        from processors.work_ledger import outbox_size, waiting_work

        lag: list[tuple[str, int, float]] = []
        waiting: dict[str, int] | None = None
        outbox: int | None = None
        try:
            lag = [(p["name"], p["lag_events"], p["lag_seconds"]) for p in projections.status()]
            late = waiting_work(
                address,
                settings.database_schema,
                start_timeout_seconds=settings.dispatch_start_timeout_seconds,
                heartbeat_timeout_seconds=settings.stage_heartbeat_timeout_seconds,
            )
            waiting = dict(Tally(w.stage for w in late))
            outbox = outbox_size(address, settings.database_schema)
        except psycopg.Error as error:  # the counters still go out
            log.warning("metrics: database gauges unavailable: %s", error)
        body = exposition(queue_depths=queue_depths, projection_lag=lag, waiting=waiting, outbox=outbox)
        return Response(body, media_type=CONTENT_TYPE)
