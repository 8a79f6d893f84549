"""How far behind each projection is, and whether it stopped on an error."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql

from infra.database import DatabaseAddress
from projections.runner import EVENTS_TABLE, PROJECTIONS, make_mapper, schema_connection


@dataclass(frozen=True)
class ProjectionStatus:
    """One projection: ``position`` (last applied notification id), ``head`` (last id of the log),
    ``lag_events`` (events still to apply), ``lag_seconds`` (age of the oldest event still to apply, 0
    when caught up), ``state`` (running, stopped, rebuilding), ``last_error``, ``error_count`` (rows in
    ``projection_errors``, skipped ones included)."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    state: str
    last_error: str | None
    error_count: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def projection_status(address: DatabaseAddress, schema: str) -> list[ProjectionStatus]:
    """Every known projection (and rebuild in progress), in registry order."""
    with schema_connection(address, schema) as conn:
        conn.autocommit = True
        return status_on(conn)


def status_on(conn: psycopg.Connection[Any]) -> list[ProjectionStatus]:
    """The status, on a connection whose ``search_path`` starts with the schema."""
    has_events = bool((conn.execute("SELECT to_regclass(%s)", (EVENTS_TABLE,)).fetchone() or (None,))[0])
    has_positions = bool(
        (conn.execute("SELECT to_regclass('projection_positions')").fetchone() or (None,))[0]
    )
    events = sql.Identifier(EVENTS_TABLE)
    head = 0
    if has_events:
        head = int(
            (
                conn.execute(
                    sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(events)
                ).fetchone()
                or (0,)
            )[0]
        )
    rows: dict[str, tuple[int, str, str | None, int]] = {
        name: (0, "not started", None, 0) for name in PROJECTIONS
    }
    if has_positions:
        for name, position, state, last_error, errors in conn.execute(
            "SELECT p.name, p.position, p.state, p.last_error, "
            "(SELECT count(*) FROM projection_errors e WHERE e.name = p.name) FROM projection_positions p ORDER BY p.name"
        ):
            rows[name] = (int(position), state, last_error, int(errors))
    mapper = make_mapper()
    result: list[ProjectionStatus] = []
    now = datetime.now(UTC)
    for name, (position, state, last_error, errors) in rows.items():
        lag_events, lag_seconds = 0, 0.0
        if has_events and position < head:
            lag_events = int(
                (
                    conn.execute(
                        sql.SQL("SELECT count(*) FROM {} WHERE notification_id > %s").format(events),
                        (position,),
                    ).fetchone()
                    or (0,)
                )[0]
            )
            first = conn.execute(
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
                    "WHERE notification_id > %s ORDER BY notification_id LIMIT 1"
                ).format(events),
                (position,),
            ).fetchone()
            if first is not None:
                lag_seconds = _age(mapper, first, now)
        result.append(
            ProjectionStatus(name, position, head, lag_events, lag_seconds, state, last_error, errors)
        )
    return result


def _age(mapper: Any, row: tuple[Any, ...], now: datetime) -> float:
    try:
        event = mapper.to_domain_event(
            Notification(
                id=row[0], originator_id=row[1], originator_version=row[2], topic=row[3], state=bytes(row[4])
            )
        )
        return max(0.0, float((now - event.timestamp).total_seconds()))
    except Exception:  # an event that cannot be decoded has no known age
        return 0.0
