"""The pipeline's process manager: follows the event log and dispatches each stage's work.

It reads events after its tracked position in batches. For each batch, in ONE transaction, it records
the work it decides on in ``pipeline_work`` and moves its position; only after the commit does it send
the messages. So each event dispatches its work exactly once across restarts; a message lost after the
commit (a crash, a Redis restart) is found by the reconciler, which re-dispatches work left in a
non-terminal stage past its timeout. Actors are idempotent, so a second delivery stores no second result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg_pool import ConnectionPool

from commands.service import HeatersApplication
from domain.clip import Clip
from domain.video import Video
from infra.database import DatabaseAddress, connect
from processors.actors import STAGE_SPECS

log = logging.getLogger(__name__)

NAME = "pipeline"

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.pipeline_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.pipeline_work (
    aggregate_id uuid NOT NULL,
    stage text NOT NULL,
    state text NOT NULL,                 -- dispatched, done, failed, cancelled
    due_at timestamptz NOT NULL,         -- when the work is due (now, or after a grace period)
    dispatched_at timestamptz,
    dispatch_count integer NOT NULL DEFAULT 0,
    event_position bigint NOT NULL,      -- the event that asked for it
    PRIMARY KEY (aggregate_id, stage)
)"""

Dispatch = Callable[[str, UUID, int | None], object]


@dataclass(frozen=True)
class Reaction:
    """What one event means for the pipeline."""

    aggregate_id: UUID
    stage: str
    state: str  # dispatched (send a message), done, failed, cancelled
    delay_seconds: float = 0.0


NEXT_VIDEO_STAGE: dict[type[Any], str] = {
    Video.Created: "download",
    Video.Downloaded: "proxy",
    Video.ProxyCreated: "sprites",
    Video.SpritesCreated: "shots",
}
DONE_VIDEO_STAGE: dict[type[Any], str] = {
    Video.Downloaded: "download",
    Video.ProxyCreated: "proxy",
    Video.SpritesCreated: "sprites",
    Video.ShotsDetected: "shots",
}
FAILED_VIDEO_STAGE: dict[type[Any], str] = {
    Video.DownloadFailed: "download",
    Video.ProxyFailed: "proxy",
    Video.SpritesFailed: "sprites",
    Video.ShotDetectionFailed: "shots",
}


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
    if kind in (Clip.Approved, Clip.Grouped):
        out.append(Reaction(oid, "keyframes", "dispatched"))
    if kind is Clip.KeyframesExtracted:
        out += [Reaction(oid, "keyframes", "done"), Reaction(oid, "embedding", "dispatched")]
    if kind is Clip.Embedded:
        out += [Reaction(oid, "embedding", "done"), Reaction(oid, "export", "dispatched")]
    if kind is Clip.Exported:
        out.append(Reaction(oid, "export", "done"))
    if kind is Clip.StageFailed:
        out.append(Reaction(oid, event.stage, "failed"))
    if kind is Clip.Archived:
        out.append(Reaction(oid, "purge", "dispatched", delay_seconds=archive_grace_seconds))
    if kind is Clip.MediaPurged:
        out.append(Reaction(oid, "purge", "done"))
    if kind in (Clip.Split, Clip.Merged, Clip.Retired) or (
        kind is Clip.DecisionUndone and event.undone in ("approve", "group", "archive")
    ):
        stages = ("keyframes", "embedding", "export", "purge")
        out += [Reaction(oid, stage, "cancelled") for stage in stages]
    return out


TOPICS: list[str] = sorted(
    {
        str(c.TOPIC)  # type: ignore[attr-defined]
        for c in (
            *NEXT_VIDEO_STAGE,
            *DONE_VIDEO_STAGE,
            *FAILED_VIDEO_STAGE,
            Video.RetryRequested,
            Clip.RetryRequested,
            Clip.Approved,
            Clip.Grouped,
            Clip.KeyframesExtracted,
            Clip.Embedded,
            Clip.Exported,
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


class PipelineProcessManager:
    """Follows the log with a tracked position; dispatches through ``dispatch(stage, id, delay_ms)``."""

    def __init__(
        self,
        app: HeatersApplication,
        address: DatabaseAddress,
        schema: str,
        dispatch: Dispatch,
        *,
        archive_grace_seconds: float = 7 * 24 * 3600.0,
        reconcile_after_seconds: float = 900.0,
        batch_size: int = 500,
    ) -> None:
        self.app = app
        self.address = address
        self.schema = schema
        self.dispatch = dispatch
        self.archive_grace_seconds = archive_grace_seconds
        self.reconcile_after_seconds = reconcile_after_seconds
        self.batch_size = batch_size
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The loop reads its position every poll: pooled connections, not a new backend each time.
        self._pool = ConnectionPool(address.conninfo(), min_size=1, max_size=4, open=True)
        with connect(address, autocommit=True) as conn:
            conn.execute(sql.SQL(DDL).format(schema=sql.Identifier(schema)))
            conn.execute(
                sql.SQL("INSERT INTO {}.pipeline_tracking VALUES (%s, 0) ON CONFLICT DO NOTHING").format(
                    sql.Identifier(schema)
                ),
                (NAME,),
            )

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def position(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT position FROM {} WHERE name = %s").format(self._table("pipeline_tracking")),
                (NAME,),
            ).fetchone()
        return int(row[0]) if row else 0

    def process_batch(self) -> int:
        """Handle the next batch of events; returns how many were read."""
        position = self.position()
        notifications = self.app.recorder.select_notifications(
            position + 1, self.batch_size, topics=TOPICS, inclusive_of_start=True
        )
        if not notifications:
            return 0
        to_send: list[tuple[str, UUID, int | None]] = []
        last = notifications[-1].id
        with self._pool.connection() as conn, conn.transaction():
            current = conn.execute(
                sql.SQL("SELECT position FROM {} WHERE name = %s FOR UPDATE").format(
                    self._table("pipeline_tracking")
                ),
                (NAME,),
            ).fetchone()
            if current is None or int(current[0]) != position:
                return 0  # another process manager moved on meanwhile; read again
            for notification in notifications:
                event = self.app.mapper.to_domain_event(notification)
                for reaction in reactions(event, self.archive_grace_seconds):
                    if self._record(conn, reaction, notification.id):
                        delay = int(reaction.delay_seconds * 1000) or None
                        to_send.append((reaction.stage, reaction.aggregate_id, delay))
            conn.execute(
                sql.SQL("UPDATE {} SET position = %s WHERE name = %s").format(
                    self._table("pipeline_tracking")
                ),
                (last, NAME),
            )
        for stage, aggregate_id, delay in to_send:
            self.dispatch(stage, aggregate_id, delay)
        return len(notifications)

    def _record(self, conn: Any, reaction: Reaction, position: int) -> bool:
        """Record the reaction; True when a message must be sent."""
        table = self._table("pipeline_work")
        if reaction.state == "dispatched":
            due = timedelta(seconds=reaction.delay_seconds)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (aggregate_id, stage, state, due_at, dispatched_at, dispatch_count, event_position)"
                    " VALUES (%s, %s, 'dispatched', now() + %s, now() + %s, 1, %s)"
                    " ON CONFLICT (aggregate_id, stage) DO UPDATE SET state = 'dispatched', due_at = EXCLUDED.due_at,"
                    " dispatched_at = EXCLUDED.dispatched_at, dispatch_count = {}.dispatch_count + 1,"
                    " event_position = EXCLUDED.event_position"
                ).format(table, sql.Identifier("pipeline_work")),
                (reaction.aggregate_id, reaction.stage, due, due, position),
            )
            return True
        conn.execute(
            sql.SQL(
                "UPDATE {} SET state = %s WHERE aggregate_id = %s AND stage = %s AND state = 'dispatched'"
            ).format(table),
            (reaction.state, reaction.aggregate_id, reaction.stage),
        )
        return False

    def catch_up(self) -> int:
        total = 0
        while (n := self.process_batch()) > 0:
            total += n
        return total

    def reconcile(self, older_than_seconds: float | None = None) -> list[tuple[str, UUID]]:
        """Re-dispatch work still 'dispatched' past its stage's timeout (a lost message)."""
        resent: list[tuple[str, UUID]] = []
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    "SELECT aggregate_id, stage, extract(epoch FROM now() - dispatched_at) FROM {}"
                    " WHERE state = 'dispatched' AND dispatched_at < now() FOR UPDATE SKIP LOCKED"
                ).format(self._table("pipeline_work"))
            ).fetchall()
            for aggregate_id, stage, age in rows:
                limit = older_than_seconds
                if limit is None:
                    limit = max(self.reconcile_after_seconds, STAGE_SPECS[stage].time_limit_ms / 1000 * 1.2)
                if float(age) < limit:
                    continue
                conn.execute(
                    sql.SQL(
                        "UPDATE {} SET dispatched_at = now(), dispatch_count = dispatch_count + 1"
                        " WHERE aggregate_id = %s AND stage = %s"
                    ).format(self._table("pipeline_work")),
                    (aggregate_id, stage),
                )
                resent.append((stage, aggregate_id))
        for stage, aggregate_id in resent:
            log.warning("reconciler: %s of %s was stuck, dispatching again", stage, aggregate_id)
            self.dispatch(stage, aggregate_id, None)
        return resent

    # -- running in the background ---------------------------------------------------------------

    def start(self, poll_seconds: float = 0.2, reconcile_every_seconds: float = 60.0) -> None:
        def loop() -> None:
            since_reconcile = 0.0
            while not self._stop.is_set():
                try:
                    if self.process_batch() == 0:
                        self._stop.wait(poll_seconds)
                        since_reconcile += poll_seconds
                    if since_reconcile >= reconcile_every_seconds:
                        since_reconcile = 0.0
                        self.reconcile()
                except Exception:
                    log.exception("pipeline process manager: batch failed; retrying in 1 s")
                    self._stop.wait(1.0)

        self._thread = threading.Thread(target=loop, name="heaters-process-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.close()
