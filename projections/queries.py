"""Typed queries over the read models for the web app and the CLI (they take an open connection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from projections import similarity

#: pgvector's HNSW candidate list for similarity queries: recall@10 0.984 at 200 on 1M clustered 512-d
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
    HNSW index of the dimension.

    ``model``/``strategy`` default to those of the clip's latest embedding; ``video_id`` restricts to one
    video (ranked exactly, through the video index), ``other_videos`` leaves out the clip's own video. Clips with several vectors
    (``keyframe_multi``) count once, by their nearest vector. The least similar are the nearest to the
    negated vector (cosine distance to -q is 2 minus the distance to q), so they too come from the index
    rather than a scan of every clip. Runs in its own transaction (the HNSW settings are local to it) unless
    one is open. Empty when the clip has no embedding."""
    if limit < 1 or offset < 0:
        raise ValueError("limit must be at least 1 and offset at least 0")
    if ef_search < 1:
        raise ValueError("ef_search must be at least 1")
    embeddings = sql.Identifier(schema, "rm_embeddings")
    with conn.transaction():
        # The probe also sets the transaction's HNSW search (one round trip): filters are applied after
        # the index scan, and iterative scans go on until enough rows pass them.
        probe = conn.execute(
            sql.SQL(
                "SELECT e.model, e.strategy, e.dimension, e.video_id FROM "
                "(SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true)) AS settings "
                "LEFT JOIN LATERAL (SELECT model, strategy, dimension, video_id FROM {} WHERE clip_id = %s "
                "AND (%s::text IS NULL OR model = %s) AND (%s::text IS NULL OR strategy = %s) "
                "ORDER BY updated_at DESC, vector_index LIMIT 1) AS e ON true"
            ).format(embeddings),
            (str(ef_search), clip_id, model, model, strategy, strategy),
        ).fetchone()
        if probe is None or probe[0] is None:
            return []
        model, strategy, dimension = probe[0], probe[1], int(probe[2])
        rows = conn.execute(
            similar_clips_query(
                schema, dimension, video_id is not None, least=least, other_videos=other_videos
            ),
            {
                "clip_id": clip_id,
                "model": model,
                "strategy": strategy,
                "video_id": video_id,
                "own_video": probe[3],
                "candidates": (limit + offset) * 4,
                "limit": limit,
                "offset": offset,
            },
        ).fetchall()
    return [SimilarClip(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), 1.0 - float(r[4])) for r in rows]


def similar_clips_query(
    schema: str, dimension: int, by_video: bool, *, least: bool = False, other_videos: bool = False
) -> sql.Composed:
    """The nearest-neighbour query for one dimension (exposed for EXPLAIN in tests). The dimension is a
    literal so the planner can match the partial HNSW index ``WHERE dimension = D``. Candidates are found
    in the index's form (:data:`projections.similarity.INDEX_TYPE`), then ranked and scored by their
    float32 distance."""
    d = sql.Literal(int(dimension))
    form = sql.SQL(f"{similarity.INDEX_TYPE}({int(dimension)})")
    target = (
        # -q, for the farthest: pgvector has no scalar product, so negate through an array.
        sql.SQL("(SELECT array_agg(-x ORDER BY i)::{form} FROM unnest(v::real[]) WITH ORDINALITY AS t(x, i))")
        if least
        else sql.SQL("v")
    ).format(form=form)
    filters = [sql.SQL("AND e.video_id = %(video_id)s")] if by_video else []
    if other_videos:
        filters.append(sql.SQL("AND e.video_id <> %(own_video)s"))
    return sql.SQL(
        """
        WITH query AS (
            SELECT embedding::vector({d}) AS exact, embedding::{form} AS v FROM {emb}
            WHERE clip_id = %(clip_id)s AND model = %(model)s AND strategy = %(strategy)s
            ORDER BY vector_index LIMIT 1
        ), target AS (
            SELECT exact, {target} AS t FROM query
        ), nearest AS MATERIALIZED (
            SELECT e.clip_id, e.video_id, e.embedding::vector({d}) <=> (SELECT exact FROM target) AS distance
            FROM {emb} e
            WHERE e.dimension = {d} AND e.live AND e.model = %(model)s AND e.strategy = %(strategy)s
              AND e.clip_id <> %(clip_id)s {filters}
            ORDER BY {ranking}
            LIMIT %(candidates)s
        ), per_clip AS (
            SELECT clip_id, min(video_id::text)::uuid AS video_id, min(distance) AS distance
            FROM nearest GROUP BY clip_id
        )
        SELECT p.clip_id, p.video_id, c.start_frame, c.end_frame, p.distance
        FROM per_clip p JOIN {clips} c ON c.id = p.clip_id
        ORDER BY {order}
        LIMIT %(limit)s OFFSET %(offset)s
        """
    ).format(
        d=d,
        form=form,
        target=target,
        emb=sql.Identifier(schema, "rm_embeddings"),
        clips=sql.Identifier(schema, "rm_clips"),
        filters=sql.SQL(" ").join(filters),
        order=sql.SQL("p.distance DESC, p.clip_id DESC" if least else "p.distance, p.clip_id"),
        # Within one video: its few vectors are ranked exactly (the HNSW index would stop after
        # hnsw.max_scan_tuples without reaching a small video's clips in a large table).
        ranking=(
            sql.SQL("e.embedding::vector({d}) <=> (SELECT exact FROM target) {direction}").format(
                d=d, direction=sql.SQL("DESC" if least else "ASC")
            )
            if by_video
            else sql.SQL("e.embedding::{form} <=> (SELECT t FROM target)").format(form=form)
        ),
    )
