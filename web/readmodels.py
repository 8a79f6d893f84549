"""Queries the web app runs on the read-model tables (``projections/schema.py``).

Every query runs on a pooled connection whose ``search_path`` is the Heaters schema, so the SQL names
tables plainly. The web app never writes read models; review leases (``web/leases.py``), undo stacks
(``web/review.py``) and accounts (``web/auth.py``) are its own tables. Sprite manifests: ``web/media.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from infra.database import DatabaseAddress, retry_once_on_lost_connection
from projections.queries import SimilarClip

log = logging.getLogger(__name__)

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

Row = dict[str, Any]


class ReadModels:
    """A connection pool on the Heaters schema and the queries of the web pages."""

    def __init__(
        self, address: DatabaseAddress, schema: str, *, min_size: int = 1, max_size: int = 8
    ) -> None:
        if not _SCHEMA.match(schema):
            raise ValueError(f"unsupported schema name {schema!r}")
        self.address = address
        self.schema = schema
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            address.conninfo(),
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "options": f"-c search_path={schema},public",
                "row_factory": dict_row,
            },
            open=False,
            name="heaters-web",
            check=ConnectionPool.check_connection,  # a connection the server closed is replaced
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        with self.pool.connection(timeout=10.0) as conn:
            yield conn

    @contextmanager
    def tuple_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection returning plain tuples (for ``projections.queries``)."""
        with self.connection() as conn:
            conn.row_factory = tuple_row  # type: ignore[assignment]
            try:
                yield conn
            finally:
                conn.row_factory = dict_row

    def all(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        def read() -> list[Row]:
            with self.connection() as conn:
                return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

        return retry_once_on_lost_connection("read model query", read)

    def one(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        def read() -> Row | None:
            with self.connection() as conn:
                return conn.execute(query, params).fetchone()  # type: ignore[arg-type]

        return retry_once_on_lost_connection("read model query", read)

    # -- clips and videos --------------------------------------------------------------------------

    def clip(self, clip_id: UUID) -> Row | None:
        return self.one(
            """SELECT c.*, v.title AS video_title, v.source AS video_source, v.fps, v.frame_count,
                      v.media AS video_media
               FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id WHERE c.id = %s""",
            (clip_id,),
        )

    def video(self, video_id: UUID) -> Row | None:
        return self.one("SELECT * FROM rm_videos WHERE id = %s", (video_id,))

    def live_clips(self, video_id: UUID) -> list[Row]:
        return self.all(
            """SELECT id, start_frame, end_frame, state, sprite_manifest, grouped_with
               FROM rm_clips WHERE video_id = %s AND live ORDER BY start_frame""",
            (video_id,),
        )

    def pending_count(self) -> int:
        row = self.one("SELECT count(*) AS n FROM rm_clips WHERE state = 'pending_review' AND live")
        return int(row["n"]) if row else 0

    def videos(self, limit: int = 200) -> list[Row]:
        return self.all(
            "SELECT id, title, source, state FROM rm_videos ORDER BY submitted_at DESC LIMIT %s", (limit,)
        )

    def skipped(self, limit: int = 500) -> list[Row]:
        """Skipped clips, oldest decision first (they come back after the clips pending review)."""
        return self.all(
            """SELECT c.id, c.video_id, c.start_frame, c.end_frame, c.updated_at, v.title AS video_title
               FROM rm_clips c JOIN rm_videos v ON v.id = c.video_id
               WHERE c.state = 'skipped' AND c.live ORDER BY c.updated_at, c.id LIMIT %s""",
            (limit,),
        )

    # -- audit -------------------------------------------------------------------------------------

    def history(self, aggregate_id: UUID) -> list[Row]:
        return self.all(
            """SELECT version, kind, event, actor, at, payload, position FROM rm_history
               WHERE aggregate_id = %s ORDER BY version""",
            (aggregate_id,),
        )

    # -- ops ---------------------------------------------------------------------------------------

    def stage_stats(self) -> list[Row]:
        return self.all("SELECT kind, state, count FROM rm_stage_stats WHERE count > 0 ORDER BY kind, state")

    def failed_videos(self) -> list[Row]:
        return self.all(
            """SELECT id, title, source, state, failed_stage, failure_reason, stages, updated_at
               FROM rm_videos WHERE failed_stage IS NOT NULL ORDER BY updated_at DESC LIMIT 200"""
        )

    def waiting_downloads(self) -> list[Row]:
        """Videos whose download is queued or running (ops can cancel them)."""
        return self.all(
            """SELECT id, title, source, state, stages, updated_at
               FROM rm_videos WHERE state IN ('submitted', 'download_running') ORDER BY updated_at LIMIT 200"""
        )

    def failed_clips(self) -> list[Row]:
        return self.all(
            """SELECT id, video_id, state, failed_stage, failure_reason, updated_at
               FROM rm_clips WHERE failed_stage IS NOT NULL AND live ORDER BY updated_at DESC LIMIT 200"""
        )

    # -- similarity --------------------------------------------------------------------------------

    def embedding_options(self) -> tuple[list[str], list[str]]:
        rows = self.all("SELECT DISTINCT model, strategy FROM rm_embeddings WHERE live")
        return sorted({r["model"] for r in rows}), sorted({r["strategy"] for r in rows})

    def random_embedded_clip(
        self, model: str | None, strategy: str | None, video_id: UUID | None
    ) -> UUID | None:
        row = self.one(
            """SELECT clip_id FROM rm_embeddings WHERE live
                 AND (%(model)s::text IS NULL OR model = %(model)s)
                 AND (%(strategy)s::text IS NULL OR strategy = %(strategy)s)
                 AND (%(video)s::uuid IS NULL OR video_id = %(video)s)
               ORDER BY random() LIMIT 1""",
            {"model": model, "strategy": strategy, "video": video_id},
        )
        return row["clip_id"] if row else None

    def least_similar(
        self,
        clip_id: UUID,
        model: str | None,
        strategy: str | None,
        video_id: UUID | None,
        limit: int,
        offset: int,
    ) -> list[SimilarClip]:
        """Live clips farthest from ``clip_id`` first (the reverse of ``projections.queries.similar_clips``:
        same probe, one distance per clip by its nearest vector, ties by clip id). No index finds the
        farthest vectors, so this is an exact scan of the clips embedded with that model and strategy."""
        rows = self.all(
            """WITH probe AS (
                   SELECT model, strategy, dimension FROM rm_embeddings
                   WHERE clip_id = %(clip)s AND (%(model)s::text IS NULL OR model = %(model)s)
                     AND (%(strategy)s::text IS NULL OR strategy = %(strategy)s)
                   ORDER BY updated_at DESC, vector_index LIMIT 1
               ), query AS (
                   SELECT e.embedding AS v FROM rm_embeddings e JOIN probe p
                     ON e.model = p.model AND e.strategy = p.strategy
                   WHERE e.clip_id = %(clip)s ORDER BY e.vector_index LIMIT 1
               ), per_clip AS (
                   SELECT e.clip_id, min(e.video_id::text)::uuid AS video_id,
                          min(e.embedding <=> (SELECT v FROM query)) AS distance
                   FROM rm_embeddings e JOIN probe p
                     ON e.model = p.model AND e.strategy = p.strategy AND e.dimension = p.dimension
                   WHERE e.live AND e.clip_id <> %(clip)s
                     AND (%(video)s::uuid IS NULL OR e.video_id = %(video)s)
                   GROUP BY e.clip_id
               )
               SELECT pc.clip_id, pc.video_id, c.start_frame, c.end_frame, pc.distance,
                      1 - pc.distance AS similarity
               FROM per_clip pc JOIN rm_clips c ON c.id = pc.clip_id
               ORDER BY pc.distance DESC, pc.clip_id DESC
               LIMIT %(limit)s OFFSET %(offset)s""",
            {
                "clip": clip_id, "model": model, "strategy": strategy, "video": video_id,
                "limit": limit, "offset": offset,
            },
        )  # fmt: skip
        return [
            SimilarClip(
                r["clip_id"], r["video_id"], r["start_frame"], r["end_frame"], r["distance"], r["similarity"]
            )
            for r in rows
        ]

    def embeddings_of(self, clip_id: UUID) -> list[tuple[str, str]]:
        """The (model, strategy) pairs a clip is embedded with."""
        rows = self.all(
            "SELECT DISTINCT model, strategy FROM rm_embeddings WHERE clip_id = %s AND live ORDER BY 1, 2",
            (clip_id,),
        )
        return [(str(r["model"]), str(r["strategy"])) for r in rows]

    def clips_by_id(self, ids: Sequence[UUID]) -> dict[UUID, Row]:
        rows = self.all(
            """SELECT c.id, c.video_id, c.start_frame, c.end_frame, c.state, c.sprite_manifest, c.keyframes,
                      v.title AS video_title
               FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id WHERE c.id = ANY(%s)""",
            (list(ids),),
        )
        return {r["id"]: r for r in rows}
