"""The pipeline's process manager: follows the event log and dispatches each stage's work.

It reads events after its tracked position in batches. For each batch, in ONE transaction, it records
the work it decides on in ``pipeline_work`` as "to send" (an outbox) and moves its position. A sender
then delivers each due row to the broker, retrying until the broker accepts, and marks it sent; rows
left unsent by a crash or a broker outage are sent after a restart. Work sent but not claimed by a
worker within ``start_timeout_seconds`` (a lost message), or whose worker's heartbeat stopped, is sent
again. Actors are idempotent, so a second delivery stores no second result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from typing import Any
from uuid import UUID

from psycopg import sql

from commands.service import HeatersApplication
from domain.clip import CLIP_STAGE_EVENTS, UNAPPROVING, Clip
from domain.stages import PURGE, ClipStage, Decision, VideoStage
from domain.video import VIDEO_STAGE_EVENTS, Video
from infra.database import DatabaseAddress
from infra.log_follower import LogFollower
from infra.metrics import WORK_REFUSED, WORK_RESENT, WORK_SENT
from processors.work_ledger import redispatch, work_pool

log = logging.getLogger(__name__)

NAME = "pipeline"

Dispatch = Callable[[str, UUID, int | None], object]


@dataclass(frozen=True)
class Reaction:
    """What one event means for the pipeline."""

    aggregate_id: UUID
    stage: str
    state: str  # dispatched (send a message), done, failed, cancelled
    delay_seconds: float = 0.0


#: The video event that asks for each stage: the one that finished the stage before it (or ``Submitted``).
NEXT_VIDEO_STAGE: dict[type[Any], VideoStage] = {
    Video.Created: VideoStage.DOWNLOAD,
    **{VIDEO_STAGE_EVENTS.events[before].done: stage for before, stage in pairwise(VideoStage)},
}
DONE_VIDEO_STAGE: dict[type[Any], VideoStage] = {
    events.done: stage for stage, events in VIDEO_STAGE_EVENTS.events.items()
}
FAILED_VIDEO_STAGE: dict[type[Any], VideoStage] = {
    events.failed: stage for stage, events in VIDEO_STAGE_EVENTS.events.items()
}
#: The clip event that asks for each clip stage: an approval, then the stage before it finishing.
NEXT_CLIP_STAGE: dict[type[Any], ClipStage] = {
    Clip.Approved: ClipStage.KEYFRAMES,
    Clip.Grouped: ClipStage.KEYFRAMES,
    **{CLIP_STAGE_EVENTS.events[before].done: stage for before, stage in pairwise(ClipStage)},
}
DONE_CLIP_STAGE: dict[type[Any], ClipStage] = {
    events.done: stage for stage, events in CLIP_STAGE_EVENTS.events.items()
}
#: A clip's work that ends with its approval (and the purge of an archived one).
CLIP_WORK: tuple[str, ...] = (*ClipStage, PURGE)
#: An undo of these decisions cancels the clip's work.
CANCELLING_UNDO = UNAPPROVING | {Decision.ARCHIVE}


def reactions(event: Any, archive_grace_seconds: float) -> list[Reaction]:
    """The pure decision: which work an event asks for, finishes or cancels."""
    oid: UUID = event.originator_id
    kind = type(event)
    out: list[Reaction] = []
    if kind in DONE_VIDEO_STAGE:
        out.append(Reaction(oid, DONE_VIDEO_STAGE[kind], "done"))
    if kind in FAILED_VIDEO_STAGE:
        out.append(Reaction(oid, FAILED_VIDEO_STAGE[kind], "failed"))
    if kind in NEXT_VIDEO_STAGE:
        out.append(Reaction(oid, NEXT_VIDEO_STAGE[kind], "dispatched"))
    if kind in (Video.RetryRequested, Clip.RetryRequested):
        out.append(Reaction(oid, event.stage, "dispatched"))
    if kind in DONE_CLIP_STAGE:
        out.append(Reaction(oid, DONE_CLIP_STAGE[kind], "done"))
    if kind in NEXT_CLIP_STAGE:
        out.append(Reaction(oid, NEXT_CLIP_STAGE[kind], "dispatched"))
    if kind is Clip.StageFailed:
        out.append(Reaction(oid, event.stage, "failed"))
    if kind is Clip.Archived:
        out.append(Reaction(oid, PURGE, "dispatched", delay_seconds=archive_grace_seconds))
    if kind is Clip.MediaPurged:
        out.append(Reaction(oid, PURGE, "done"))
    if kind in (Clip.Split, Clip.Merged, Clip.Retired) or (
        kind is Clip.DecisionUndone and event.undone in CANCELLING_UNDO
    ):
        out += [Reaction(oid, stage, "cancelled") for stage in CLIP_WORK]
    return out


TOPICS: list[str] = sorted(
    {
        str(c.TOPIC)  # type: ignore[attr-defined]
        for c in (
            *NEXT_VIDEO_STAGE,
            *DONE_VIDEO_STAGE,
            *FAILED_VIDEO_STAGE,
            *NEXT_CLIP_STAGE,
            *DONE_CLIP_STAGE,
            Video.RetryRequested,
            Clip.RetryRequested,
            Clip.StageFailed,
            Clip.Archived,
            Clip.MediaPurged,
            Clip.Split,
            Clip.Merged,
            Clip.Retired,
            Clip.DecisionUndone,
        )
    }
)


class UndecodableEvent(RuntimeError):
    """An event of the pipeline's topics the application's mapper cannot decode: the manager stops
    there (retrying) rather than skip the work it asks for."""


class PipelineProcessManager:
    """Follows the log (:class:`infra.log_follower.LogFollower`, its position in ``pipeline_tracking``,
    the pipeline's topics only); sends work through ``dispatch(stage, id, delay_ms)``."""

    def __init__(
        self,
        app: HeatersApplication,
        address: DatabaseAddress,
        schema: str,
        dispatch: Dispatch,
        *,
        archive_grace_seconds: float = 7 * 24 * 3600.0,
        start_timeout_seconds: float = 60.0,
        heartbeat_timeout_seconds: float = 60.0,
        batch_size: int = 500,
    ) -> None:
        self.app = app
        self.address = address
        self.schema = schema
        self.dispatch = dispatch
        self.archive_grace_seconds = archive_grace_seconds
        self.start_timeout_seconds = start_timeout_seconds
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
        self.batch_size = batch_size
        self.follower = LogFollower(
            app, address, "pipeline_tracking", schema=schema, topics=TOPICS, batch_size=batch_size
        )
        # The loop reads its position every poll: pooled connections, not a new backend each time.
        # The pool connects on first use (``_connection``): building the manager does no I/O.
        self._pool = work_pool(address, 2, "heaters-process-manager", open=False)
        self._opened = False
        self._open_lock = threading.Lock()

    def _connection(self) -> AbstractContextManager[Any]:
        """A pooled connection; the first opens the pool and the manager's row in ``pipeline_tracking``."""
        with self._open_lock:
            if not self._opened:
                self._pool.open()
                with self._pool.connection() as conn:
                    self.follower.track(conn, [NAME])
                self._opened = True
        return self._pool.connection()

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def position(self) -> int:
        with self._connection() as conn:
            tracked = self.follower.positions(conn, [NAME]).get(NAME)
        return tracked.position if tracked else 0

    def process_batch(self) -> int:
        """Record the next batch of events' work in the outbox; returns how many events were read."""
        position = self.position()
        events = self.follower.read(position)
        if not events:
            return 0
        with self._connection() as conn, conn.transaction():
            current = self.follower.lock(conn, NAME)
            if current is None or current.position != position:
                return 0  # another process manager moved on meanwhile; read again
            for record in events:
                if record.event is None:
                    raise UndecodableEvent(
                        f"event {record.position} ({record.topic}) could not be decoded: {record.decode_error}"
                    )
                for reaction in reactions(record.event, self.archive_grace_seconds):
                    self._record(conn, reaction, record.position)
            self.follower.advance(conn, NAME, events[-1].position)
        return len(events)

    def _record(self, conn: Any, reaction: Reaction, position: int) -> None:
        table = self._table("pipeline_work")
        if reaction.state == "dispatched":
            due = timedelta(seconds=reaction.delay_seconds)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (aggregate_id, stage, state, due_at, dispatched_at, dispatch_count,"
                    " event_position, sent_at, resends) VALUES (%s, %s, 'dispatched', now() + %s, now(), 1, %s,"
                    " NULL, 0) ON CONFLICT (aggregate_id, stage) DO UPDATE SET state = 'dispatched',"
                    " due_at = EXCLUDED.due_at, dispatched_at = EXCLUDED.dispatched_at,"
                    " dispatch_count = {}.dispatch_count + 1, event_position = EXCLUDED.event_position,"
                    " sent_at = NULL, resends = 0, last_error = NULL"
                ).format(table, sql.Identifier("pipeline_work")),
                (reaction.aggregate_id, reaction.stage, due, position),
            )
            return
        conn.execute(
            sql.SQL(
                "UPDATE {} SET state = %s WHERE aggregate_id = %s AND stage = %s AND state = 'dispatched'"
            ).format(table),
            (reaction.state, reaction.aggregate_id, reaction.stage),
        )

    def send_due(self, limit: int = 200) -> int:
        """Deliver the outbox's due rows; each is marked sent once the broker accepted it. A broker
        error stops the round (the rest stay in the outbox) and is raised."""
        sent = 0
        with self._connection() as conn, conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    "SELECT aggregate_id, stage, resends FROM {} WHERE state = 'dispatched' AND sent_at IS NULL"
                    " AND due_at <= now() ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(self._table("pipeline_work")),
                (limit,),
            ).fetchall()
            for aggregate_id, stage, resends in rows:
                try:
                    self.dispatch(stage, aggregate_id, None)
                except Exception as error:
                    WORK_REFUSED.inc()
                    log.warning(
                        "outbox: the broker refused %s for %s (%s: %s); %d left to send, retrying",
                        stage,
                        aggregate_id,
                        type(error).__name__,
                        error,
                        len(rows) - sent,
                    )
                    if sent == 0:
                        raise
                    break
                # A resent message waits longer before the next resend: a deep queue is not a lost message.
                wait = self.start_timeout_seconds * 2 ** min(int(resends), 6)
                conn.execute(
                    sql.SQL(
                        "UPDATE {} SET sent_at = now(), start_by = now() + make_interval(secs => %s)"
                        " WHERE aggregate_id = %s AND stage = %s"
                    ).format(self._table("pipeline_work")),
                    (wait, aggregate_id, stage),
                )
                sent += 1
                WORK_SENT.labels(stage).inc()
        return sent

    def redispatch_stalled(self) -> list[tuple[str, UUID, str]]:
        """Put back in the outbox work sent but not claimed in time, or whose worker stopped beating."""
        with self._connection() as conn, conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    "WITH stalled AS (SELECT aggregate_id, stage, heartbeat_at IS NOT NULL AS running FROM {t}"
                    " WHERE state = 'dispatched' AND sent_at IS NOT NULL AND ("
                    " (heartbeat_at IS NULL AND start_by < now())"
                    " OR heartbeat_at < now() - make_interval(secs => %s)) FOR UPDATE SKIP LOCKED)"
                    " UPDATE {t} AS w SET sent_at = NULL, resends = resends + 1, run_token = NULL,"
                    " heartbeat_at = NULL FROM stalled WHERE w.aggregate_id = stalled.aggregate_id"
                    " AND w.stage = stalled.stage RETURNING w.stage, w.aggregate_id, stalled.running"
                ).format(t=self._table("pipeline_work")),
                (self.heartbeat_timeout_seconds,),
            ).fetchall()
        out = []
        for stage, aggregate_id, running in rows:
            why = "its worker stopped beating" if running else "no worker started it"
            log.warning("%s of %s: %s; sending it again", stage, aggregate_id, why)
            WORK_RESENT.labels(why).inc()
            out.append((str(stage), aggregate_id, why))
        return out

    def redispatch(self, aggregate_id: UUID, stage: str | None = None) -> list[str]:
        """An operator's retry of stuck work: put its open rows back in the outbox now."""
        return redispatch(self.address, self.schema, aggregate_id, stage)

    def catch_up(self) -> int:
        """Record every pending event's work and send what is due; returns the events read."""
        total = 0
        while (n := self.process_batch()) > 0:
            total += n
        self.send_due()
        return total

    def reconcile(self) -> list[tuple[str, UUID, str]]:
        """Send again what stalled, then deliver the outbox."""
        stalled = self.redispatch_stalled()
        self.send_due()
        return stalled

    # -- running in the background ---------------------------------------------------------------

    def start(self, poll_seconds: float = 0.2, reconcile_every_seconds: float = 5.0) -> None:
        """Follow the log in the follower's thread: record each batch's work, deliver the outbox, and
        every ``reconcile_every_seconds`` send again what stalled. A broker or database error is
        logged and the round retried after a backoff of up to 5 s."""

        last_reconcile = time.monotonic()

        def step() -> int:
            nonlocal last_reconcile
            read = self.process_batch()
            self.send_due()
            if time.monotonic() - last_reconcile >= reconcile_every_seconds:
                last_reconcile = time.monotonic()
                self.redispatch_stalled()
            return read

        @contextmanager
        def session(_listener: object) -> Iterator[Callable[[], int]]:
            yield step  # the outbox has its own pooled connections; the listener only wakes it

        self.follower.start(
            session, thread_name="heaters-process-manager", poll_seconds=poll_seconds, max_backoff=5.0
        )

    def stop(self) -> None:
        self.follower.stop(timeout=10)
        self._pool.close()
