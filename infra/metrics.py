"""Prometheus metrics of every Heaters process (``prometheus_client``'s default registry).

Counted where they happen: stage runs and their durations (workers), work sent and sent again (the
process manager), review actions and read-your-writes timeouts (web). Measured when scraped, by the
web app's ``/metrics``: queue depths, projection lag, work waiting longer than expected, the outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger(__name__)

STAGE_SECONDS = Histogram(
    "heaters_stage_seconds",
    "Duration of one stage run (one message), by stage and outcome (ok, failed).",
    ["stage", "outcome"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
WORK_SENT = Counter("heaters_work_sent_total", "Stage messages the broker accepted, by stage.", ["stage"])
WORK_REFUSED = Counter("heaters_work_send_refused_total", "Sends the broker refused (kept in the outbox).")
WORK_RESENT = Counter(
    "heaters_work_resent_total", "Work sent again: not started in time or its worker went silent.", ["why"]
)
REVIEW_ACTIONS = Counter("heaters_review_actions_total", "Review actions answered, by action.", ["action"])
READ_YOUR_WRITES_TIMEOUTS = Counter(
    "heaters_read_your_writes_timeouts_total", "Actions answered before the read models had applied them."
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition(
    *,
    queue_depths: Mapping[str, int] | None = None,
    projection_lag: Iterable[tuple[str, int, float]] = (),
    waiting: Mapping[str, int] | None = None,
    outbox: int | None = None,
) -> bytes:
    """The process's counters plus gauges measured now (a fresh registry per scrape)."""
    now = CollectorRegistry()
    if queue_depths is not None:
        depth = Gauge(
            "heaters_queue_depth", "Messages waiting in the broker, by queue.", ["queue"], registry=now
        )
        for queue, n in queue_depths.items():
            depth.labels(queue).set(n)
    lag_events = Gauge(
        "heaters_projection_lag_events",
        "Events a projection has still to apply.",
        ["projection"],
        registry=now,
    )
    lag_seconds = Gauge(
        "heaters_projection_lag_seconds", "Age of the oldest event a projection has still to apply.",
        ["projection"], registry=now,
    )  # fmt: skip
    for name, events, seconds in projection_lag:
        lag_events.labels(name).set(events)
        lag_seconds.labels(name).set(seconds)
    if waiting is not None:
        late = Gauge(
            "heaters_work_waiting_too_long", "Open work waiting longer than expected, by stage.", ["stage"],
            registry=now,
        )  # fmt: skip
        for stage, n in waiting.items():
            late.labels(stage).set(n)
    if outbox is not None:
        Gauge("heaters_outbox_unsent", "Due work not yet accepted by the broker.", registry=now).set(outbox)
    return generate_latest(REGISTRY) + generate_latest(now)


def serve(port: int) -> bool:
    """Expose this process's metrics on ``port`` (a worker); False when the port is taken."""
    try:
        start_http_server(port)
    except OSError as error:
        log.warning("metrics: port %d unavailable (%s); this process exports no metrics", port, error)
        return False
    log.info("metrics on http://0.0.0.0:%d/metrics", port)
    return True
