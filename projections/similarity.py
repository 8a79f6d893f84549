"""``rm_embeddings``: the CLIP vectors of embedded clips, for similarity search with pgvector.

- ``Embedded`` replaces the clip's rows for that (model, strategy): one row per vector.
- A clip replaced by a split or merge (``Split``, ``Merged``, ``Retired``) keeps its rows with
  ``live = false``; undoing that split or merge (``DecisionUndone`` of split/merge) makes them live again.
- Undoing an approval or a grouping (``DecisionUndone`` of approve/group) deletes them: the clip is no
  longer approved, and a new approval embeds it again.
- Each dimension gets an HNSW cosine index on first sight, as a partial expression index
  ``((embedding::halfvec(D)) halfvec_cosine_ops) WHERE dimension = D`` (a rebuild, and a catch-up far
  behind, build them at the end). The table keeps float32 ``vector`` values; the index and the queries
  compare float16 (:data:`INDEX_TYPE`).

Embedded events carry no video id, so a private table ``rm_embeddings_clip_video`` maps clips to videos.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Any

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


def hnsw_index_name(table: str, dimension: int) -> str:
    return f"{table}_hnsw_{int(dimension)}" + ("_half" if INDEX_TYPE == "halfvec" else "")


def create_hnsw_index(
    cur: Cursor, table: str, dimension: int, *, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION
) -> None:
    d = int(dimension)
    # PostgreSQL plans no parallel build for a table under min_parallel_table_scan_size (8 MB): let
    # pgvector build with its workers whatever the size (the same CPU, about half the wall-clock time
    # on two cores), for this statement only.
    row = cur.execute(
        "SELECT current_setting('min_parallel_table_scan_size'), set_config('min_parallel_table_scan_size', '0', true)"
    ).fetchone()
    assert row is not None
    cur.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ((embedding::{form}({d})) {ops}) "
            "WITH (m = {m}, ef_construction = {ef}) WHERE dimension = {d}"
        ).format(
            name=sql.Identifier(hnsw_index_name(table, d)),
            table=sql.Identifier(table),
            form=sql.SQL(INDEX_TYPE),
            ops=sql.SQL(f"{INDEX_TYPE}_cosine_ops"),
            d=sql.Literal(d),
            m=sql.Literal(int(m)),
            ef=sql.Literal(int(ef_construction)),
        )
    )
    cur.execute("SELECT set_config('min_parallel_table_scan_size', %s, true)", (row[0],))


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
        self._indexed: set[int] = set()
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
        self.clip_video.load(cur, {e.originator_id for e in events if e.topic == Clip.Embedded.TOPIC})

    def discard(self) -> None:
        super().discard()
        self._indexed.clear()  # an index created in the batch was rolled back with it

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
        if not self.defer_indexes:
            for dimension in {op[5] for op in self.ops if op[0] == "embed"} - self._indexed:
                create_hnsw_index(cur, self.table("rm_embeddings"), dimension)
                self._indexed.add(dimension)
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
        return True

    def deferrable_rows(self, cur: Cursor) -> int:
        row = cur.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            (self.table("rm_embeddings"),),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def create_deferred_indexes(self, cur: Cursor) -> None:
        table = self.table("rm_embeddings")
        dimensions = [
            int(r[0])
            for r in cur.execute(sql.SQL("SELECT DISTINCT dimension FROM {}").format(sql.Identifier(table)))
        ]
        for dimension in dimensions:
            create_hnsw_index(cur, table, dimension)
