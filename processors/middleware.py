"""Dramatiq middleware for what every stage actor shares, added to the broker by the bootstrap
(entrypoints/pipeline.py):

- ``StageContext``: hands the actor the pipeline's context and its delivery attempt;
- ``WorkClaims``: runs the stage under a claim on its work row, beating its heartbeat;
- ``StageTiming``: one log line and one duration sample per message;
- ``StageFailures``: records a stage's ``…Failed`` event once Dramatiq's ``Retries`` gives up on it.
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import MiddlewareError, SkipMessage

from infra.metrics import STAGE_SECONDS
from processors import stages
from processors.stages import PipelineContext
from processors.work_ledger import WorkLedger, current_claim

log = logging.getLogger("heaters.pipeline")

#: Stage actors are named ``heaters_<stage>``; their one argument is the video's or clip's id.
ACTOR_PREFIX = "heaters_"


def stage_of(message: MessageProxy) -> tuple[str, str]:
    """The stage a message runs and the id of the video or clip it runs for."""
    return message.actor_name.removeprefix(ACTOR_PREFIX), str(message.args[0]) if message.args else "?"


def delivery_attempt(message: MessageProxy) -> int:
    """Which delivery of its message this is: Dramatiq's retry count, plus one."""
    return int(message.options.get("retries", 0)) + 1


@dataclass(frozen=True)
class StageRun:
    """What an actor gets for the message it runs."""

    context: PipelineContext
    attempt: int  # the delivery attempt; clip stages record it, video stages count their own


_current_run: contextvars.ContextVar[StageRun | None] = contextvars.ContextVar("heaters_run", default=None)


def current_run() -> StageRun:
    """The context and attempt of the message this thread runs (``StageContext`` sets them)."""
    run = _current_run.get()
    if run is None:
        raise RuntimeError("no stage message is running in this thread (is StageContext on the broker?)")
    return run


class StageMiddleware(dramatiq.Middleware):
    """A middleware told how each message ended: Dramatiq's ``after_process_message`` as ``ended``."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.ended(broker, message, exception)

    def ended(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException | None) -> None:
        """The message was processed; ``exception``: how it failed."""


class StageContext(StageMiddleware):
    """Gives each message's actor the pipeline context of the broker it came from."""

    def __init__(self, context: PipelineContext) -> None:
        self.context = context

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        stages.forget_started_attempt()
        _current_run.set(StageRun(self.context, delivery_attempt(message)))

    def ended(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException | None) -> None:
        _current_run.set(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _current_run.set(None)


class ClaimFailed(MiddlewareError):
    """The work row could not be claimed (the database refused): the message fails and is retried."""


class WorkClaims(StageMiddleware):
    """Runs each stage under a claim on its work row: a delivery whose work a live attempt elsewhere
    holds is skipped, and the claim's heartbeat proves this attempt alive while it runs."""

    def __init__(self, ledger: WorkLedger) -> None:
        self.ledger = ledger

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        stage, target = stage_of(message)
        try:
            claim = self.ledger.hold(stage, UUID(target))
        except Exception as error:
            raise ClaimFailed(f"{stage} for {target}: its work could not be claimed: {error}") from error
        if claim is None:
            raise SkipMessage(f"{stage} for {target} is running elsewhere")

    def ended(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException | None) -> None:
        claim = current_claim()
        if claim is not None:
            self.ledger.let_go(claim, exception)


class StageTiming(StageMiddleware):
    """Logs ``stage <name> for <id>: ok|failed in N.NN s (attempt k)`` after each message, with the
    attempt the events record (video stages count theirs across deliveries and a person's retries)."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        message.options["heaters_started"] = time.monotonic()

    def ended(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException | None) -> None:
        started = message.options.pop("heaters_started", None)
        seconds = time.monotonic() - started if started is not None else float("nan")
        stage, target = stage_of(message)
        attempt = stages.started_attempt() or delivery_attempt(message)
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


class StageFailures(StageMiddleware):
    """Records a stage's ``…Failed`` event when Dramatiq gives up on its message: the last error and
    the attempt count once retries are exhausted. (A permanent failure, in the actor's ``throws``,
    was recorded by the stage with its reason.)

    Add it before ``Retries``: after-hooks run in reverse, so it sees the message once ``Retries``
    has decided (``message.failed``), in the worker thread and before the message is acknowledged,
    with the exception itself (Dramatiq's ``on_retry_exhausted`` would send only its traceback text
    to another actor, on a queue a worker must serve)."""

    def __init__(self, context: PipelineContext) -> None:
        self.context = context

    def ended(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException | None) -> None:
        attempt = stages.started_attempt()
        if exception is None or not message.failed or attempt is None:
            return  # done, to be retried, or failed before the stage started an attempt
        throws = broker.get_actor(message.actor_name).options.get("throws")
        if throws and isinstance(exception, throws):
            return
        stage, target = stage_of(message)
        reason = f"{type(exception).__name__}: {exception} (gave up after {attempt} attempts)"
        stages.record_failure(self.context, stage, UUID(target), attempt, reason)
