"""One follower of the application's event log, for every consumer that reads it with a tracked
position: the projections (``projections/runner.py``) and the pipeline's process manager
(``processors/process_manager.py``).

It owns what they share, after eventsourcing's ``ApplicationSubscription`` and ``TrackingRecorder``
(``eventsourcing/projection.py``, ``eventsourcing/persistence.py``):

- **reading**: the notification log after a position, in batches, filtered by topics where the
  consumer names them, through the application's own recorder (its table, its schema) and decoded by
  the application's own mapper (its transcodings, its upcasting): nothing here names the events table;
- **tracking**: the consumers' positions, one row ``(name, position, state, updated_at)`` each in a
  table of that shape (``projection_positions``, ``pipeline_tracking``), read, locked and advanced in
  the consumer's own transaction, so its work and its position commit together (exactly once);
- **following**: a background thread that runs the consumer's step while it finds work and otherwise
  waits for eventsourcing's NOTIFY on the log's channel (or the poll interval), retries with backoff
  when the database fails, and stops on request.

What to do with the events (read models, outbox rows), and when (leader election, rebuilds), is the
consumer's. The follower takes an ``eventsourcing.application.Application`` rather than
``HeatersApplication`` because both the projections and the commands use it, and they may not import
each other: it sits in ``infra/`` below both.

Reading in notification-id order is gap-free because eventsourcing's PostgreSQL recorder (with
``POSTGRES_ENABLE_DB_FUNCTIONS`` off) locks the events table while a transaction is given its ids: ids
follow commit order, so a reader that has seen id N never later sees a smaller id commit.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import InterfaceError, Notification, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import sql
from psycopg.rows import tuple_row

from infra.database import DatabaseAddress, connect
from infra.stored_events import StoredEventDecoder

log = logging.getLogger(__name__)

#: A tracked consumer's state while it follows the log (consumers may add their own: stopped, …).
RUNNING = "running"

#: The consumer's step: handle the next batch, return how many events (0: nothing new).
Step = Callable[[], int]
#: Opens what a run of the consumer needs, on the follower's listening connection (where it may hold
#: advisory locks); gives its step, or None to end the run (stopped while waiting to lead).
Session = Callable[[psycopg.Connection[Any]], AbstractContextManager[Step | None]]


class EventRecord(NamedTuple):
    """One notification of the event log, decoded (``event`` is None when it could not be decoded,
    and ``decode_error`` says why). A named tuple: made once per event and consumer, it costs a
    fifth of a frozen dataclass."""

    position: int
    topic: str
    originator_id: UUID
    originator_version: int
    event: Any | None
    decode_error: str | None = None

    @property
    def name(self) -> str:
        """The topic's name part, e.g. ``Approved``."""
        return self.topic.rpartition(":")[2]

    @property
    def kind(self) -> str:
        """``video`` or ``clip`` (from the topic's prefix ``heaters.video:`` / ``heaters.clip:``)."""
        prefix = self.topic.partition(":")[0]
        return prefix.rpartition(".")[2] or prefix


@dataclass(frozen=True)
class Tracked:
    """A consumer's row: the last notification id it handled, and its state."""

    position: int
    state: str


def describe(error: BaseException) -> str:
    """The error's message and where it was raised (for ``last_error`` columns and logs)."""
    lines = traceback.format_exception_only(type(error), error)
    tb = traceback.extract_tb(error.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return "".join(lines).strip() + where


class LogFollower:
    """Reads ``app``'s notification log after tracked positions kept in ``tracking_table`` (in
    ``schema``, by default the event store's), ``batch_size`` events at a time, ``topics`` only when
    given; runs a consumer in a background thread. Building one does no I/O."""

    def __init__(
        self,
        app: Application[Any],
        address: DatabaseAddress,
        tracking_table: str,
        *,
        schema: str | None = None,
        topics: Iterable[str] = (),
        batch_size: int,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        recorder = app.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            raise TypeError(
                f"the log follower needs eventsourcing's PostgreSQL recorder, not {type(recorder)}"
            )
        self.app_name = app.name
        self._app = app
        self.recorder = recorder
        self.mapper = app.mapper
        self._decoder = StoredEventDecoder(app.mapper)
        self.address = address
        self.schema = schema or recorder.datastore.schema
        self.events_table: str = recorder.events_table_name
        self.channel: str = recorder.channel_name
        self.topics = sorted(set(topics))
        self.batch_size = batch_size
        # The recorder's own query (its schema, its table, its topic filter), with rows as tuples: its
        # ``select_notifications`` makes a dict and a frozen dataclass per row, 4 µs of 6.
        self._select = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s"
        ).format(
            sql.Identifier(recorder.datastore.schema),
            sql.Identifier(self.events_table),
            sql.SQL(" AND topic = ANY(%s)") if self.topics else sql.SQL(""),
        )
        self.tracking_table = tracking_table
        self._tracking = sql.Identifier(self.schema, tracking_table)
        self.stopping = threading.Event()
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        #: Whether the last read of the following thread reached the end of the log (was short).
        self._read_to_end = False
        self._reader: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, Future[list[EventRecord]]] | None = None

    def of_topics(self, topics: Iterable[str]) -> LogFollower:
        """A follower of the same log, tracking table and batch size that reads only ``topics``."""
        return LogFollower(
            self._app,
            self.address,
            self.tracking_table,
            schema=self.schema,
            topics=topics,
            batch_size=self.batch_size,
        )

    # -- reading the log ---------------------------------------------------------------------------

    def head(self) -> int:
        """The last notification id of the log (0 when empty), whatever its topic."""
        return self.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int | None = None, *, ahead: bool = False) -> list[EventRecord]:
        """Decoded events with ids > ``after`` (at most ``limit``, default the batch size; of the
        follower's topics when it has some), in id order.

        With ``ahead``, a full batch (of the batch size) also starts the next one reading and decoding
        in a background thread, while the caller applies this one: the next call for the position
        this batch ends at takes it. Ids are final, so a batch read early is the same as one read
        then; an empty or short one is read again (the log may have grown since)."""
        events: list[EventRecord] | None = None
        if self._ahead is not None:
            start, future = self._ahead
            self._ahead = None
            if start == after and limit is None:
                try:
                    events = future.result()
                except Exception as error:  # read again below: it raises if the failure lasts
                    log.debug("reading ahead failed: %s", error)
            elif not future.cancel():
                future.exception()  # let it finish before another read starts (errors are dropped)
        if events is None or len(events) < self.batch_size:
            events = self._read(after, limit)
            if threading.current_thread() is self._thread:
                self._read_to_end = len(events) < (limit or self.batch_size)
        if ahead and limit is None and len(events) == self.batch_size:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"{self.tracking_table}-reader")
            self._ahead = (events[-1].position, self._reader.submit(self._read, events[-1].position, None))
        return events

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as select_notifications
    def _read(self, after: int, limit: int | None) -> list[EventRecord]:
        params: tuple[Any, ...] = (
            (after, self.topics, limit or self.batch_size)
            if self.topics
            else (after, limit or self.batch_size)
        )
        with self.recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._select, params, prepare=True)
            rows = cur.fetchall()
        record = self._record
        return [record(*row) for row in rows]

    def close_reader(self) -> None:
        """Drop a batch read ahead and stop the thread that reads ahead (a later read starts it again)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].cancel()
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None

    def decode(self, notification: Notification) -> EventRecord:
        """The notification as a domain event, as the application's mapper gives it (upcasting
        included; :class:`infra.stored_events.StoredEventDecoder`); an event it cannot decode comes
        back with ``event`` None and the reason."""
        return self._record(
            notification.id,
            notification.originator_id,  # type: ignore[arg-type]
            notification.originator_version,
            notification.topic,
            notification.state,
        )

    def _record(
        self, position: int, originator_id: UUID, originator_version: int, topic: str, state: bytes
    ) -> EventRecord:
        event: Any | None = None
        error: str | None = None
        try:
            event = self._decoder.decode_parts(topic, originator_id, originator_version, state)
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
        return EventRecord(position, topic, originator_id, originator_version, event, error)

    # -- tracking positions (in the consumer's transaction) ----------------------------------------

    def track(self, conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
        """Start tracking ``names`` at position 0 (those tracked already keep their position)."""
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, position) SELECT n, 0 FROM unnest(%s::text[]) AS n ON CONFLICT DO NOTHING"
            ).format(self._tracking),
            (list(names),),
        )

    def positions(self, conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, Tracked]:
        """The tracked rows of ``names`` (the untracked are missing)."""
        rows = conn.execute(
            sql.SQL("SELECT name, position, state FROM {} WHERE name = ANY(%s)").format(self._tracking),
            (list(names),),
        ).fetchall()
        return {str(name): Tracked(int(position), str(state)) for name, position, state in rows}

    def lock(self, conn: psycopg.Connection[Any], name: str) -> Tracked | None:
        """``name``'s row, locked until the transaction ends (a second consumer of the same name
        waits, then sees where this one got to)."""
        row = conn.execute(
            sql.SQL("SELECT position, state FROM {} WHERE name = %s FOR UPDATE").format(self._tracking),
            (name,),
        ).fetchone()
        return None if row is None else Tracked(int(row[0]), str(row[1]))

    def advance(self, conn: psycopg.Connection[Any], name: str, position: int) -> None:
        """Record that ``name`` handled the log up to ``position`` (commits with the transaction)."""
        conn.execute(
            sql.SQL("UPDATE {} SET position = %s, updated_at = now() WHERE name = %s").format(self._tracking),
            (position, name),
        )

    # -- following in the background ---------------------------------------------------------------

    def start(
        self, session: Session, *, thread_name: str, poll_seconds: float, max_backoff: float = 30.0
    ) -> None:
        """Follow the log in a background thread: each run opens a listening connection and the
        consumer's ``session`` on it, then runs its step while it finds work and waits for the log's
        NOTIFY (or ``poll_seconds``) when not, or when the step read to the end of the log. A failing run is logged (``last_error``) and started
        again after a backoff doubling from 0.5 s to ``max_backoff``; a run that worked resets it."""
        if self.running:
            return
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self._follow, args=(session, poll_seconds, max_backoff), name=thread_name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _follow(self, session: Session, poll_seconds: float, max_backoff: float) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                with connect(self.address, autocommit=True) as listener, session(listener) as step:
                    if step is None:
                        return
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    while not self.stopping.is_set():
                        # What was committed before this drain the step's read sees; what commits
                        # later announces itself. So a step whose read reached the log's end waits
                        # for that, not reads again (under a steady trickle of commands the read
                        # again found nothing, a round trip per batch).
                        for _ in listener.notifies(timeout=0):
                            pass
                        self._read_to_end = False
                        if step():
                            self.last_error = None
                            backoff = 0.5
                            if not self._read_to_end:
                                continue
                        for _ in listener.notifies(timeout=poll_seconds, stop_after=1):
                            pass
                return
            except Exception as error:
                self.last_error = describe(error)
                log.warning(
                    "%s: following the log failed (%s); retrying in %.1f s",
                    threading.current_thread().name,
                    self.last_error.splitlines()[0],
                    backoff,
                    exc_info=not isinstance(error, psycopg.Error | ConnectionError),
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
