"""Dramatiq middleware for what every actor shares: a log line per message saying which stage ran for
which video or clip, how long it took and how it ended."""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy

log = logging.getLogger("heaters.pipeline")


class StageTiming(dramatiq.Middleware):
    """Logs ``stage <name> for <id>: ok|failed in N.NN s (attempt k)`` after each message."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        message.options["heaters_started"] = time.monotonic()

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
        attempt = int(message.options.get("retries", 0)) + 1
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
