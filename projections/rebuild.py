"""Rebuild read models from the whole log without taking them offline.

1. Fresh tables are created beside the live ones (``rm_clips__rebuild``, …) with their own position
   rows (``clips__rebuild``, state ``rebuilding``), and the log is replayed into them from the start
   while the live tables keep serving (and the daemon keeps them current).
2. Indexes that are slow to maintain row by row (HNSW) are built once the replay is near the head.
3. In ONE short transaction: the live projections' position rows are locked (their runner waits), the
   tail of the log is applied to the rebuilt tables, the live tables are dropped and the rebuilt ones
   (and their indexes) renamed into their place, and each live position is set to the rebuilt one.
   Events committed after that transaction are applied by the live runner from that position, so none
   is missed or applied twice. Readers wait at most for that transaction.

One rebuild of a projection runs at a time (a PostgreSQL advisory lock per schema and projection, held
for the whole rebuild, whichever process runs it): a second one raises :class:`RebuildRunning`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.application import Application
from psycopg import sql

from infra.database import DatabaseAddress, connect
from infra.log_follower import LogFollower
from projections.base import REBUILD_SUFFIX, ErrorPolicy, Projection
from projections.read_your_writes import notify_positions
from projections.runner import (
    BATCH_SIZE,
    IndexBuild,
    ProjectionError,
    ProjectionRunner,
    apply_ahead,
    build_projections,
    projection_follower,
    rebuild_lock_key,
    schema_connection,
)

log = logging.getLogger(__name__)

#: How long the swap may wait for readers holding the live tables before giving up (and retrying).
SWAP_LOCK_TIMEOUT = "5s"
SWAP_ATTEMPTS = 3


class RebuildRunning(RuntimeError):
    """A rebuild of the projection is already running (here or in another process)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a rebuild of projection {name} is already running; wait for it to finish")
        self.name = name


@contextmanager
def _rebuild_lock(address: DatabaseAddress, schema: str, names: Sequence[str]) -> Iterator[None]:
    """Hold one advisory lock per projection for the rebuild; RebuildRunning if one is taken."""
    with connect(address, autocommit=True) as conn:
        for name in sorted(names):
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"heaters rebuild {schema}.{name}",)
            ).fetchone()
            if not (row and row[0]):
                raise RebuildRunning(name)  # closing the connection releases the locks already taken
        yield


def rebuild(
    app: Application[Any],
    address: DatabaseAddress,
    name: str | None = None,
    *,
    policies: Mapping[str, ErrorPolicy] | None = None,
    batch_size: int = BATCH_SIZE,
    projections: Sequence[Projection] | None = None,
) -> int:
    """Rebuild one projection (or all when ``name`` is None) from position 0 and swap it in; returns
    the position the rebuilt read models were swapped in at. ``projections`` (built with
    ``REBUILD_SUFFIX``) replaces the built-in ones (tests)."""
    chosen = (
        list(projections)
        if projections is not None
        else build_projections([name] if name else None, policies, suffix=REBUILD_SUFFIX)
    )
    if any(p.suffix != REBUILD_SUFFIX for p in chosen):
        raise ValueError(f"projections to rebuild must use the suffix {REBUILD_SUFFIX!r}")
    follower = projection_follower(app, address, batch_size)
    with _rebuild_lock(address, follower.schema, [p.name for p in chosen]):
        return _rebuild(follower, chosen)


def _rebuild(follower: LogFollower, chosen: Sequence[Projection]) -> int:
    address, schema, batch_size = follower.address, follower.schema, follower.batch_size
    with schema_connection(address, schema) as conn:
        _drop_rebuild_tables(conn, chosen)
    with ProjectionRunner(follower, chosen) as runner:
        with runner.conn.transaction():
            for projection in chosen:  # held until the runner's connection closes: proves it alive
                runner.conn.execute(
                    "SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                    (rebuild_lock_key(schema, projection.name),),
                )
        with runner.conn.transaction():
            runner.conn.execute(
                "UPDATE projection_positions SET state = 'rebuilding' WHERE name = ANY(%s)",
                ([p.name + p.suffix for p in chosen],),
            )
        replayed = 0
        builds: list[IndexBuild] = []
        try:
            # A projection with slow indexes (similarity) goes first, alone and on its topics only;
            # PostgreSQL builds its indexes while the others replay.
            apply_ahead(runner, chosen, runner.head(), builds)
            _raise_if_stopped(runner, chosen)
            while runner.projections:  # replay until (nearly) at the head, the live tables still serving
                head = runner.head()
                replayed += runner.catch_up(head)
                _raise_if_stopped(runner, chosen)
                positions = runner.positions()
                if head - min(positions[p.name + p.suffix].position for p in runner.projections) < batch_size:
                    break
        finally:
            for build in builds:
                build.join()
        runner.projections = list(chosen)
        runner._known = None
        with runner.conn.transaction(), runner.conn.cursor() as cur:
            for projection in chosen:
                if projection.defer_indexes:
                    projection.create_deferred_indexes(cur)
                    projection.defer_indexes = False
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                position = _swap(runner, chosen)
                break
            except psycopg.errors.LockNotAvailable:
                if attempt == SWAP_ATTEMPTS:
                    raise
                log.warning("rebuild: readers held the live tables too long; trying the swap again")
        log.info(
            "rebuilt %s from %d events; swapped in at position %d",
            ", ".join(p.name for p in chosen),
            replayed,
            position,
        )
        return position


def _positions_of(runner: ProjectionRunner, names: list[str]) -> dict[str, tuple[int, str, str | None]]:
    rows = runner.conn.execute(
        "SELECT name, position, state, last_error FROM projection_positions WHERE name = ANY(%s)", (names,)
    ).fetchall()
    return {n: (int(p), s, e) for n, p, s, e in rows}


def _raise_if_stopped(runner: ProjectionRunner, chosen: Sequence[Projection]) -> None:
    with runner.conn.transaction():
        rows = _positions_of(runner, [p.name + p.suffix for p in chosen])
    for name, (position, state, error) in rows.items():
        if state == "stopped":
            raise ProjectionError(
                f"rebuild of {name.removesuffix(REBUILD_SUFFIX)} stopped after position {position}: {error} "
                "(its tables stay beside the live ones until the next rebuild)"
            )


def _swap(runner: ProjectionRunner, chosen: Sequence[Projection]) -> int:
    conn = runner.conn
    live_names = [p.name for p in chosen]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT)))
        # The live runner applies batches holding its position row: lock them so it waits for the swap.
        cur.execute(
            "SELECT name FROM projection_positions WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
            (live_names,),
        )
        runner.catch_up()  # the tail, into the rebuilt tables (nested transactions are savepoints)
        _raise_if_stopped(runner, chosen)
        rebuilt = _positions_of(runner, [p.name + p.suffix for p in chosen])
        for projection in chosen:
            for base in projection.base_tables():
                _replace_table(cur, base, projection.table(base))
            position = rebuilt[projection.name + projection.suffix][0]
            cur.execute(
                "INSERT INTO projection_positions (name, position) VALUES (%(n)s, %(p)s) "
                "ON CONFLICT (name) DO UPDATE SET position = %(p)s, state = 'running', last_error = NULL, "
                "error_position = NULL, updated_at = now()",
                {"n": projection.name, "p": position},
            )
            cur.execute(
                "DELETE FROM projection_positions WHERE name = %s", (projection.name + projection.suffix,)
            )
            cur.execute("DELETE FROM projection_errors WHERE name = %s", (projection.name,))
            cur.execute(
                "UPDATE projection_errors SET name = %s WHERE name = %s",
                (projection.name, projection.name + projection.suffix),
            )
        notify_positions(conn, runner.schema)  # waits elsewhere see the swapped-in positions at once
        return min(rebuilt[p.name + p.suffix][0] for p in chosen)


def _replace_table(cur: psycopg.Cursor[Any], live: str, rebuilt: str) -> None:
    """Drop ``live`` and rename ``rebuilt`` (and its indexes) into its place."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(live)))
    indexes = cur.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", (rebuilt,)
    ).fetchall()
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(rebuilt), sql.Identifier(live)))
    for (index,) in indexes:
        if index.startswith(rebuilt):
            cur.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(index), sql.Identifier(live + index[len(rebuilt) :])
                )
            )


def _drop_rebuild_tables(conn: psycopg.Connection[Any], chosen: Sequence[Projection]) -> None:
    """Start from scratch: a rebuild left over from a crash may have been made by other code."""
    with conn.transaction():
        for projection in chosen:
            for base in projection.base_tables():
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(projection.table(base)))
                )
        if conn.execute("SELECT to_regclass('projection_positions')").fetchone() not in (None, (None,)):
            names = [p.name + p.suffix for p in chosen]
            conn.execute("DELETE FROM projection_positions WHERE name = ANY(%s)", (names,))
            conn.execute("DELETE FROM projection_errors WHERE name = ANY(%s)", (names,))
