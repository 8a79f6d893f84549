"""Lists the CLI reads from the read models (``rm_videos``, ``rm_clips``), the same rows the pages show.

Callers bring the projections up to the log head first (``catch_up``) when no daemon keeps them so."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

#: The projections these views read.
VIEW_PROJECTIONS: tuple[str, ...] = ("videos", "clips")


def video_list(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """Every submitted video, oldest first: its state, size, clip count and the reason it failed."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(
                """SELECT id, state, source, title, frame_count AS frames, fps, clip_count AS clips,
                          submitted_at, failure_reason AS failure
                   FROM {} ORDER BY submitted_at, id"""
            ).format(sql.Identifier(schema, "rm_videos"))
        ).fetchall()


def video_exists(conn: psycopg.Connection[Any], schema: str, video_id: UUID) -> bool:
    row = conn.execute(
        sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(sql.Identifier(schema, "rm_videos")), (video_id,)
    ).fetchone()
    return row is not None


def live_clip_list(
    conn: psycopg.Connection[Any], schema: str, video_id: UUID | None = None
) -> list[dict[str, Any]]:
    """The live clips of one video (or of all, oldest video first), in frame order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(
                """SELECT c.id, c.video_id, c.start_frame AS start, c.end_frame AS "end", c.state, c.origin,
                          c.grouped_with
                   FROM {clips} c JOIN {videos} v ON v.id = c.video_id
                   WHERE c.live AND (%(video)s::uuid IS NULL OR c.video_id = %(video)s)
                   ORDER BY v.submitted_at, v.id, c.start_frame"""
            ).format(
                clips=sql.Identifier(schema, "rm_clips"), videos=sql.Identifier(schema, "rm_videos")
            ),
            {"video": video_id},
        ).fetchall()
