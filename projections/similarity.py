"""``rm_embeddings``: the CLIP vectors of embedded clips, for similarity search with pgvector.

- ``Embedded`` replaces the clip's rows for that (model, strategy): one row per vector.
- A clip replaced by a split or merge (``Split``, ``Merged``, ``Retired``) keeps its rows with
  ``live = false``; undoing that split or merge (``DecisionUndone`` of split/merge) makes them live again.
- Undoing an approval or a grouping (``DecisionUndone`` of approve/group) deletes them: the clip is no
  longer approved, and a new approval embeds it again.
- Each dimension gets an HNSW cosine index on first sight, as a partial expression index
  ``((embedding::vector(D)) vector_cosine_ops) WHERE dimension = D`` (a rebuild builds them at the end).

Embedded events carry no video id, so a private table ``rm_embeddings_clip_video`` maps clips to videos.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg import sql

from domain.clip import Clip
from projections.base import Cursor, EventRecord, Projection, RowCache

CLIP_VIDEO_DDL = """
    CREATE TABLE IF NOT EXISTS {t} (
        clip_id uuid PRIMARY KEY,
        video_id uuid NOT NULL
    )"""

Op = tuple[Any, ...]


def vector_text(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def hnsw_index_name(table: str, dimension: int) -> str:
    return f"{table}_hnsw_{int(dimension)}"


def create_hnsw_index(cur: Cursor, table: str, dimension: int) -> None:
    d = int(dimension)
    cur.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ((embedding::vector({d})) vector_cosine_ops) "
            "WHERE dimension = {d}"
        ).format(
            name=sql.Identifier(hnsw_index_name(table, d)), table=sql.Identifier(table), d=sql.Literal(d)
        )
    )


class SimilarityProjection(Projection):
    name = "similarity"
    private_tables = {"rm_embeddings_clip_video": CLIP_VIDEO_DDL}

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.clip_video = RowCache(self.table("rm_embeddings_clip_video"), "clip_id", ("clip_id", "video_id"))
        self.caches = [self.clip_video]
        self.ops: list[Op] = []
        self._mark = 0
        self._indexed: set[int] = set()
        self._handlers: dict[str, Callable[[EventRecord], None]] = {
            Clip.Created.TOPIC: self._created,
            Clip.Embedded.TOPIC: self._embedded,
            Clip.Split.TOPIC: self._retired,
            Clip.Merged.TOPIC: self._retired,
            Clip.Retired.TOPIC: self._retired,
            Clip.DecisionUndone.TOPIC: self._undone,
        }

    def handlers(self) -> Mapping[str, Callable[[EventRecord], None]]:
        return self._handlers

    def reset(self) -> None:
        super().reset()
        self.ops.clear()

    def begin_event(self) -> None:
        super().begin_event()
        self._mark = len(self.ops)

    def rollback_event(self) -> None:
        super().rollback_event()
        del self.ops[self._mark :]

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:
        self.clip_video.load(cur, {e.originator_id for e in events if e.topic == Clip.Embedded.TOPIC})

    # -- handlers ------------------------------------------------------------------------------------

    def _created(self, record: EventRecord) -> None:
        e: Any = record.event
        self.clip_video.put(record.originator_id, {"clip_id": record.originator_id, "video_id": e.video_id})

    def _embedded(self, record: EventRecord) -> None:
        e: Any = record.event
        mapping = self.clip_video.get(record.originator_id)
        if mapping is None:
            raise LookupError(f"clip {record.originator_id} was embedded but never created")
        vectors = e.vector_list()
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
        if e.undone in ("approve", "group"):
            self.ops.append(("drop", record.originator_id))
        elif e.undone in ("split", "merge"):
            self.ops.append(("live", record.originator_id, True, e.timestamp))

    # -- writing -------------------------------------------------------------------------------------

    def flush(self, cur: Cursor) -> None:
        self.clip_video.flush(cur)
        if not self.ops:
            return
        table = sql.Identifier(self.table("rm_embeddings"))
        insert = sql.SQL(
            "INSERT INTO {} (clip_id, model, strategy, vector_index, video_id, live, dimension, embedding, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, true, %s, %s::vector, %s)"
        ).format(table)
        delete_model = sql.SQL("DELETE FROM {} WHERE clip_id = %s AND model = %s AND strategy = %s").format(
            table
        )
        delete_clip = sql.SQL("DELETE FROM {} WHERE clip_id = %s").format(table)
        set_live = sql.SQL("UPDATE {} SET live = %s, updated_at = %s WHERE clip_id = %s").format(table)
        if not self.defer_indexes:
            for dimension in {op[5] for op in self.ops if op[0] == "embed"} - self._indexed:
                create_hnsw_index(cur, self.table("rm_embeddings"), dimension)
                self._indexed.add(dimension)
        # Consecutive operations of one kind go in one pipelined executemany (order between kinds kept).
        group: list[Op] = []
        for op in [*self.ops, ("end",)]:
            if group and op[0] != group[0][0]:
                kind = group[0][0]
                if kind == "embed":
                    cur.executemany(delete_model, [(o[1], o[3], o[4]) for o in group])
                    rows = [
                        (o[1], o[3], o[4], i, o[2], o[5], vector_text(v), o[7])
                        for o in group
                        for i, v in enumerate(o[6])
                    ]
                    cur.executemany(insert, rows)
                elif kind == "drop":
                    cur.executemany(delete_clip, [(o[1],) for o in group])
                else:
                    cur.executemany(set_live, [(o[2], o[3], o[1]) for o in group])
                group = []
            group.append(op)
        self.ops.clear()

    def create_deferred_indexes(self, cur: Cursor) -> None:
        table = self.table("rm_embeddings")
        dimensions = [
            int(r[0])
            for r in cur.execute(sql.SQL("SELECT DISTINCT dimension FROM {}").format(sql.Identifier(table)))
        ]
        for dimension in dimensions:
            create_hnsw_index(cur, table, dimension)
