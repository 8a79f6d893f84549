"""What every projection shares: the decoded event record, the projection interface the runner drives,
and a small row cache that loads a batch's rows in one query, lets handlers change them in memory
(undoably, event by event) and writes the changed ones back in one pipelined statement.

A projection never keeps state between batches: every batch loads what it needs from its own tables, so
a crash, a second runner or a rebuild can never leave stale memory behind.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import Enum
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any, ClassVar, Literal, TypeVar
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql

from infra.log_follower import EventRecord as EventRecord  # the projections' input, decoded by the follower
from projections.schema import PROJECTION_TABLES, TABLE_DDL

ErrorPolicy = Literal["stop", "skip"]

#: Suffix of the tables a rebuild fills beside the live ones.
REBUILD_SUFFIX = "__rebuild"

Cursor = psycopg.Cursor[tuple[Any, ...]]
Row = dict[str, Any]


class UndecodableEvent(Exception):
    """A stored event the mapper could not turn into a domain event."""


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy: UUIDs as strings, datetimes as ISO 8601, sets sorted, tuples as lists."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(json_safe(v) for v in value)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def render_ddl(ddl: str, table: str) -> str:
    """``ddl`` with ``{t}`` replaced by ``table`` (SQL comments dropped first: they may hold braces)."""
    return re.sub(r"--[^\n]*", "", ddl).format(t=table)


def _shallow(row: Row | None) -> Row | None:
    return None if row is None else dict(row)


class RowCache:
    """Rows of one table keyed by a single uuid column, loaded per batch and written back when changed.

    Handlers call :meth:`get` to read and :meth:`edit` / :meth:`put` / :meth:`delete` to change; the
    runner brackets each event with :meth:`begin` and :meth:`commit` / :meth:`rollback`, so an event whose
    handler raises leaves no partial change behind.

    Convention (it keeps undo cheap: rows are copied shallowly): handlers never change a nested value
    (a jsonb dict, an array) in place; they assign a changed copy, e.g. ``row["media"] = {**row["media"], …}``.

    Inside, rows are keyed by the uuid's integer: a ``UUID`` hashes in Python on every dict access,
    which cost about a tenth of the read side's time.
    """

    def __init__(
        self,
        table: str,
        key: str,
        columns: Sequence[str],
    ) -> None:
        self.table = table
        self.key = key
        self.columns = list(columns)
        self._statement: str | None = None
        self._arrays: tuple[int, ...] = ()
        #: statements rendered once (psycopg renders a composed one again on every execute: a fifth of
        #: the daemon's CPU in the closed-loop review bench)
        self._select: str | None = None
        self._delete: str | None = None
        self.original: dict[int, Row | None] = {}
        self.rows: dict[int, Row | None] = {}
        self.dirty: set[int] = set()
        self._journal: dict[int, Row | None] | None = None

    def clear(self) -> None:
        self.original.clear()
        self.rows.clear()
        self.dirty.clear()
        self._journal = None

    def load(self, cur: Cursor, keys: Iterable[UUID]) -> None:
        """Load the rows of ``keys`` not loaded yet (repeated keys are fine: a list costs less than a
        set of ``UUID`` s, which hash in Python)."""
        rows = self.rows
        wanted = {k.int: k for k in keys}
        missing = [k for i, k in wanted.items() if i not in rows]
        if not missing:
            return
        if self._select is None:
            self._select = (
                sql.SQL("SELECT {cols} FROM {table} WHERE {key} = ANY(%s::uuid[])")
                .format(
                    cols=sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
                    table=sql.Identifier(self.table),
                    key=sql.Identifier(self.key),
                )
                .as_string(cur)
            )
        query = self._select
        for k in missing:
            self.original[k.int] = None
            rows[k.int] = None
        columns, key = self.columns, self.key
        for values in cur.execute(query, (uuid_array(missing),)):
            row = dict(zip(columns, values, strict=True))
            i = row[key].int
            self.original[i] = dict(row)
            rows[i] = row

    # -- reading and changing (inside an event) ----------------------------------------------------

    def get(self, key: UUID) -> Row | None:
        """The current row (read only: use :meth:`edit` to change it)."""
        return self._loaded(key.int, key)

    def edit(self, key: UUID) -> Row:
        """The row, to be changed in place; raises ``LookupError`` when there is none."""
        i = key.int
        row = self._loaded(i, key)
        if row is None:
            raise LookupError(f"{self.table}: no row {key}")
        self._remember(i)
        self.dirty.add(i)
        return row

    def _loaded(self, i: int, key: UUID) -> Row | None:
        try:
            return self.rows[i]
        except KeyError:
            raise KeyError(f"{self.table}: row {key} was not loaded for this batch") from None

    def put(self, key: UUID, row: Row) -> None:
        self._set(key.int, row)

    def delete(self, key: UUID) -> None:
        self._set(key.int, None)

    def _set(self, i: int, row: Row | None) -> None:
        self._remember(i)
        self.original.setdefault(i, None)
        self.rows[i] = row
        self.dirty.add(i)

    def _remember(self, i: int) -> None:
        if self._journal is not None and i not in self._journal:
            self._journal[i] = _shallow(self.rows.get(i))

    def begin(self) -> None:
        self._journal = {}

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        for i, row in (self._journal or {}).items():
            self.rows[i] = row
        self._journal = None

    # -- writing back ------------------------------------------------------------------------------

    def changes(self) -> list[tuple[Row | None, Row | None]]:
        """(as loaded, as now) of every changed key."""
        return [(self.original.get(i), self.rows.get(i)) for i in self.dirty]

    def flush(self, cur: Cursor) -> None:
        """Write the changed rows back: one DELETE and one set-based upsert (rows sent as one JSON
        array of arrays, see :func:`upsert_from_json`), whatever their number."""
        upserts: list[Row] = []
        deletes: list[Any] = []
        rows, original = self.rows, self.original
        for i in self.dirty:
            row = rows.get(i)
            if row is None:
                before = original.get(i)
                if before is not None:
                    deletes.append(before[self.key])
                continue
            upserts.append(row)
        if deletes:
            if self._delete is None:
                self._delete = (
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)")
                    .format(sql.Identifier(self.table), sql.Identifier(self.key))
                    .as_string(cur)
                )
            cur.execute(self._delete, (deletes,))
        if upserts:
            statement, arrays = self._upsert_statement(cur)
            cur.execute(statement, (json_rows(positional(upserts, self.columns, arrays)),))
        for i in self.dirty:
            original[i] = _shallow(rows.get(i))
        self.dirty.clear()

    def _upsert_statement(self, cur: Cursor) -> tuple[str, tuple[int, ...]]:
        """The upsert and the positions of its array columns (typed by the table, asked once)."""
        if self._statement is None:
            types = column_types(cur, self.table, self.columns)
            updates = [
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                for c in self.columns
                if c != self.key
            ]
            self._statement = upsert_from_json(
                self.table,
                self.columns,
                types,
                sql.SQL("ON CONFLICT ({key}) DO UPDATE SET {upd}").format(
                    key=sql.Identifier(self.key), upd=sql.SQL(", ").join(updates)
                ),
            ).as_string(cur)
            self._arrays = tuple(i for i, c in enumerate(self.columns) if types[c].endswith("[]"))
        return self._statement, self._arrays


#: The text of uuids written lately (``str(UUID)`` runs in Python; a batch writes the same ids again
#: and again: rows of several tables, the video of each clip).
_UUID_TEXT: dict[int, str] = {}


def uuid_text(value: UUID) -> str:
    """``str(value)``, remembered for the ids written lately."""
    i = value.int
    text = _UUID_TEXT.get(i)
    if text is None:
        if len(_UUID_TEXT) >= 65536:
            _UUID_TEXT.clear()
        text = _UUID_TEXT[i] = str(value)
    return text


def uuid_array(ids: Iterable[UUID]) -> str:
    """``ids`` as a PostgreSQL array literal, for a ``%s::uuid[]`` parameter: psycopg dumps a list
    of UUIDs element by element in Python (about 1.7 µs each), this joins their remembered text."""
    return "{" + ",".join(map(uuid_text, ids)) + "}"


def _array_element(value: Any) -> str:
    if type(value) is UUID:
        return uuid_text(value)
    if value is None:
        return "NULL"
    text = str(value.value if isinstance(value, Enum) else value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Iterable[Any]) -> str:
    """``values`` (uuids, strings, numbers, None) as a PostgreSQL array literal."""
    return "{" + ",".join(map(_array_element, values)) + "}"


def positional(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], arrays: Sequence[int] = ()
) -> list[Any]:
    """``rows`` as lists of their ``columns``' values (a missing key is None), for
    :func:`upsert_from_json`; the values at ``arrays`` (array columns) as array literals."""
    take = itemgetter(*columns)
    single = len(columns) == 1
    table: list[Any] = []
    for row in rows:
        try:
            values = take(row)
        except KeyError:
            values = tuple(row.get(c) for c in columns)
        else:
            if single:
                values = (values,)
        if arrays:
            values = list(values)
            for i in arrays:
                if values[i] is not None:
                    values[i] = array_literal(values[i])
        table.append(values)
    return table


def _json_default(value: Any) -> Any:
    if isinstance(value, UUID):
        return uuid_text(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot write {type(value).__name__} to a read model: {value!r}")


def json_rows(rows: Sequence[Mapping[str, Any] | Sequence[Any]]) -> str:
    """``rows`` (dicts, or the lists of :func:`positional`) as one JSON array (UUIDs and decimals as
    strings, datetimes in ISO 8601, sets as sorted lists; jsonb columns hold their value as is). A
    datetime at the top of a row is a timestamptz column's value (msgspec may write it, with UTC as
    ``Z``: the same instant)."""
    fast = _fast_json(rows) if all(_plain_row(row) for row in rows) else None
    return json_text(rows) if fast is None else fast.decode()


def json_document(value: Any) -> bytes | str:
    """:func:`json_text`'s JSON for a jsonb value, by msgspec where that gives the same value."""
    fast = _fast_json(value) if _plain(value) else None
    return json_text(value) if fast is None else fast


#: msgspec's encoder: about a tenth of :func:`json_text`'s time for a row. It writes UUIDs, decimals and
#: enums as json_text does, but a NaN as null, a set in its own order and a UTC datetime with ``Z``:
#: :func:`_plain` tells where it may be used.
_fast_encode = msgspec.json.Encoder(enc_hook=_json_default).encode


def _fast_json(value: Any) -> bytes | None:
    """msgspec's JSON, or None for what it does not write (a str subclass, …): json_text writes it."""
    try:
        return _fast_encode(value)
    except Exception:
        return None


#: Types whose values msgspec writes as :func:`json_text` does (enums of str or int are added on first
#: sight); keys of these types too. Floats are checked one by one (NaN); datetimes only at a row's top.
_LEAVES: set[type] = {str, int, bool, type(None), UUID, Decimal}
_ROW_LEAVES: set[type] = {*_LEAVES, datetime}


def _leaf(kind: type) -> bool:
    """Whether ``kind`` is a leaf type msgspec writes as json_text does (remembered when it is)."""
    if issubclass(kind, Enum) and issubclass(kind, str | int) and not issubclass(kind, bool):
        _LEAVES.add(kind)
        _ROW_LEAVES.add(kind)
        return True
    return False


def _plain(value: Any) -> bool:
    """Whether msgspec writes ``value`` as :func:`json_text` does, as PostgreSQL reads it: no
    non-finite float (json_text writes ``NaN``, which PostgreSQL refuses, msgspec null), no set
    (json_text sorts them), no datetime (``Z`` against ``+00:00``: other text in jsonb), keys and
    leaves of the types in :data:`_LEAVES`."""
    leaves = _LEAVES
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) not in leaves and not _leaf(type(key)):
                return False
            if type(item) not in leaves and not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) in leaves or _plain(item) for item in value)
    if kind is float:
        return bool(value - value == 0.0)
    return kind in leaves or _leaf(kind)


def _plain_row(row: Mapping[str, Any] | Sequence[Any]) -> bool:
    """:func:`_plain`, but datetimes are allowed at the top: timestamptz values."""
    leaves = _ROW_LEAVES
    values: Iterable[Any] = row
    if isinstance(row, Mapping):
        if any(type(key) is not str for key in row):
            return False
        values = row.values()
    return all(type(item) in leaves or _plain(item) for item in values)


#: The C encoder behind ``json.dumps``, made once (``json.dumps`` with options builds an encoder per
#: call, half the time of a small document). No circular check: read-model values are trees.
_encode = (
    c_make_encoder(None, _json_default, encode_basestring_ascii, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)


def json_text(value: Any) -> str:
    """JSON for a read model: UUIDs as strings, datetimes in ISO 8601, sets as sorted lists. A NaN is
    written as ``NaN``, which PostgreSQL refuses: a database error the runner pins on its event."""
    if _encode is None:  # a Python without the C accelerator
        return json.dumps(value, default=_json_default, separators=(",", ":"))
    return "".join(_encode(value, 0))


def column_types(cur: Cursor, table: str, columns: Sequence[str]) -> dict[str, str]:
    """``columns`` of ``table`` (as the search path finds it) → their SQL types (``uuid[]``, …)."""
    types = {
        str(name): str(kind)
        for name, kind in cur.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (sql.Identifier(table).as_string(cur),),
        ).fetchall()
    }
    missing = [c for c in columns if c not in types]
    if missing:
        raise LookupError(f"{table} has no column {', '.join(missing)}")
    return {c: types[c] for c in columns}


def upsert_from_json(
    table: str, columns: Sequence[str], types: Mapping[str, str], conflict: sql.Composable
) -> sql.Composed:
    """``INSERT INTO table (columns) SELECT … FROM jsonb_array_elements(%s::jsonb) r conflict``: many
    rows in one statement, sent as one JSON array of arrays (:func:`positional`), each value taken by
    its position and read by its column's type (``types``); ``conflict`` is the ON CONFLICT clause.
    Positions, not keys: PostgreSQL reads an element of a jsonb array directly, where
    ``json_populate_recordset`` made a hash table per row and parsed every jsonb value twice
    (about 1.7 times the server's CPU for ``rm_clips``). A JSON null is SQL NULL (jsonb columns too);
    array columns come as array literals."""
    values = [
        sql.SQL("nullif(r->{i}, 'null'::jsonb)" if types[c] == "jsonb" else "(r->>{i})::{t}").format(
            i=sql.Literal(i), t=sql.SQL(types[c])
        )
        for i, c in enumerate(columns)
    ]
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r {conflict}"
    ).format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        values=sql.SQL(", ").join(values),
        conflict=conflict,
    )


T = TypeVar("T")


class BatchList(list[T]):
    """What a projection collects over a batch for its ``flush`` (statements to run, counts to add),
    kept per event like a :class:`RowCache`: the runner brackets each event with :meth:`begin` and
    :meth:`commit` / :meth:`rollback`, so an event whose handler raises leaves nothing here."""

    def __init__(self) -> None:
        super().__init__()
        self._mark = 0

    def begin(self) -> None:
        self._mark = len(self)

    def commit(self) -> None:
        self._mark = len(self)

    def rollback(self) -> None:
        del self[self._mark :]


class Projection(ABC):
    """A read model built from the event log.

    The runner calls, per batch and inside one transaction: :meth:`load` (fetch the rows the batch
    needs), then for each event :meth:`begin_event`, :meth:`apply`, :meth:`commit_event` (or
    :meth:`rollback_event` when ``apply`` raised), then :meth:`flush` (write back).
    ``apply`` must only change memory; all writing happens in ``flush``.
    """

    #: The name in ``projection_positions`` and :data:`projections.schema.PROJECTION_TABLES`.
    name: ClassVar[str]
    #: What to do when a handler raises: ``stop`` (state stopped, position before the event) or ``skip``.
    error_policy: ClassVar[ErrorPolicy] = "stop"
    #: Private tables of this projection beside its contract tables (name → DDL with ``{t}``); they are
    #: rebuilt with it.
    private_tables: ClassVar[dict[str, str]] = {}
    #: Whether :meth:`flush` writes by COPY (which cannot run in a pipeline: the runner flushes these
    #: first, and pipelines the statements of the others).
    copies: ClassVar[bool] = False
    #: Whether :meth:`apply` handles every topic (otherwise only those of :meth:`handlers`).
    follows_every_topic: ClassVar[bool] = False
    #: Whether it has indexes slow to maintain row by row (:meth:`create_deferred_indexes`), built at
    #: the end of a rebuild or of a catch-up far behind.
    defers_indexes: ClassVar[bool] = False

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix
        #: During a rebuild, indexes that are slow to maintain row by row are created at the end.
        self.defer_indexes = bool(suffix)
        #: What the runner brackets per event and clears per batch.
        self.caches: list[RowCache | BatchList[Any]] = []
        self._handlers: dict[str, Callable[[EventRecord], None]] = {}

    # -- tables ------------------------------------------------------------------------------------

    @classmethod
    def contract_tables(cls) -> tuple[str, ...]:
        return PROJECTION_TABLES.get(cls.name, ())

    @classmethod
    def base_tables(cls) -> tuple[str, ...]:
        """Every table this projection owns, without a suffix."""
        return (*cls.contract_tables(), *cls.private_tables)

    def table(self, base: str) -> str:
        return base + self.suffix

    def ddl(self) -> list[str]:
        statements = [render_ddl(TABLE_DDL[t], self.table(t)) for t in self.contract_tables()]
        statements += [render_ddl(ddl, self.table(t)) for t, ddl in self.private_tables.items()]
        return statements

    def create_deferred_indexes(self, cur: Cursor) -> None:  # noqa: B027
        """Build the indexes skipped while rebuilding (called just before the swap)."""

    def drop_deferrable_indexes(self, cur: Cursor) -> bool:
        """Drop the indexes that are slow to maintain row by row (before a bulk catch-up, which builds
        them again at the end); True when this projection has such indexes."""
        return False

    def deferrable_rows(self, cur: Cursor) -> int:
        """About how many rows those indexes cover now (what building them again costs)."""
        return 0

    def indexes_due(self) -> bool:
        """Whether a committed batch made an index due that :meth:`build_due_indexes` builds."""
        return False

    def build_due_indexes(self, conn: psycopg.Connection[Any]) -> None:  # noqa: B027
        """Build the indexes that became due, on ``conn`` (autocommit, its own, in a thread of the
        runner's while batches go on)."""

    # -- the batch protocol --------------------------------------------------------------------------

    def reset(self) -> None:
        for cache in self.caches:
            cache.clear()

    def discard(self) -> None:
        """Forget a batch whose writes were rolled back (memory of what the database holds included)."""
        self.reset()

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:  # noqa: B027
        """Load what the batch needs from this projection's tables."""

    def begin_event(self) -> None:
        for cache in self.caches:
            cache.begin()

    def commit_event(self) -> None:
        for cache in self.caches:
            cache.commit()

    def rollback_event(self) -> None:
        for cache in self.caches:
            cache.rollback()

    def apply(self, record: EventRecord) -> None:
        """Apply one event in memory; ignores topics this projection does not follow."""
        if record.event is None:
            raise UndecodableEvent(record.decode_error or f"cannot decode event with topic {record.topic}")
        handler = self.handlers().get(record.topic)
        if handler is not None:
            handler(record)

    def handlers(self) -> Mapping[str, Callable[[EventRecord], None]]:
        """Topic → handler: what a projection fills ``self._handlers`` with."""
        return self._handlers

    @abstractmethod
    def flush(self, cur: Cursor) -> None:
        """Write the batch's changes."""
