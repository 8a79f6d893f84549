"""Dramatiq middleware for what every actor shares: a log line per message saying which stage ran for
which video or clip, how long it took and how it ended."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy

from infra.metrics import STAGE_SECONDS

log = logging.getLogger("heaters.pipeline")

_reported = threading.local()


def report_attempt(attempt: int) -> None:
    """A stage tells the attempt number it recorded (video stages count attempts across deliveries
    and a person's retries, which the message's own retry count does not know)."""
    _reported.attempt = attempt


class StageTiming(dramatiq.Middleware):
    """Logs ``stage <name> for <id>: ok|failed in N.NN s (attempt k)`` after each message."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        message.options["heaters_started"] = time.monotonic()
        _reported.attempt = None

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = message.options.pop("heaters_started", None)
        seconds = time.monotonic() - started if started is not None else float("nan")
        stage = message.actor_name.removeprefix("heaters_")
        target = message.args[0] if message.args else "?"
        attempt = getattr(_reported, "attempt", None) or int(message.options.get("retries", 0)) + 1
        _reported.attempt = None
        STAGE_SECONDS.labels(stage, "ok" if exception is None else "failed").observe(seconds)
        if exception is None:
            log.info("stage %s for %s: ok in %.2f s (attempt %d)", stage, target, seconds, attempt)
        else:
            log.warning(
                "stage %s for %s: %s in %.2f s (attempt %d): %s",
                stage,
                target,
                type(exception).__name__,
                seconds,
                attempt,
                exception,
            )

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        message.options.pop("heaters_started", None)
