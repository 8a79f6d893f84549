"""Helpers for the projection tests: a varied history of commands and checksums of read models."""

from __future__ import annotations

import math
from uuid import UUID

from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from projections.runner import PROJECTIONS, schema_connection
from tests.helpers import PIPELINE, clipped_video

REVIEWER = "user:reviewer"


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def embed(
    app: HeatersApplication, clip_id: UUID, vector: list[float], strategy: str = "keyframe_multi_avg"
) -> None:
    clip = app.get_clip(clip_id)
    app.record_keyframes(clip_id, "multi", [f"k/{clip_id}/0.jpg"], [clip.start], PIPELINE)
    app.record_embedding(clip_id, "ViT-T", "test", strategy, [vector], PIPELINE)


def varied_history(app: HeatersApplication) -> dict[str, object]:
    """Two videos with every kind of review decision, pipeline results, failures and undo."""
    v1, (a, b, c) = clipped_video(app)
    v2, (d, e, f, g) = clipped_video(app, frame_count=400, cuts=(100, 200, 300))
    app.approve(a, REVIEWER)
    embed(app, a, unit(1, 0, 0))
    app.record_export(a, f"exports/{a}.mp4", PIPELINE)
    app.group(b, a, REVIEWER)
    embed(app, b, unit(1, 1, 0))
    left, right = app.split(c, 250, REVIEWER)
    app.archive(right, REVIEWER)
    app.skip(d, REVIEWER)
    merged = app.merge(f, e, REVIEWER)
    app.undo(merged, REVIEWER)  # merge undone: e and f back
    app.approve(g, REVIEWER)
    app.record_clip_failure(g, "keyframes", 1, "no frames", PIPELINE)
    app.request_retry(g, REVIEWER)
    embed(app, g, unit(0, 1, 0))
    app.undo(g, REVIEWER)  # approval undone: embedding deleted
    v3 = app.submit("https://example.com/x.mp4", "user:someone")
    app.start_video_stage(v3, "download", PIPELINE)
    app.record_video_failure(v3, "download", 1, "404", PIPELINE)
    return {"videos": [v1, v2, v3], "clips": [a, b, c, d, e, f, g, left, right, merged]}


def checksums(address: DatabaseAddress, schema: str, suffix: str = "") -> dict[str, str]:
    """md5 of every read-model table's rows in a stable order."""
    tables = [t for p in PROJECTIONS.values() for t in p.base_tables()]
    result: dict[str, str] = {}
    with schema_connection(address, schema) as conn:
        for table in tables:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
                ).format(sql.Identifier(table + suffix))
            ).fetchone()
            assert row is not None
            result[table] = f"{row[0]}:{row[1]}"
    return result


def positions(address: DatabaseAddress, schema: str) -> dict[str, tuple[int, str]]:
    with schema_connection(address, schema) as conn:
        return {
            n: (int(p), s)
            for n, p, s in conn.execute("SELECT name, position, state FROM projection_positions")
        }
