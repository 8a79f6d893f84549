"""How far behind each projection is, and whether it stopped on an error."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from eventsourcing.application import Application
from psycopg import sql

from infra.database import DatabaseAddress
from infra.log_follower import LogFollower
from projections.base import REBUILD_SUFFIX
from projections.runner import (
    DAEMON_DEAD_AFTER_SECONDS,
    PROJECTIONS,
    projection_follower,
    rebuild_lock_key,
    schema_connection,
)

#: A rebuild row whose rebuild process is gone (killed): ``heaters projections status --drop-abandoned``.
ABANDONED = "abandoned"


@dataclass(frozen=True)
class ProjectionStatus:
    """One projection: ``position`` (last applied notification id), ``head`` (last id of the log),
        ``lag_events`` (events still to apply), ``lag_seconds`` (age of the oldest event still to apply, 0
        when caught up), ``state`` (running, stopped, rebuilding), ``last_error``, ``error_count`` (rows in
        ``projection_errors``, skipped ones included), ``daemon`` (the live daemon that leads it; None when
    none does: nothing keeps it caught up). A rebuild whose process died is ``abandoned``."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    state: str
    last_error: str | None
    error_count: int
    daemon: str | None = None  # the live daemon leading it (None: nothing keeps it caught up)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DaemonStatus:
    """One projection daemon as its heartbeat row tells: ``alive`` (beat within
    ``DAEMON_DEAD_AFTER_SECONDS``) and whether it ``leads`` (holds the advisory lock) or stands by."""

    id: str
    names: list[str]
    leader: bool
    alive: bool
    last_beat_seconds: float
    started_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def daemons_on(conn: psycopg.Connection[Any]) -> list[DaemonStatus]:
    if not (conn.execute("SELECT to_regclass('projection_daemons')").fetchone() or (None,))[0]:
        return []
    rows = conn.execute(
        "SELECT id, names, leader, extract(epoch FROM now() - heartbeat_at), started_at"
        " FROM projection_daemons ORDER BY leader DESC, started_at"
    ).fetchall()
    return [
        DaemonStatus(str(i), list(n), bool(lead), float(age) < DAEMON_DEAD_AFTER_SECONDS, float(age), started)
        for i, n, lead, age, started in rows
    ]


def daemon_status(address: DatabaseAddress, schema: str) -> list[DaemonStatus]:
    with schema_connection(address, schema) as conn:
        conn.autocommit = True
        return daemons_on(conn)


def _rebuild_alive(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    """A rebuild holds its advisory lock while it runs: taking it here means none does."""
    with conn.transaction():
        row = conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (rebuild_lock_key(schema, name),)
        ).fetchone()
    return not (row and row[0])


def drop_abandoned_rebuilds(app: Application[Any], address: DatabaseAddress) -> list[str]:
    """Remove the tables and position rows of rebuilds whose process died; returns their names."""
    from projections.rebuild import _drop_rebuild_tables
    from projections.runner import build_projections

    dropped = [r.name for r in projection_status(app, address) if r.state == ABANDONED]
    if dropped:
        chosen = build_projections([n.removesuffix(REBUILD_SUFFIX) for n in dropped], suffix=REBUILD_SUFFIX)
        with schema_connection(address, projection_follower(app, address).schema) as conn:
            _drop_rebuild_tables(conn, chosen)
    return dropped


def projection_status(app: Application[Any], address: DatabaseAddress) -> list[ProjectionStatus]:
    """Every known projection (and rebuild in progress) of ``app``'s log, in registry order."""
    follower = projection_follower(app, address)
    with schema_connection(address, follower.schema) as conn:
        conn.autocommit = True
        return status_on(conn, follower)


def status_on(conn: psycopg.Connection[Any], follower: LogFollower) -> list[ProjectionStatus]:
    """The status, on a connection whose ``search_path`` starts with the schema."""
    has_positions = bool(
        (conn.execute("SELECT to_regclass('projection_positions')").fetchone() or (None,))[0]
    )
    events = sql.Identifier(follower.schema, follower.events_table)
    head = follower.head()
    rows: dict[str, tuple[int, str, str | None, int]] = {
        name: (0, "not started", None, 0) for name in PROJECTIONS
    }
    if has_positions:
        for name, position, state, last_error, errors in conn.execute(
            "SELECT p.name, p.position, p.state, p.last_error, "
            "(SELECT count(*) FROM projection_errors e WHERE e.name = p.name) FROM projection_positions p ORDER BY p.name"
        ):
            rows[name] = (int(position), state, last_error, int(errors))
    result: list[ProjectionStatus] = []
    now = datetime.now(UTC)
    schema = str((conn.execute("SELECT current_schema()").fetchone() or ("",))[0])
    led = {n: d.id for d in daemons_on(conn) if d.alive and d.leader for n in d.names}
    for name, (position, state, last_error, errors) in rows.items():
        base = name.removesuffix(REBUILD_SUFFIX)
        if name != base and state == "rebuilding" and not _rebuild_alive(conn, schema, base):
            state = ABANDONED
        lag_events, lag_seconds = 0, 0.0
        if position < head:
            lag_events = int(
                (
                    conn.execute(
                        sql.SQL("SELECT count(*) FROM {} WHERE notification_id > %s").format(events),
                        (position,),
                    ).fetchone()
                    or (0,)
                )[0]
            )
            first = follower.read(position, 1)
            if first and first[0].event is not None:  # an event that cannot be decoded has no known age
                lag_seconds = max(0.0, float((now - first[0].event.timestamp).total_seconds()))
        result.append(
            ProjectionStatus(
                name, position, head, lag_events, lag_seconds, state, last_error, errors, led.get(name)
            )
        )
    return result
