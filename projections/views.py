"""The read side's queries: what the web pages and the CLI read from the read models, each a function
of a connection whose ``search_path`` is the Heaters schema (``web.readmodels.ReadModels`` lends
pooled ones; ``projections.runner.schema_connection`` opens one), so the SQL names tables plainly.

The tables are the projections' (``projections/schema.py``); nothing here writes. Similarity search by
the HNSW index is ``projections.queries.similar_clips``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from domain.clip import REVIEWABLE
from domain.stages import ClipState, VideoState

Row = dict[str, Any]
Connection = psycopg.Connection[Any]


def sql_literals(values: Iterable[str]) -> str:
    """``('a', 'b')``: constants of the domain's vocabulary (never user input) as an SQL list, so a
    partial index on them serves the query."""
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


#: The states of clips awaiting review (pending, or skipped and coming back), as an SQL list.
REVIEWABLE_SQL = sql_literals(REVIEWABLE)

#: The projections the CLI's lists read (caught up before reading when no daemon runs).
VIEW_PROJECTIONS: tuple[str, ...] = ("videos", "clips")


def _all(conn: Connection, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()  # type: ignore[arg-type]


def _one(conn: Connection, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()  # type: ignore[arg-type]


# -- the web's pages: clips, videos, the review queue, audit, ops, similarity -------------------------


def clip(conn: Connection, clip_id: UUID) -> Row | None:
    return _one(
        conn,
        """SELECT c.*, v.title AS video_title, v.source AS video_source, v.fps, v.frame_count,
                  v.media AS video_media
           FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id WHERE c.id = %s""",
        (clip_id,),
    )


#: :func:`clip_with_siblings`' query.
CLIP_WITH_SIBLINGS = """SELECT c.id, c.video_id, c.state, c.live, c.start_frame, c.end_frame, c.grouped_with,
                  c.sprite_manifest, c.version, v.title AS video_title, v.fps, v.media AS video_media,
                  n.sibling_count, n.sibling_index,
                  (SELECT s.id FROM rm_clips s WHERE s.video_id = c.video_id AND s.live
                      AND s.start_frame < c.start_frame ORDER BY s.start_frame DESC LIMIT 1) AS previous_id,
                  (SELECT s.id FROM rm_clips s WHERE s.video_id = c.video_id AND s.live
                      AND s.start_frame > c.start_frame ORDER BY s.start_frame LIMIT 1) AS next_id
           FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id
           CROSS JOIN LATERAL (
               SELECT count(*) AS sibling_count,
                      count(*) FILTER (WHERE s.start_frame < c.start_frame) AS sibling_index
               FROM rm_clips s WHERE s.video_id = c.video_id AND s.live) n
           WHERE c.id = %s"""


def clip_with_siblings(conn: Connection, clip_id: UUID) -> Row | None:
    """What the review page's clip view shows of a clip, with where it stands among the live clips of
    its video in frame order: ``sibling_count``, ``sibling_index`` and the ``previous_id`` and
    ``next_id`` live clips (one round trip). Those are computed here rather than by sending every
    sibling's id (150 UUIDs parsed per fetch of a long video's clip, and the clip's unused JSON
    columns: ``bench/review_load.py``'s profile put that row's decoding at 3 % of the web process);
    for a clip that is not live the index and neighbours mean nothing (the caller ignores them)."""
    with send_clip_with_siblings(conn, clip_id) as cur:
        return cur.fetchone()


def send_clip_with_siblings(conn: Connection, clip_id: UUID) -> psycopg.Cursor[Row]:
    """Send :func:`clip_with_siblings`' query (in a pipeline: with others, in one round trip); its
    cursor has the row."""
    return conn.cursor(row_factory=dict_row).execute(CLIP_WITH_SIBLINGS, (clip_id,))


def video(conn: Connection, video_id: UUID) -> Row | None:
    return _one(conn, "SELECT * FROM rm_videos WHERE id = %s", (video_id,))


def live_clips(conn: Connection, video_id: UUID) -> list[Row]:
    return _all(
        conn,
        """SELECT id, start_frame, end_frame, state, sprite_manifest, grouped_with
           FROM rm_clips WHERE video_id = %s AND live ORDER BY start_frame""",
        (video_id,),
    )


def pending_count(conn: Connection) -> int:
    """Clips pending review: the sum of the videos' counts (kept by the videos projection in the
    batch's transaction), which costs PostgreSQL a row per video with clips pending, not one per clip."""
    row = _one(conn, "SELECT coalesce(sum(pending_count), 0) AS n FROM rm_videos WHERE pending_count > 0")
    return int(row["n"]) if row else 0


def videos(conn: Connection, limit: int = 200) -> list[Row]:
    return _all(
        conn, "SELECT id, title, source, state FROM rm_videos ORDER BY submitted_at DESC LIMIT %s", (limit,)
    )


def skipped(conn: Connection, limit: int = 500) -> list[Row]:
    """Skipped clips, oldest decision first (they come back after the clips pending review)."""
    return _all(
        conn,
        f"""SELECT c.id, c.video_id, c.start_frame, c.end_frame, c.updated_at, v.title AS video_title
           FROM rm_clips c JOIN rm_videos v ON v.id = c.video_id
           WHERE c.state = '{ClipState.SKIPPED}' AND c.live ORDER BY c.updated_at, c.id LIMIT %s""",
        (limit,),
    )


def history(conn: Connection, aggregate_id: UUID) -> list[Row]:
    return _all(
        conn,
        """SELECT version, kind, event, actor, at, payload, position FROM rm_history
           WHERE aggregate_id = %s ORDER BY version""",
        (aggregate_id,),
    )


def stage_stats(conn: Connection) -> list[Row]:
    return _all(conn, "SELECT kind, state, count FROM rm_stage_stats WHERE count > 0 ORDER BY kind, state")


def failed_videos(conn: Connection) -> list[Row]:
    return _all(
        conn,
        """SELECT id, title, source, state, failed_stage, failure_reason, stages, updated_at
           FROM rm_videos WHERE failed_stage IS NOT NULL ORDER BY updated_at DESC LIMIT 200""",
    )


def waiting_downloads(conn: Connection) -> list[Row]:
    """Videos whose download is queued or running (ops can cancel them)."""
    return _all(
        conn,
        f"""SELECT id, title, source, state, stages, updated_at FROM rm_videos
           WHERE state IN {sql_literals((VideoState.SUBMITTED, VideoState.DOWNLOAD_RUNNING))}
           ORDER BY updated_at LIMIT 200""",
    )


def failed_clips(conn: Connection) -> list[Row]:
    return _all(
        conn,
        """SELECT id, video_id, state, failed_stage, failure_reason, updated_at
           FROM rm_clips WHERE failed_stage IS NOT NULL AND live ORDER BY updated_at DESC LIMIT 200""",
    )


def embedding_options(conn: Connection) -> tuple[list[str], list[str]]:
    rows = _all(conn, "SELECT DISTINCT model, strategy FROM rm_embeddings WHERE live")
    return sorted({r["model"] for r in rows}), sorted({r["strategy"] for r in rows})


def random_embedded_clip(
    conn: Connection, model: str | None, strategy: str | None, video_id: UUID | None
) -> UUID | None:
    row = _one(
        conn,
        """SELECT clip_id FROM rm_embeddings WHERE live
             AND (%(model)s::text IS NULL OR model = %(model)s)
             AND (%(strategy)s::text IS NULL OR strategy = %(strategy)s)
             AND (%(video)s::uuid IS NULL OR video_id = %(video)s)
           ORDER BY random() LIMIT 1""",
        {"model": model, "strategy": strategy, "video": video_id},
    )
    return row["clip_id"] if row else None


def embeddings_of(conn: Connection, clip_id: UUID) -> list[tuple[str, str]]:
    """The (model, strategy) pairs a clip is embedded with."""
    rows = _all(
        conn,
        "SELECT DISTINCT model, strategy FROM rm_embeddings WHERE clip_id = %s AND live ORDER BY 1, 2",
        (clip_id,),
    )
    return [(str(r["model"]), str(r["strategy"])) for r in rows]


def clips_by_id(conn: Connection, ids: Sequence[UUID]) -> dict[UUID, Row]:
    rows = _all(
        conn,
        """SELECT c.id, c.video_id, c.start_frame, c.end_frame, c.state, c.sprite_manifest, c.keyframes,
                  v.title AS video_title
           FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id WHERE c.id = ANY(%s)""",
        (list(ids),),
    )
    return {r["id"]: r for r in rows}


# -- the CLI's lists (``heaters videos``, ``heaters clips``) ------------------------------------------


def video_list(conn: Connection) -> list[Row]:
    """Every submitted video, oldest first: its state, size, clip count and the reason it failed."""
    return _all(
        conn,
        """SELECT id, state, source, title, frame_count AS frames, fps, clip_count AS clips,
                  submitted_at, failure_reason AS failure
           FROM rm_videos ORDER BY submitted_at, id""",
    )


def video_exists(conn: Connection, video_id: UUID) -> bool:
    return _one(conn, "SELECT 1 AS found FROM rm_videos WHERE id = %s", (video_id,)) is not None


def live_clip_list(conn: Connection, video_id: UUID | None = None) -> list[Row]:
    """The live clips of one video (or of all, oldest video first), in frame order."""
    return _all(
        conn,
        """SELECT c.id, c.video_id, c.start_frame AS start, c.end_frame AS "end", c.state, c.origin,
                  c.grouped_with
           FROM rm_clips c JOIN rm_videos v ON v.id = c.video_id
           WHERE c.live AND (%(video)s::uuid IS NULL OR c.video_id = %(video)s)
           ORDER BY v.submitted_at, v.id, c.start_frame""",
        {"video": video_id},
    )
