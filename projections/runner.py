"""The projection runner: applies the event log to the read models, from each projection's tracked
position, in batches, each batch in ONE transaction together with the projection's row in
``projection_positions``, so rows and position commit together (exactly once). A crash mid-batch rolls
the batch back; the next run simply reads it again.

Reading the log (decoded by the application's mapper), the positions' bookkeeping and the daemon's
thread are the shared :class:`infra.log_follower.LogFollower`'s; what is here is the read side's own:
applying batches set-based, error policies, leader election, the bulk index switch.

Errors never pass silently: an event whose handler raises is recorded in ``projection_errors``
(position, topic, error) and, by the projection's error policy, either ``stop`` s it (state
``stopped``, ``last_error`` set, position left before the event) or is ``skip`` ped. A database error
while writing a batch makes the runner re-apply that batch event by event (each in a savepoint) to find
the event responsible. Status: :func:`projections.status.projection_status`.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from eventsourcing.application import Application
from psycopg import sql

from infra.database import DatabaseAddress, connect
from infra.log_follower import RUNNING, LogFollower, Step, Tracked, describe
from projections import read_your_writes
from projections.base import Cursor, ErrorPolicy, EventRecord, Projection
from projections.clips import ClipsProjection
from projections.history import HistoryProjection
from projections.read_your_writes import POSITIONS_TABLE, local_positions, notify_positions
from projections.schema import RUNNER_DDL
from projections.similarity import SimilarityProjection
from projections.stats import StatsProjection
from projections.videos import VideosProjection

log = logging.getLogger(__name__)

#: Events read and applied per transaction.
BATCH_SIZE = 2000

# A batch's statements on the positions, rendered once (psycopg renders a composed statement again on
# every execute).
_LOCK_POSITIONS = (
    sql.SQL("SELECT name, position, state FROM {} WHERE name = ANY(%s) ORDER BY name FOR UPDATE")
    .format(sql.Identifier(POSITIONS_TABLE))
    .as_string(None)
)
_ADVANCE_POSITIONS = (
    sql.SQL(
        "UPDATE {} AS p SET position = v.position, updated_at = now() "
        "FROM unnest(%s::text[], %s::bigint[]) AS v(name, position) WHERE p.name = v.name"
    )
    .format(sql.Identifier(POSITIONS_TABLE))
    .as_string(None)
)

#: A catch-up at least this many events behind (and behind by more events than the HNSW index has
#: rows) drops that index and builds it once at the head.
BULK_BACKLOG = 10_000

#: Position-row states the runner applies events in (``rebuilding``: the tables beside the live ones).
RUNNABLE = (RUNNING, "rebuilding")

#: Every projection, by name (the order they are applied in a round).
PROJECTIONS: dict[str, type[Projection]] = {
    p.name: p
    for p in (VideosProjection, ClipsProjection, HistoryProjection, SimilarityProjection, StatsProjection)
}


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while applying: a batch allocates many short-lived rows
    that reference counting frees, and the collector's passes over them cost ~15 % of the CPU time.
    Paused per batch, the passes just after each batch still walked the batch read ahead (and moved it
    into older generations, whose passes walk everything): a catch-up pauses it from start to end
    (nested pauses leave it to the outermost). What cycles the batches leave are collected after."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _applied(todo: Sequence[EventRecord], position: int) -> int:
    """How many of ``todo`` (in log order) a projection that reached ``position`` applied."""
    if position >= todo[-1].position:
        return len(todo)
    return sum(1 for e in todo if e.position <= position)


class ProjectionError(RuntimeError):
    """A projection could not be brought up to date."""


def build_projections(
    names: Sequence[str] | None = None, policies: Mapping[str, ErrorPolicy] | None = None, suffix: str = ""
) -> list[Projection]:
    unknown = sorted(set(names or ()) - set(PROJECTIONS))
    if unknown:
        raise ValueError(f"unknown projection {', '.join(unknown)}; projections are {', '.join(PROJECTIONS)}")
    projections = [PROJECTIONS[n](suffix) for n in (names or PROJECTIONS)]
    for p in projections:
        if policies and p.name in policies:
            p.error_policy = policies[p.name]  # type: ignore[misc]
    return projections


def set_search_path(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    conn.commit()


@contextmanager
def schema_connection(address: DatabaseAddress, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose ``search_path`` is the schema (then ``public``, where pgvector lives)."""
    with connect(address) as conn:
        set_search_path(conn, schema)
        yield conn


def ensure_schema(conn: psycopg.Connection[Any], projections: Sequence[Projection]) -> None:
    """Create pgvector, the runner's tables, the projections' tables and their position rows."""
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
    except psycopg.errors.UniqueViolation:  # another process created it at the same instant
        pass
    names = ["projection_positions", "projection_errors"]
    names += [p.table(t) for p in projections for t in p.base_tables()]
    with conn.transaction():
        present = conn.execute(
            "SELECT count(to_regclass(n)) FROM unnest(%s::text[]) AS n", (names,)
        ).fetchone()
        rows = (
            conn.execute(
                "SELECT count(*) FROM projection_positions WHERE name = ANY(%s)",
                ([p.name + p.suffix for p in projections],),
            ).fetchone()
            if present and present[0] == len(names)
            else None
        )
    if rows is not None and rows[0] == len(projections):
        return  # all there: no DDL (it would take locks that wait for a running batch)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.projections'))")
        for statement in RUNNER_DDL.split(";"):
            if statement.strip():
                conn.execute(statement)  # type: ignore[call-overload]
        for projection in projections:
            for ddl in projection.ddl():
                for statement in ddl.split(";"):
                    if statement.strip():
                        conn.execute(statement)  # type: ignore[call-overload]
            conn.execute(
                "INSERT INTO projection_positions (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                (projection.name + projection.suffix,),
            )


class ProjectionRunner:
    """Brings projections up to the head of the log, batch by batch, on one connection; the log is
    read by ``follower`` (whose tracking table is ``projection_positions``)."""

    def __init__(self, follower: LogFollower, projections: Sequence[Projection] | None = None) -> None:
        if follower.tracking_table != POSITIONS_TABLE:
            raise ValueError(f"a projection runner tracks its positions in {POSITIONS_TABLE}")
        self.follower = follower
        self.address = follower.address
        self.schema = follower.schema
        self.projections = list(projections if projections is not None else build_projections())
        self.batch_size = follower.batch_size
        self._known: dict[str, Tracked] | None = None
        self.conn = connect(self.address)
        set_search_path(self.conn, self.schema)
        ensure_schema(self.conn, self.projections)
        #: Every position as the last batch committed it (and announced it: :func:`notify_positions`).
        self.published: dict[str, int] = {}
        #: Where the last read of the log started when it found nothing (None: it found events).
        self.found_nothing_after: int | None = None
        #: Indexes a batch made due, building in the background (by projection name).
        self.builds: dict[str, IndexBuild] = {}

    def close(self) -> None:
        """Close the connections, once the indexes building in the background are done."""
        try:
            for build in self.builds.values():
                build.wait()
        finally:
            self.follower.close_reader()
            self.conn.close()

    def _start_due_builds(self) -> None:
        """After a commit: build each index a batch made due (a dimension of embeddings that reached
        its threshold) on a connection of its own, with ``CREATE INDEX CONCURRENTLY``, so the batches go
        on meanwhile; one build per projection at a time. Not inside a caller's transaction (a
        rebuild's swap), which the build would wait for."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return
        for projection in self.projections:
            if not projection.indexes_due():
                continue
            name = projection.name + projection.suffix
            running = self.builds.get(name)
            if running is not None:
                if running.alive():
                    continue
                running.wait()
            self.builds[name] = IndexBuild(self.address, self.schema, projection, due=True)

    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head(self) -> int:
        """The last notification id of the log (0 when empty)."""
        return self.follower.head()

    # -- applying --------------------------------------------------------------------------------------

    def positions(self) -> dict[str, Tracked]:
        with self.conn.transaction():
            self._known = self.follower.positions(self.conn, [p.name + p.suffix for p in self.projections])
        return dict(self._known)

    def known_positions(self) -> dict[str, Tracked]:
        """The positions as this runner last read or wrote them (read when it does not know them):
        a step that found work reads them once, not once per batch."""
        if self._known is None:
            return self.positions()
        return dict(self._known)

    def step(self) -> int:
        """Apply one batch to every running projection that is behind; returns events applied."""
        positions = self.known_positions()
        behind = [
            p
            for p in self.projections
            if positions.get(p.name + p.suffix, Tracked(0, "stopped")).state in RUNNABLE
        ]
        if not behind:
            self._known = None  # idle: read them again next time (a resume, a rebuild's swap)
            return 0
        low = min(positions[p.name + p.suffix].position for p in behind)
        events = self.follower.read(low, ahead=True)
        self.found_nothing_after = None if events else low
        if not events:
            self._known = None
            return 0
        try:
            with collector_paused():
                try:
                    applied = self._apply_all(behind, events, low)
                except psycopg.Error as error:
                    if isinstance(error, psycopg.OperationalError) or self.conn.broken:
                        raise
                    log.warning(
                        "batch after %d failed on write (%s); applying it projection by projection",
                        low,
                        error,
                    )
                    for projection in behind:
                        projection.discard()
                    applied = self._apply_each(behind, events, low)
        except BaseException:
            self._known = None
            raise
        self._start_due_builds()
        return applied

    def _apply_all(self, behind: Sequence[Projection], events: Sequence[EventRecord], low: int) -> int:
        """The batch for every projection in ONE transaction, with no savepoint and few round trips:
        the position rows locked in one statement, the rows each projection needs loaded, the events
        applied in memory, then the writes (COPY first, the other statements pipelined) and the
        positions. A database error raises and rolls it all back (the caller then applies the batch
        projection by projection, to find the event responsible). Without waiting for the WAL flush:
        read models are derived, and their rows and positions are lost together in a crash, so the
        runner simply applies them again."""
        conn = self.conn
        applied = 0
        with conn.transaction(), conn.cursor() as cur:
            with conn.pipeline():
                cur.execute("SET LOCAL synchronous_commit = off")
                cur.execute(  # every projection's row: one stopped until now may have been resumed
                    _LOCK_POSITIONS, ([p.name + p.suffix for p in self.projections],)
                )
                rows = {str(n): Tracked(int(pos), str(state)) for n, pos, state in cur.fetchall()}
            known = dict(rows)
            work: list[tuple[Projection, list[EventRecord], Tracked]] = []
            for projection in behind:
                name = projection.name + projection.suffix
                row = rows.get(name)
                if row is None or row.state not in RUNNABLE or row.position < low:
                    continue  # stopped meanwhile, or moved back (a rebuild swapped): the next step sees it
                todo = [e for e in events if e.position > row.position]
                if todo:
                    projection.reset()
                    projection.load(cur, todo)  # every load before the first write (see below)
                    work.append((projection, todo, row))
            # COPY cannot run in a pipeline: those projections write first. The others' statements go
            # into one pipeline as each is applied, so PostgreSQL writes one projection's rows while
            # this process applies the next; the positions close it.
            work.sort(key=lambda w: not w[0].copies)
            advanced: dict[str, int] = {}
            with ExitStack() as stack:
                piped = False
                for projection, todo, row in work:
                    if not projection.copies and not piped:
                        stack.enter_context(conn.pipeline())
                        piped = True
                    name = projection.name + projection.suffix
                    position, stopped, errors = self._run_events(projection, todo, cur)
                    position = max(position, row.position)
                    applied += _applied(todo, position)
                    projection.flush(cur)
                    self._record(cur, name, position, stopped, errors)
                    if stopped is None:
                        advanced[name] = position
                    known[name] = Tracked(position, row.state if stopped is None else "stopped")
                if advanced:
                    cur.execute(_ADVANCE_POSITIONS, (list(advanced), list(advanced.values())))
            announced = notify_positions(conn, self.schema)  # delivered, like the rows, at commit
        self.published = announced
        self._known = known if all(p.name + p.suffix in known for p in self.projections) else None
        return applied

    def _apply_each(self, behind: Sequence[Projection], events: Sequence[EventRecord], low: int) -> int:
        """The batch projection by projection, each in a savepoint (a failing write is then found
        event by event), in one transaction."""
        applied = 0
        with self.conn.transaction():
            self.conn.execute("SET LOCAL synchronous_commit = off")
            for projection in behind:
                applied += self.apply_batch(projection, events, low)
            announced = notify_positions(self.conn, self.schema)
        self.published = announced
        self._known = None
        return applied

    def _record(
        self,
        cur: Cursor,
        name: str,
        position: int,
        stopped: tuple[EventRecord, str] | None,
        errors: Sequence[tuple[EventRecord, str, bool]],
    ) -> None:
        """Write a batch's failed events to ``projection_errors`` and, when one stopped the projection,
        its position row."""
        for record, message, skipped in errors:
            cur.execute(
                "INSERT INTO projection_errors (name, position, topic, error, skipped) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (name, position) DO UPDATE SET topic = EXCLUDED.topic, error = EXCLUDED.error, "
                "skipped = EXCLUDED.skipped, at = now()",
                (name, record.position, record.topic, message, skipped),
            )
        if stopped is not None:
            cur.execute(
                "UPDATE projection_positions SET position = %s, state = 'stopped', last_error = %s, "
                "error_position = %s, updated_at = now() WHERE name = %s",
                (position, stopped[1], stopped[0].position, name),
            )
            log.error(
                "projection %s stopped at event %d (%s): %s",
                name,
                stopped[0].position,
                stopped[0].topic,
                stopped[1],
            )

    def catch_up(self, until: int | None = None) -> int:
        """Apply batches until every running projection reached ``until`` (default: the head now);
        returns the number of (event, projection) applications."""
        target = self.head() if until is None else until
        applied = 0
        with collector_paused():  # for the whole catch-up, not batch by batch (see the function)
            while True:
                positions = self.known_positions()
                running = [
                    positions[p.name + p.suffix].position
                    for p in self.projections
                    if positions.get(p.name + p.suffix, Tracked(0, "stopped")).state in RUNNABLE
                ]
                if not running or min(running) >= target:
                    return applied
                done = self.step()
                applied += done
                if done == 0 and not self._progressed(positions):
                    return applied

    def _progressed(self, before: dict[str, Tracked]) -> bool:
        return self.positions() != before

    def apply_batch(self, projection: Projection, events: Sequence[EventRecord], read_after: int) -> int:
        """Apply ``events`` (read after ``read_after``) to one projection in one transaction."""
        name = projection.name + projection.suffix
        with self.conn.transaction(), self.conn.cursor() as cur:
            row = self.follower.lock(self.conn, name)
            if row is None or row.state not in RUNNABLE or row.position < read_after:
                return 0  # stopped meanwhile, or moved back (a rebuild swapped): the next round re-reads
            todo = [e for e in events if e.position > row.position]
            if not todo:
                return 0
            try:
                with self.conn.transaction():
                    outcome = self._apply(cur, projection, todo)
            except psycopg.Error as error:
                if isinstance(error, psycopg.OperationalError) or self.conn.broken:
                    raise
                log.warning(
                    "projection %s: batch failed on write (%s); re-applying event by event", name, error
                )
                outcome = self._apply_one_by_one(cur, projection, todo)
            position, stopped, errors = outcome
            self._record(cur, name, max(position, row.position), stopped, errors)
            if stopped is None:
                self.follower.advance(self.conn, name, position)
            applied = _applied(todo, position)
        return applied

    def _apply(
        self, cur: Cursor, projection: Projection, todo: Sequence[EventRecord]
    ) -> tuple[int, tuple[EventRecord, str] | None, list[tuple[EventRecord, str, bool]]]:
        """Load what ``todo`` needs, apply it in memory, then flush; returns (position reached, stop,
        errors)."""
        projection.reset()
        projection.load(cur, todo)
        outcome = self._run_events(projection, todo, cur)
        projection.flush(cur)
        return outcome

    def _run_events(
        self, projection: Projection, todo: Sequence[EventRecord], cur: Cursor
    ) -> tuple[int, tuple[EventRecord, str] | None, list[tuple[EventRecord, str, bool]]]:
        """Apply ``todo`` in memory, to the rows loaded; returns (position reached, stop, errors).

        First without keeping each event's undo (a copy of every row it changes, and marks: a tenth
        of the client's CPU): when no handler raises, that is the batch. When one does, the rows are
        loaded again and the batch applied once more event by event, each undone if it raises, so an
        event that fails leaves nothing behind (``apply`` only changes memory, loaded by ``load``)."""
        follows = None if projection.follows_every_topic else projection.handlers()
        apply = projection.apply
        try:
            if follows is not None and type(projection).apply is Projection.apply:
                handler_of = follows.get  # Projection.apply without its call per event
                for record in todo:
                    handler = handler_of(record.topic)
                    if record.event is None:
                        apply(record)  # raises: it cannot be decoded
                    elif handler is not None:
                        handler(record)
            else:
                for record in todo:
                    if follows is None or record.topic in follows or record.event is None:
                        apply(record)
            return todo[-1].position, None, []
        except Exception:
            projection.reset()
            projection.load(cur, todo)
        position = todo[0].position - 1
        errors: list[tuple[EventRecord, str, bool]] = []
        stopped: tuple[EventRecord, str] | None = None
        # A decoded event of a topic the projection does not follow changes nothing: passed over.
        for record in todo:
            if follows is not None and record.topic not in follows and record.event is not None:
                position = record.position
                continue
            projection.begin_event()
            try:
                projection.apply(record)
            except Exception as error:
                projection.rollback_event()
                message = describe(error)
                skip = projection.error_policy == "skip"
                errors.append((record, message, skip))
                log.warning(
                    "projection %s: event %d (%s) failed: %s%s",
                    projection.name + projection.suffix,
                    record.position,
                    record.topic,
                    message.splitlines()[0],
                    " (skipped)" if skip else "",
                )
                if not skip:
                    stopped = (record, message)
                    break
            else:
                projection.commit_event()
            position = record.position
        return position, stopped, errors

    def _apply_one_by_one(
        self, cur: Cursor, projection: Projection, todo: Sequence[EventRecord]
    ) -> tuple[int, tuple[EventRecord, str] | None, list[tuple[EventRecord, str, bool]]]:
        position = todo[0].position - 1
        errors: list[tuple[EventRecord, str, bool]] = []
        for record in todo:
            try:
                with self.conn.transaction():
                    _, stopped, event_errors = self._apply(cur, projection, [record])
            except psycopg.Error as error:
                if isinstance(error, psycopg.OperationalError) or self.conn.broken:
                    raise
                stopped, event_errors = None, [(record, describe(error), projection.error_policy == "skip")]
                if projection.error_policy == "stop":
                    stopped = (record, event_errors[0][1])
            errors += event_errors
            if stopped is not None:
                return position, stopped, errors
            position = record.position
        return position, None, errors


# -- the entry points --------------------------------------------------------------------------------------


def projection_follower(
    app: Application[Any], address: DatabaseAddress, batch_size: int = BATCH_SIZE
) -> LogFollower:
    """The follower of ``app``'s log for the projections (all topics; positions in
    ``projection_positions`` of the event store's schema)."""
    return LogFollower(app, address, POSITIONS_TABLE, batch_size=batch_size)


def catch_up(
    app: Application[Any],
    address: DatabaseAddress,
    names: Sequence[str] | None = None,
    *,
    policies: Mapping[str, ErrorPolicy] | None = None,
    projections: Sequence[Projection] | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Bring the named projections (default: all) up to the head of the log as it is now.

    Returns the head position they were brought to. Stopped projections are left as they are (see
    :func:`projections.status.projection_status`). ``projections`` replaces the built-in ones (tests)."""
    chosen = list(projections) if projections is not None else build_projections(names, policies)
    with ProjectionRunner(projection_follower(app, address, batch_size), chosen) as runner:
        head = runner.head()
        bulk = _start_bulk(runner, head)
        builds: list[IndexBuild] = []
        try:
            apply_ahead(runner, bulk, head, builds)
            runner.catch_up(head)
        finally:
            for build in builds:
                build.join()
            rest = [p for p in bulk if all(p is not b.projection for b in builds)]
            if rest:
                with runner.conn.transaction(), runner.conn.cursor() as cur:
                    for projection in rest:
                        projection.create_deferred_indexes(cur)
                        projection.defer_indexes = False
            if bulk:
                log.info("catch-up: rebuilt the indexes of %s", ", ".join(p.name for p in bulk))
        return head


class IndexBuild:
    """A projection's indexes built on a connection of their own in a background thread while the
    runner applies batches: PostgreSQL's build and this process's work overlap. Its deferred indexes
    (HNSW, in a transaction: a catch-up far behind, a rebuild), or with ``due`` the indexes a batch made
    due (autocommit, for ``CREATE INDEX CONCURRENTLY``). :meth:`join` waits for it (and raises what it
    raised); :meth:`wait` logs that instead."""

    def __init__(
        self, address: DatabaseAddress, schema: str, projection: Projection, *, due: bool = False
    ) -> None:
        self.address, self.schema, self.projection, self.due = address, schema, projection, due
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._build, name=f"{projection.name}-indexes", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        try:
            if self.due:
                with connect(self.address, autocommit=True) as conn:
                    set_search_path(conn, self.schema)
                    self.projection.build_due_indexes(conn)
                return
            with (
                schema_connection(self.address, self.schema) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                self.projection.create_deferred_indexes(cur)
        except BaseException as error:  # raised again by join, in the runner's thread
            self.error = error

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error
        if not self.due:
            self.projection.defer_indexes = False

    def wait(self) -> None:
        """Join; a failed build is logged (its searches rank exactly meanwhile; a later batch tries
        again)."""
        try:
            self.join()
        except Exception as error:
            log.warning("projection %s: building an index failed: %s", self.projection.name, describe(error))


def apply_ahead(
    runner: ProjectionRunner, projections: Sequence[Projection], head: int, builds: list[IndexBuild]
) -> None:
    """Bring each of ``projections`` that defers indexes and follows only some topics to ``head``
    first, alone, reading only its topics; then start building its indexes (``builds``) and leave
    the runner the others. Its position is then set to ``head`` when the last read found none of its
    topics after where it started (ids follow commit order, so none lies before ``head``), unless the
    position moved back meanwhile (a rebuild's swap)."""
    ahead = [p for p in projections if p.defers_indexes and p.defer_indexes and not p.follows_every_topic]
    for projection in ahead:
        name = projection.name + projection.suffix
        with ProjectionRunner(runner.follower.of_topics(projection.handlers()), [projection]) as alone:
            alone.catch_up(head)
            after = alone.found_nothing_after
            if after is not None and after < head:  # none of its topics after ``after``: on to the head
                with alone.conn.transaction():
                    alone.conn.execute(
                        sql.SQL(
                            "UPDATE {} SET position = %s, updated_at = now() "
                            "WHERE name = %s AND state = ANY(%s) AND position >= %s AND position < %s"
                        ).format(sql.Identifier(POSITIONS_TABLE)),
                        (head, name, list(RUNNABLE), after, head),
                    )
                    notify_positions(alone.conn, alone.schema)
        builds.append(IndexBuild(runner.address, runner.schema, projection))
    if ahead:
        runner.projections = [p for p in runner.projections if all(p is not a for a in ahead)]
        runner._known = None


def _start_bulk(runner: ProjectionRunner, head: int) -> list[Projection]:
    """Projections far enough behind that dropping their slow indexes (HNSW) and building them once
    at the head is cheaper than maintaining them row by row: an HNSW insert costs about 8 times a vector's
    share of a bulk build here, so the switch is when the backlog (in events) is at least
    :data:`BULK_BACKLOG` and at least the rows the index already covers. Searches meanwhile scan."""
    positions = runner.positions()
    bulk: list[Projection] = []
    with runner.conn.transaction(), runner.conn.cursor() as cur:
        for projection in runner.projections:
            if projection.defer_indexes:
                continue  # a rebuild: its indexes are built before the swap
            state = positions.get(projection.name + projection.suffix)
            if state is None or state.state not in RUNNABLE:
                continue
            backlog = head - state.position
            if backlog >= max(
                BULK_BACKLOG, projection.deferrable_rows(cur)
            ) and projection.drop_deferrable_indexes(cur):
                projection.defer_indexes = True
                bulk.append(projection)
    if bulk:
        log.info(
            "catch-up of %d events: %s build their indexes at the end", head, ", ".join(p.name for p in bulk)
        )
    return bulk


def wait_for(
    address: DatabaseAddress,
    schema: str,
    position: int,
    names: Sequence[str] | None = None,
    timeout: float = 5.0,
) -> bool:
    """Block until the named projections (default: all) have applied the log up to ``position``;
    False on timeout (e.g. no daemon running, or a projection stopped). Woken by the daemon's
    announcements (:mod:`projections.read_your_writes`), not by polling."""
    return read_your_writes.wait(address, schema, position, list(names or PROJECTIONS), timeout)


DAEMONS_DDL = """CREATE TABLE IF NOT EXISTS {}.projection_daemons (
    id text PRIMARY KEY,              -- host:pid:n
    lock_key text NOT NULL,           -- the projection set it serves
    names text[] NOT NULL,
    leader boolean NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
)"""
#: A daemon beats every second; one silent this long is dead (``projections status`` says so).
DAEMON_HEARTBEAT_SECONDS = 1.0
DAEMON_DEAD_AFTER_SECONDS = 10.0
_daemon_ids = iter(range(1, 1 << 30))


def rebuild_lock_key(schema: str, name: str) -> str:
    """The advisory lock a rebuild of ``name`` holds while it runs (a rebuild row without it is dead)."""
    return f"heaters-rebuild:{schema}:{name}"


class ProjectionDaemon:
    """Keeps projections caught up continuously in the log follower's background thread: applies
    batches while there is work, then waits for eventsourcing's NOTIFY on the log's channel (or 100 ms,
    whichever comes first). Errors of the database are logged and retried with backoff; it never dies
    silently (``last_error`` and the log say what is wrong).

    Leader election: a daemon works only while it holds a PostgreSQL advisory lock for its schema and
    projection set; a second daemon waits as a standby (``leader`` is False) and takes over when the
    first stops or its connection dies."""

    def __init__(
        self,
        app: Application[Any],
        address: DatabaseAddress,
        names: Sequence[str] | None = None,
        *,
        policies: Mapping[str, ErrorPolicy] | None = None,
        poll_interval: float = 0.1,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.follower = projection_follower(app, address, batch_size)
        self.address = address
        self.schema = self.follower.schema
        self.names = list(names) if names else None
        self.policies = dict(policies or {})
        self.poll_interval = poll_interval
        self.leader = False
        self.daemon_id = f"{socket.gethostname()}:{os.getpid()}:{next(_daemon_ids)}"
        self._last_beat = 0.0

    @property
    def last_error(self) -> str | None:
        return self.follower.last_error

    def _beat(self, conn: psycopg.Connection[Any], force: bool = False) -> None:
        """Publish liveness (and whether it leads) in ``projection_daemons``, at most once a second."""
        now = time.monotonic()
        if not force and now - self._last_beat < DAEMON_HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, lock_key, names, leader) VALUES (%s, %s, %s, %s) ON CONFLICT (id)"
                " DO UPDATE SET leader = EXCLUDED.leader, heartbeat_at = now()"
            ).format(sql.Identifier(self.schema, "projection_daemons")),
            (self.daemon_id, self.lock_key, sorted(self.names or PROJECTIONS), self.leader),
        )

    def _forget(self) -> None:
        try:
            with connect(self.address, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id = %s").format(
                        sql.Identifier(self.schema, "projection_daemons")
                    ),
                    (self.daemon_id,),
                )
        except psycopg.Error as error:
            log.warning("projection daemon %s: could not remove its heartbeat row: %s", self.daemon_id, error)

    @property
    def lock_key(self) -> str:
        return f"heaters-projections:{self.schema}:{','.join(sorted(self.names or PROJECTIONS))}"

    def start(self) -> None:
        self.follower.start(
            self._session, thread_name=f"projections-{self.schema}", poll_seconds=self.poll_interval
        )

    def stop(self, timeout: float = 10.0) -> None:
        running = self.follower.running
        self.follower.stop(timeout)
        if running:
            self._forget()

    @property
    def running(self) -> bool:
        return self.follower.running

    def __enter__(self) -> ProjectionDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def _session(self, listener: psycopg.Connection[Any]) -> Iterator[Step | None]:
        """One run of the daemon on the follower's listening connection, which holds the leader's
        advisory lock (released with it) and beats: standing by until it leads, then its step."""
        projections = build_projections(self.names, self.policies)
        with ProjectionRunner(self.follower, projections) as runner:
            listener.execute(sql.SQL(DAEMONS_DDL).format(sql.Identifier(self.schema)))
            if not self._become_leader(listener):
                yield None
                return
            log.info("projection daemon running for schema %s", self.schema)
            local = local_positions(self.address, self.schema)
            with local.condition:
                local.daemons += 1
            try:
                self._beat(listener, force=True)

                def step() -> int:
                    self._beat(listener)
                    announced = runner.published
                    applied = runner.step()
                    if runner.published is not announced:  # the batch's positions, as announced
                        local.publish(runner.published)
                    else:
                        local.publish({name: p.position for name, p in runner.known_positions().items()})
                    return applied

                yield step
            finally:
                self.leader = False
                with local.condition:
                    local.daemons -= 1
                local.publish({})

    def _become_leader(self, conn: psycopg.Connection[Any]) -> bool:
        """Wait until this daemon holds the advisory lock (released with the connection); False if
        stopped first."""
        announced = False
        while not self.follower.stopping.is_set():
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self.lock_key,)
            ).fetchone()
            if row and row[0]:
                self.leader = True
                if announced:
                    log.info("projection daemon for schema %s took over as leader", self.schema)
                return True
            self._beat(conn)
            if not announced:
                log.info("another projection daemon leads schema %s; this one stands by", self.schema)
                announced = True
            self.follower.stopping.wait(max(self.poll_interval * 5, 0.25))
        return False


def resume(address: DatabaseAddress, schema: str, name: str, *, skip: bool = False) -> int:
    """Restart a stopped projection: it retries the event it stopped at, or with ``skip`` marks that
    event skipped and goes on after it. Returns its position."""
    if name not in PROJECTIONS:
        raise ValueError(f"unknown projection {name}; projections are {', '.join(PROJECTIONS)}")
    with schema_connection(address, schema) as conn, conn.transaction():
        row = conn.execute(
            "SELECT position, state, error_position FROM projection_positions WHERE name = %s FOR UPDATE",
            (name,),
        ).fetchone()
        if row is None:
            raise ValueError(f"projection {name} has not run yet")
        position, state, error_position = int(row[0]), row[1], row[2]
        if state != "stopped":
            return position
        if skip and error_position is not None:
            position = int(error_position)
            conn.execute(
                "UPDATE projection_errors SET skipped = true WHERE name = %s AND position = %s",
                (name, position),
            )
        conn.execute(
            "UPDATE projection_positions SET state = 'running', position = %s, last_error = NULL, "
            "error_position = NULL, updated_at = now() WHERE name = %s",
            (position, name),
        )
        notify_positions(conn, schema)
        log.info(
            "projection %s resumed at position %d%s",
            name,
            position,
            " (skipping the failed event)" if skip else "",
        )
        return position
