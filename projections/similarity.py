"""``rm_embeddings``: the CLIP vectors of embedded clips, for similarity search with pgvector.

- ``Embedded`` replaces the clip's rows for that (model, strategy): one row per vector.
- A clip replaced by a split or merge (``Split``, ``Merged``, ``Retired``) keeps its rows with
  ``live = false``; undoing that split or merge (``DecisionUndone`` of split/merge) makes them live again.
- Undoing an approval or a grouping (``DecisionUndone`` of approve/group) deletes them: the clip is no
  longer approved, and a new approval embeds it again.
- A dimension gets an HNSW cosine index once it has :data:`INDEX_MIN_ROWS` rows, as a partial
  expression index ``((embedding::halfvec(D)) halfvec_cosine_ops) WHERE dimension = D``: below that
  searches rank every vector exactly (:mod:`projections.queries`). Following the log, the batch that
  reaches the threshold has the runner build it in the background (``CREATE INDEX CONCURRENTLY``, so
  batches go on); a rebuild, and a catch-up far behind, build it at the end. The table keeps float32
  ``vector`` values; the index and the queries compare float16 (:data:`INDEX_TYPE`).

Embedded events carry no video id, so a private table ``rm_embeddings_clip_video`` maps clips to videos.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.pq import Format

from domain.clip import UNAPPROVING, Clip
from domain.stages import Decision
from domain.vectors import decode_raw, packed_bytes
from projections.base import BatchList, Cursor, EventRecord, Projection, RowCache, uuid_array

CLIP_VIDEO_DDL = """
    CREATE TABLE IF NOT EXISTS {t} (
        clip_id uuid PRIMARY KEY,
        video_id uuid NOT NULL
    )"""

Op = tuple[Any, ...]


class PgVector(bytes):
    """One vector in pgvector's binary form: dimension and 0 as big-endian int16, then big-endian float4s."""


class PgVectorDumper(Dumper):
    """Sends a :class:`PgVector` as it is (its ``oid``, pgvector's ``vector`` type, is set per database)."""

    format = Format.BINARY

    def dump(self, obj: Any) -> Buffer:
        return bytes(obj)


def pgvector_binary(data: str, dtype: str, dimension: int) -> list[PgVector]:
    """The vectors of an ``Embedded`` event (base64 little-endian float32/float16) in pgvector's binary
    form, converted with no per-value Python work for float32."""
    raw = packed_bytes(data, dtype, dimension)
    values = array("f")
    if dtype == "float32":
        values.frombytes(raw)
    else:
        values.extend(decode_raw(data, dtype, dimension))
    if sys.byteorder == "little":
        values.byteswap()
    body = values.tobytes()
    header = struct.pack(">HH", dimension, 0)
    step = 4 * dimension
    return [PgVector(header + body[i : i + step]) for i in range(0, len(body), step)]


#: The form vectors are indexed and compared in: ``halfvec`` (float16) or ``vector`` (float32). See
#: docs/architecture.md (similarity at scale) for the measurements behind the choice.
INDEX_TYPE = "halfvec"
#: HNSW build parameters. pgvector's defaults (m=16, ef_construction=64) reach recall@10 0.92 at 1M
#: clustered vectors (ef_search 200); these reach 0.98, for twice the build time.
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 128


#: Rows of one dimension from which it has an HNSW index. Below it a search ranks every vector of the
#: dimension exactly (recall 1.0) in a few milliseconds, and no index build costs a catch-up or a live
#: batch (docs/architecture.md, "Similarity at scale"; docs/measurements.md, "Similarity"). Read when
#: used (tests lower it).
INDEX_MIN_ROWS = 5_000


def hnsw_index_name(table: str, dimension: int) -> str:
    prefix, suffix = hnsw_index_name_parts(table)
    return f"{prefix}{int(dimension)}{suffix}"


def hnsw_index_name_parts(table: str) -> tuple[str, str]:
    """What the name of ``table``'s index of a dimension has before and after the dimension."""
    return f"{table}_hnsw_", "_half" if INDEX_TYPE == "halfvec" else ""


def hnsw_index_statement(
    table: str,
    dimension: int,
    *,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    concurrently: bool = False,
) -> sql.Composed:
    d = int(dimension)
    return sql.SQL(
        "CREATE INDEX {how} IF NOT EXISTS {name} ON {table} USING hnsw ((embedding::{form}({d})) {ops}) "
        "WITH (m = {m}, ef_construction = {ef}) WHERE dimension = {d}"
    ).format(
        how=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(hnsw_index_name(table, d)),
        table=sql.Identifier(table),
        form=sql.SQL(INDEX_TYPE),
        ops=sql.SQL(f"{INDEX_TYPE}_cosine_ops"),
        d=sql.Literal(d),
        m=sql.Literal(int(m)),
        ef=sql.Literal(int(ef_construction)),
    )


def create_hnsw_index(
    cur: Cursor, table: str, dimension: int, *, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION
) -> None:
    """Build the dimension's index in the cursor's transaction (writes to the table wait for it)."""
    # PostgreSQL plans no parallel build for a table under min_parallel_table_scan_size (8 MB): let
    # pgvector build with its workers whatever the size (the same CPU, about half the wall-clock time
    # on two cores), for this statement only.
    row = cur.execute(
        "SELECT current_setting('min_parallel_table_scan_size'), set_config('min_parallel_table_scan_size', '0', true)"
    ).fetchone()
    assert row is not None
    cur.execute(hnsw_index_statement(table, dimension, m=m, ef_construction=ef_construction))
    cur.execute("SELECT set_config('min_parallel_table_scan_size', %s, true)", (row[0],))


def build_hnsw_index_concurrently(conn: psycopg.Connection[Any], table: str, dimension: int) -> bool:
    """Build the dimension's index with ``CREATE INDEX CONCURRENTLY`` on ``conn`` (autocommit, used for
    nothing else meanwhile): the table's writers go on while it builds, and searches rank exactly until
    it is valid. An invalid index of that name left by a build that was interrupted is dropped first;
    while another session builds it (an advisory lock per index) nothing is done. Returns whether the
    index is valid now."""
    name = hnsw_index_name(table, dimension)
    locked = conn.execute(
        "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || '.' || %s, 0))", (name,)
    ).fetchone()
    if not (locked and locked[0]):
        return False
    try:
        valid = _index_valid(conn, name)
        if valid is False:  # left by an interrupted build (CONCURRENTLY keeps it, invalid, on failure)
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
        if not valid:
            conn.execute("SET min_parallel_table_scan_size = 0")  # see create_hnsw_index
            conn.execute(hnsw_index_statement(table, dimension, concurrently=True))
            conn.execute("RESET min_parallel_table_scan_size")
        return bool(_index_valid(conn, name))
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(current_schema() || '.' || %s, 0))", (name,))


def _index_valid(conn: psycopg.Connection[Any] | Cursor, name: str) -> bool | None:
    """Whether index ``name`` (in the search path) is valid; None when there is none."""
    row = conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(quote_ident(%s))", (name,)
    ).fetchone()
    return None if row is None else bool(row[0])


class SimilarityProjection(Projection):
    name = "similarity"
    private_tables = {"rm_embeddings_clip_video": CLIP_VIDEO_DDL}
    copies = True
    defers_indexes = True

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.clip_video = RowCache(self.table("rm_embeddings_clip_video"), "clip_id", ("clip_id", "video_id"))
        self.ops: BatchList[Op] = BatchList()
        self.caches = [self.clip_video, self.ops]
        #: Dimensions whose index is there and valid, as far as this projection knows.
        self._indexed: set[int] = set()
        #: Rows per dimension without an index (at least; rows deleted are not counted off).
        self._rows: dict[int, int] = {}
        #: Dimensions that reached :data:`INDEX_MIN_ROWS` without an index: for :meth:`build_due_indexes`.
        self._due: set[int] = set()
        self._vector: tuple[Any, int, type[Dumper]] | None = None
        self._handlers = {
            Clip.Created.TOPIC: self._created,
            Clip.Embedded.TOPIC: self._embedded,
            Clip.Split.TOPIC: self._retired,
            Clip.Merged.TOPIC: self._retired,
            Clip.Retired.TOPIC: self._retired,
            Clip.DecisionUndone.TOPIC: self._undone,
        }

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:
        self.clip_video.load(cur, [e.originator_id for e in events if e.topic == Clip.Embedded.TOPIC])

    def discard(self) -> None:
        super().discard()
        self._rows.clear()  # they counted the batch's rows, rolled back: counted again when needed

    # -- handlers ------------------------------------------------------------------------------------

    def _created(self, record: EventRecord) -> None:
        e: Any = record.event
        self.clip_video.put(record.originator_id, {"clip_id": record.originator_id, "video_id": e.video_id})

    def _embedded(self, record: EventRecord) -> None:
        e: Any = record.event
        mapping = self.clip_video.get(record.originator_id)
        if mapping is None:
            raise LookupError(f"clip {record.originator_id} was embedded but never created")
        vectors = pgvector_binary(e.vectors, e.dtype, int(e.dimension))
        self.ops.append(
            (
                "embed",
                record.originator_id,
                mapping["video_id"],
                e.model,
                e.strategy,
                int(e.dimension),
                vectors,
                e.timestamp,
            )
        )

    def _retired(self, record: EventRecord) -> None:
        self.ops.append(("live", record.originator_id, False, record.event.timestamp))  # type: ignore[union-attr]

    def _undone(self, record: EventRecord) -> None:
        e: Any = record.event
        if e.undone in UNAPPROVING:
            self.ops.append(("drop", record.originator_id))
        elif e.undone in (Decision.SPLIT, Decision.MERGE):
            self.ops.append(("live", record.originator_id, True, e.timestamp))

    # -- writing -------------------------------------------------------------------------------------

    def flush(self, cur: Cursor) -> None:
        self.clip_video.flush(cur)
        if not self.ops:
            return
        added: Counter[int] = Counter()
        for op in self.ops:
            if op[0] == "embed":
                added[op[5]] += len(op[6])
        # Consecutive operations of one kind are written together, set-based (order between kinds kept).
        group: list[Op] = []
        for op in [*self.ops, ("end",)]:
            if group and op[0] != group[0][0]:
                {"embed": self._write_embeddings, "drop": self._drop, "live": self._set_live}[group[0][0]](
                    cur, group
                )
                group = []
            group.append(op)
        self.ops.clear()
        if not self.defer_indexes:
            for dimension in added.keys() - self._indexed:
                self._count(cur, dimension, added[dimension])

    def _count(self, cur: Cursor, dimension: int, added: int) -> None:
        """Note ``added`` rows of ``dimension`` (written, not committed); a dimension without an index
        that has reached :data:`INDEX_MIN_ROWS` becomes due. Its index and rows are read from the
        database the first time (the rows up to the threshold only)."""
        if dimension not in self._rows:
            table = self.table("rm_embeddings")
            valid = _index_valid(cur, hnsw_index_name(table, dimension))
            if valid:
                self._indexed.add(dimension)
                return
            row = cur.execute(
                sql.SQL("SELECT count(*) FROM (SELECT FROM {} WHERE dimension = %s LIMIT %s) AS r").format(
                    sql.Identifier(table)
                ),
                (dimension, INDEX_MIN_ROWS),
            ).fetchone()
            self._rows[dimension] = int(row[0]) if row else 0
        else:
            self._rows[dimension] += added
        if self._rows[dimension] >= INDEX_MIN_ROWS:
            self._due.add(dimension)

    def indexes_due(self) -> bool:
        return bool(self._due)

    def build_due_indexes(self, conn: psycopg.Connection[Any]) -> None:
        table = self.table("rm_embeddings")
        for dimension in sorted(self._due):
            if build_hnsw_index_concurrently(conn, table, dimension):
                self._indexed.add(dimension)
            self._due.discard(dimension)

    def _write_embeddings(self, cur: Cursor, group: list[Op]) -> None:
        """Delete the clips' rows of that (model, strategy), then COPY the new ones in binary (the
        vectors go as pgvector's binary form, never through text)."""
        latest = {(o[1], o[3], o[4]): o for o in group}  # a clip embedded twice in one batch: last wins
        table = sql.Identifier(self.table("rm_embeddings"))
        keys = list(latest)
        cur.execute(
            sql.SQL(
                "DELETE FROM {} t USING unnest(%s::uuid[], %s::text[], %s::text[]) AS d(clip_id, model, strategy) "
                "WHERE t.clip_id = d.clip_id AND t.model = d.model AND t.strategy = d.strategy"
            ).format(table),
            (uuid_array(k[0] for k in keys), [k[1] for k in keys], [k[2] for k in keys]),
        )
        oid = self._vector_oid(cur)
        columns = sql.SQL(
            "COPY {} (clip_id, model, strategy, vector_index, video_id, live, dimension, embedding, updated_at) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(table)
        with cur.copy(columns) as copy:
            copy.set_types(["uuid", "text", "text", "int4", "uuid", "bool", "int4", oid, "timestamptz"])
            for o in latest.values():
                for i, vector in enumerate(o[6]):
                    copy.write_row((o[1], o[3], o[4], i, o[2], True, o[5], vector, o[7]))

    def _vector_oid(self, cur: Cursor) -> int:
        """pgvector's ``vector`` type in this database (asked once per connection), its dumper set on
        ``cur``."""
        if self._vector is None or self._vector[0] is not cur.connection:
            row = cur.execute("SELECT 'vector'::regtype::oid").fetchone()
            assert row is not None
            oid = int(row[0])
            self._vector = (cur.connection, oid, type("", (PgVectorDumper,), {"oid": oid}))
        cur.adapters.register_dumper(PgVector, self._vector[2])
        return self._vector[1]

    def _drop(self, cur: Cursor, group: list[Op]) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE clip_id = ANY(%s)").format(
                sql.Identifier(self.table("rm_embeddings"))
            ),
            ([o[1] for o in group],),
        )

    def _set_live(self, cur: Cursor, group: list[Op]) -> None:
        latest = {o[1]: o for o in group}  # split then its undo in one batch: the last one counts
        cur.execute(
            sql.SQL(
                "UPDATE {} t SET live = d.live, updated_at = d.at "
                "FROM unnest(%s::uuid[], %s::bool[], %s::timestamptz[]) AS d(clip_id, live, at) "
                "WHERE t.clip_id = d.clip_id"
            ).format(sql.Identifier(self.table("rm_embeddings"))),
            (
                [o[1] for o in latest.values()],
                [o[2] for o in latest.values()],
                [o[3] for o in latest.values()],
            ),
        )

    def drop_deferrable_indexes(self, cur: Cursor) -> bool:
        table = self.table("rm_embeddings")
        names = [
            r[0]
            for r in cur.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
                "AND indexname LIKE %s",
                (table, f"{table}_hnsw_%"),
            )
        ]
        for name in names:
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
        self._indexed.clear()
        self._rows.clear()
        return True

    def deferrable_rows(self, cur: Cursor) -> int:
        row = cur.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            (self.table("rm_embeddings"),),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def create_deferred_indexes(self, cur: Cursor) -> None:
        """The index of each dimension with at least :data:`INDEX_MIN_ROWS` rows."""
        table = self.table("rm_embeddings")
        dimensions = [
            int(r[0])
            for r in cur.execute(
                sql.SQL("SELECT dimension FROM {} GROUP BY dimension HAVING count(*) >= %s").format(
                    sql.Identifier(table)
                ),
                (INDEX_MIN_ROWS,),
            )
        ]
        for dimension in dimensions:
            create_hnsw_index(cur, table, dimension)
            self._indexed.add(dimension)
