"""Typed queries over the read models for the web app and the CLI (they take an open connection)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from projections import similarity

#: pgvector's HNSW candidate list for similarity queries: recall@10 0.98 at 200 on 1M clustered 512-d
#: vectors with m 24 / ef_construction 128 (docs/architecture.md, "Similarity at scale").
EF_SEARCH = 200


@dataclass(frozen=True)
class SimilarClip:
    clip_id: UUID
    video_id: UUID
    start: int
    end: int
    distance: float  # cosine distance, 0 (same direction) … 2
    score: float  # cosine similarity, 1 - distance


#: What each (schema, model, strategy) search last found: the embedding's dimension (the next search's
#: one statement names its partial index), whether clips have several vectors (then it takes four
#: candidates per clip wanted, as several may be one clip's) and whether the dimension has its HNSW
#: index (below :data:`projections.similarity.INDEX_MIN_ROWS` it has none and every vector is ranked
#: exactly). A wrong guess costs one more statement.
_shapes: dict[tuple[str, str | None, str | None], tuple[int, bool, bool]] = {}
#: The guess for a search never made before: the shape most recently found.
_last_shape = (512, False, True)


def similar_clips(
    conn: psycopg.Connection[Any],
    schema: str,
    clip_id: UUID,
    model: str | None = None,
    strategy: str | None = None,
    video_id: UUID | None = None,
    limit: int = 12,
    offset: int = 0,
    *,
    least: bool = False,
    other_videos: bool = False,
    ef_search: int = EF_SEARCH,
) -> list[SimilarClip]:
    """Live clips nearest to ``clip_id`` by cosine distance (``least``: farthest first), through the
    HNSW index of the dimension, or ranked exactly where it has none (fewer vectors than
    :data:`projections.similarity.INDEX_MIN_ROWS`, or its index still building).

    ``model``/``strategy`` default to those of the clip's latest embedding; ``video_id`` restricts to one
    video (ranked exactly, through the video index), ``other_videos`` leaves out the clip's own video.
    Clips with several vectors (``keyframe_multi``) count once, by their nearest vector. The least
    similar are the nearest to the negated vector (cosine distance to -q is 2 minus the distance to q),
    so they too come from the index rather than a scan of every clip. Clips with one vector take
    ``limit + offset`` candidates, four times that with several. One statement
    (:func:`similar_clips_query`), in a transaction of its own on an autocommit connection, or in the
    caller's (its HNSW settings then last as long as that transaction). Empty when the clip has no
    embedding."""
    global _last_shape
    if limit < 1 or offset < 0:
        raise ValueError("limit must be at least 1 and offset at least 0")
    if ef_search < 1:
        raise ValueError("ef_search must be at least 1")
    key = (schema, model, strategy)
    dimension, several, indexed = _shapes.get(key, _last_shape)
    params: dict[str, Any] = {
        "clip_id": clip_id,
        "model": model,
        "strategy": strategy,
        "video_id": video_id,
        "ef_search": str(ef_search),
    }
    for _ in range(3):
        query = similar_clips_query(
            schema,
            dimension,
            video_id is not None,
            least=least,
            other_videos=other_videos,
            limit=limit,
            offset=offset,
            several=several,
            indexed=indexed,
        )
        rows = conn.execute(query, params).fetchall()
        if not rows:  # the clip has no embedding (of this model and strategy)
            return []
        found = (int(rows[0][0]), bool(rows[0][1]), bool(rows[0][2]))
        if found[0] == dimension and (several or not found[1]) and found[2] == indexed:
            break
        dimension, several, indexed = found  # not as guessed: once more, with its index and candidates
    _shapes[key] = _last_shape = (dimension, several, indexed)
    return [
        SimilarClip(r[3], r[4], int(r[5]), int(r[6]), float(r[7]), 1.0 - float(r[7]))
        for r in rows
        if r[3] is not None
    ]


@functools.lru_cache(maxsize=256)
def similar_clips_query(
    schema: str,
    dimension: int,
    by_video: bool,
    *,
    least: bool = False,
    other_videos: bool = False,
    limit: int = 12,
    offset: int = 0,
    several: bool = False,
    indexed: bool = True,
) -> sql.Composed:
    """The whole search as one statement (exposed for EXPLAIN in tests): the clip's embedding (its latest
    model and strategy unless given), the transaction's HNSW settings, the nearest candidates and their
    clips. Its rows start with the embedding's dimension, whether it has several vectors and whether
    the dimension's HNSW index is there and valid; when the dimension is not ``dimension`` (the literal
    the planner needs to match the partial HNSW index ``WHERE dimension = D``) it has no other row and
    no index was scanned. With no embedding it has no row. With ``indexed``, candidates are found in
    the index's form (:data:`projections.similarity.INDEX_TYPE`), then ranked and scored by their
    float32 distance; without, every vector of the dimension is ranked by its float32 distance (exact:
    what a dimension below :data:`projections.similarity.INDEX_MIN_ROWS` gets, and one whose index is
    building).

    The HNSW settings come from ``set_config`` in the probe, which the query vector is computed from,
    and pgvector reads them at the index scan's first tuple, after that vector: filters are applied
    after the index scan, and iterative scans go on until enough rows pass them.

    The limits are literals, not parameters: the plan PostgreSQL caches for the prepared statement
    (psycopg prepares a statement run five times) is then as good as the one it makes per call, and it
    is reused, where an unknown LIMIT made the cached plan scan every clip and so was planned anew
    each time."""
    d = sql.Literal(int(dimension))
    form = sql.SQL(f"{similarity.INDEX_TYPE}({int(dimension)})")
    target = (
        # -q, for the farthest: pgvector has no scalar product, so negate through an array.
        sql.SQL(
            "(SELECT array_agg(-x ORDER BY i)::{form} FROM unnest(p.embedding::real[]) WITH ORDINALITY AS t(x, i))"
        )
        if least
        else sql.SQL("p.embedding::{form}")
    ).format(form=form)
    prefix, suffix = similarity.hnsw_index_name_parts("rm_embeddings")
    filters = [sql.SQL("AND e.video_id = %(video_id)s")] if by_video else []
    if other_videos:
        filters.append(sql.SQL("AND e.video_id <> (SELECT video_id FROM probe)"))
    return sql.SQL(
        """
        WITH probe AS MATERIALIZED (
            SELECT model, strategy, dimension, video_id, embedding,
                   EXISTS (SELECT FROM {emb} o WHERE o.clip_id = e.clip_id AND o.model = e.model
                           AND o.strategy = e.strategy AND o.vector_index > 0) AS several,
                   coalesce((SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(
                       quote_ident({schema}) || '.' || quote_ident({prefix} || e.dimension || {suffix}))),
                     false) AS indexed,
                   set_config('hnsw.ef_search', %(ef_search)s, true) AS ef_search,
                   set_config('hnsw.iterative_scan', 'relaxed_order', true) AS iterative_scan
            FROM {emb} e
            WHERE clip_id = %(clip_id)s AND (%(model)s::text IS NULL OR model = %(model)s)
              AND (%(strategy)s::text IS NULL OR strategy = %(strategy)s)
            ORDER BY updated_at DESC, vector_index LIMIT 1
        ), target AS MATERIALIZED (
            SELECT p.embedding::vector({d}) AS exact, {target} AS t FROM probe p
            WHERE p.dimension = {d} AND p.ef_search IS NOT NULL AND p.iterative_scan IS NOT NULL
        ), nearest AS MATERIALIZED (
            SELECT e.clip_id, e.video_id, e.embedding::vector({d}) <=> (SELECT exact FROM target) AS distance
            FROM {emb} e
            WHERE e.dimension = {d} AND e.live AND e.model = (SELECT model FROM probe)
              AND e.strategy = (SELECT strategy FROM probe) AND e.clip_id <> %(clip_id)s {filters}
            ORDER BY {ranking}
            LIMIT {candidates}
        ), per_clip AS (
            SELECT clip_id, min(video_id::text)::uuid AS video_id, min(distance) AS distance
            FROM nearest GROUP BY clip_id
        ), found AS (
            SELECT p.clip_id, p.video_id, c.start_frame, c.end_frame, p.distance
            FROM per_clip p JOIN {clips} c ON c.id = p.clip_id
            ORDER BY {order}
            LIMIT {limit} OFFSET {offset}
        )
        SELECT probe.dimension, probe.several, probe.indexed, f.clip_id, f.video_id, f.start_frame, f.end_frame, f.distance
        FROM probe LEFT JOIN found f ON probe.dimension = {d}
        ORDER BY {order_found}
        """
    ).format(
        d=d,
        target=target,
        candidates=sql.Literal((limit + offset) * (4 if several else 1)),
        limit=sql.Literal(int(limit)),
        offset=sql.Literal(int(offset)),
        emb=sql.Identifier(schema, "rm_embeddings"),
        schema=sql.Literal(schema),
        prefix=sql.Literal(prefix),
        suffix=sql.Literal(suffix),
        clips=sql.Identifier(schema, "rm_clips"),
        filters=sql.SQL(" ").join(filters),
        order=sql.SQL("p.distance DESC, p.clip_id DESC" if least else "p.distance, p.clip_id"),
        order_found=sql.SQL("f.distance DESC, f.clip_id DESC" if least else "f.distance, f.clip_id"),
        # Within one video: its few vectors are ranked exactly (the HNSW index would stop after
        # hnsw.max_scan_tuples without reaching a small video's clips in a large table). Without the
        # index: every vector, exactly.
        ranking=(
            sql.SQL("e.embedding::vector({d}) <=> (SELECT exact FROM target) {direction}").format(
                d=d, direction=sql.SQL("DESC" if least else "ASC")
            )
            if by_video or not indexed
            else sql.SQL("e.embedding::{form} <=> (SELECT t FROM target)").format(form=form)
        ),
    )
