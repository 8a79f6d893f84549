"""``rm_history``: every event of every video and clip, for the audit pages (payload as JSON, UUIDs as
strings). The vectors of ``Embedded`` are summarised (``{"count", "dimension", "dtype"}``): they are in
``rm_embeddings`` and in the event log, and would make the audit table hundreds of times bigger."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from domain.clip import Clip
from domain.vectors import vector_count
from projections.base import Cursor, EventRecord, Projection, json_document

COLUMNS = ("aggregate_id", "version", "kind", "event", "actor", "at", "payload", "position")

#: Envelope fields that have their own columns.
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "actor", "originator_topic"})


def payload_of(record: EventRecord) -> dict[str, Any]:
    """The event's own fields (nested UUIDs, datetimes and sets become JSON when the row is written)."""
    payload: dict[str, Any] = {k: v for k, v in vars(record.event).items() if k not in ENVELOPE}
    if record.topic == Clip.Embedded.TOPIC and isinstance(payload.get("vectors"), str):
        dimension = int(payload["dimension"])
        payload["vectors"] = {
            "count": vector_count(payload["vectors"], payload["dtype"], dimension),
            "dimension": dimension,
            "dtype": payload["dtype"],
        }
    return payload


class HistoryProjection(Projection):
    name = "history"
    copies = True
    follows_every_topic = True

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.pending: list[tuple[Any, ...]] = []
        self._mark = 0

    def handlers(self) -> Mapping[str, Callable[[EventRecord], None]]:
        return {}

    def reset(self) -> None:
        self.pending.clear()

    def begin_event(self) -> None:
        self._mark = len(self.pending)

    def rollback_event(self) -> None:
        del self.pending[self._mark :]

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:
        pass

    def apply(self, record: EventRecord) -> None:
        super().apply(record)  # raises for an event that cannot be decoded
        e: Any = record.event
        self.pending.append(
            (
                record.originator_id,
                record.originator_version,
                record.kind,
                record.name,
                getattr(e, "actor", None) or "unknown",
                e.timestamp,
                Jsonb(payload_of(record), dumps=json_document),
                record.position,
            )
        )

    def flush(self, cur: Cursor) -> None:
        """One binary COPY per batch. No ON CONFLICT: the runner applies each event once (the position
        commits with the rows), so a duplicate is a bug to see, not to hide."""
        if not self.pending:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(self.table("rm_history")), sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        )
        with cur.copy(statement) as copy:
            copy.set_types(["uuid", "int4", "text", "text", "text", "timestamptz", "jsonb", "int8"])
            for row in self.pending:
                copy.write_row(row)
        self.pending.clear()
