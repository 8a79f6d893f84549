"""On real PostgreSQL: a rebuild equals the incremental read models and swaps them in while writes go
on; similar clips come back by cosine distance through the HNSW index."""

from __future__ import annotations

import random
import threading
from uuid import UUID, uuid4

import pytest
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from projections.queries import similar_clips, similar_clips_query
from projections.rebuild import rebuild
from projections.runner import ProjectionDaemon, catch_up, schema_connection, wait_for
from tests.helpers import clipped_video
from tests.projection_helpers import REVIEWER, checksums, embed, positions, unit, varied_history

pytestmark = pytest.mark.integration


def test_rebuild_equals_incremental(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    varied_history(pg_app)
    head = catch_up(pg_address, pg_schema, batch_size=7)  # many small batches
    incremental = checksums(pg_address, pg_schema)
    assert rebuild(pg_address, pg_schema) == head  # all projections, one big batch after another
    assert checksums(pg_address, pg_schema) == incremental
    assert rebuild(pg_address, pg_schema, "similarity") == head
    assert checksums(pg_address, pg_schema) == incremental
    with schema_connection(pg_address, pg_schema) as conn:
        names = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg_schema,))
        }
        indexes = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,))
        }
    assert not any("__rebuild" in n for n in names | indexes)
    assert {"rm_clips_pkey", "rm_clips_video", "rm_clips_pending", "rm_embeddings_hnsw_3"} <= indexes
    assert set(positions(pg_address, pg_schema)) == {"videos", "clips", "history", "similarity", "stats"}


def test_rebuild_while_reviewers_work_misses_nothing(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    clip_ids = [
        c for _ in range(3) for c in clipped_video(pg_app, frame_count=1000, cuts=range(50, 1000, 50))[1]
    ]
    catch_up(pg_address, pg_schema)
    stop = threading.Event()

    def review() -> None:
        for clip_id in clip_ids:
            if stop.is_set():
                return
            pg_app.approve(clip_id, REVIEWER)

    with ProjectionDaemon(pg_address, pg_schema, poll_interval=0.05):
        reviewer = threading.Thread(target=review)
        reviewer.start()
        rebuild(pg_address, pg_schema, "clips", batch_size=20)
        reviewer.join()
        assert wait_for(pg_address, pg_schema, pg_app.recorder.max_notification_id() or 0, timeout=10)
    live = checksums(pg_address, pg_schema)
    with schema_connection(pg_address, pg_schema) as conn:
        approved = conn.execute("SELECT count(*) FROM rm_clips WHERE state = 'approved'").fetchone()
    assert approved == (len(clip_ids),)
    rebuild(pg_address, pg_schema)
    assert checksums(pg_address, pg_schema) == live


def test_similar_clips_by_cosine(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    video_id, (a, b, c) = clipped_video(pg_app)
    other_video, (d, *_) = clipped_video(pg_app)
    vectors = {a: unit(1, 0, 0), b: unit(1, 0.5, 0), c: unit(0, 1, 0), d: unit(1, 0.1, 0)}
    for clip_id, vector in vectors.items():
        pg_app.approve(clip_id, REVIEWER)
        embed(pg_app, clip_id, vector)
    catch_up(pg_address, pg_schema)
    with schema_connection(pg_address, pg_schema) as conn:
        found = similar_clips(conn, pg_schema, a)
        assert [s.clip_id for s in found] == [d, b, c]
        assert found[0].video_id == other_video and (found[1].start, found[1].end) == (100, 200)
        assert found[0].score == pytest.approx(
            sum(x * y for x, y in zip(vectors[a], vectors[d], strict=True))
        )
        assert found[2].distance == pytest.approx(1.0)
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a, video_id=video_id)] == [b, c]
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a, limit=1, offset=1)] == [b]
        assert similar_clips(conn, pg_schema, a, model="other") == []
    pg_app.undo(d, REVIEWER)  # d's approval undone: its vectors stop being found
    catch_up(pg_address, pg_schema)
    with schema_connection(pg_address, pg_schema) as conn:
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a)] == [b, c]


def test_similarity_query_uses_the_hnsw_index(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    _, (a, _, _) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    embed(pg_app, a, unit(*[1.0] * 16))
    catch_up(pg_address, pg_schema)
    rng = random.Random(7)
    video = uuid4()
    rows = [
        (
            uuid4(),
            video,
            "[" + ",".join(f"{x:.5f}" for x in unit(*[rng.gauss(0, 1) for _ in range(16)])) + "]",
        )
        for _ in range(3000)
    ]
    with schema_connection(pg_address, pg_schema) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rm_embeddings (clip_id, model, strategy, vector_index, video_id, live, dimension, "
                "embedding, updated_at) VALUES (%s, 'ViT-T', 'keyframe_multi_avg', 0, %s, true, 16, %s::vector, now())",
                rows,
            )
            cur.executemany(
                "INSERT INTO rm_clips (id, video_id, start_frame, end_frame, state, live, origin, created_at, "
                "updated_at, version) VALUES (%s, %s, 0, 10, 'embedded', true, 'shots', now(), now(), 1)",
                [(r[0], r[1]) for r in rows],
            )
        conn.execute("ANALYZE rm_embeddings")
        conn.commit()
        params = {
            "clip_id": a,
            "model": "ViT-T",
            "strategy": "keyframe_multi_avg",
            "video_id": None,
            "candidates": 48,
            "limit": 12,
            "offset": 0,
        }
        conn.execute("SET hnsw.ef_search = 100")
        plan = "\n".join(
            r[0]
            for r in conn.execute(sql.SQL("EXPLAIN ") + similar_clips_query(pg_schema, 16, False), params)
        )
        assert "rm_embeddings_hnsw_16" in plan, plan
        found = similar_clips(conn, pg_schema, a)
    assert len(found) == 12
    exact = sorted(
        (
            1 - sum(x * y for x, y in zip(unit(*[1.0] * 16), map(float, r[2][1:-1].split(",")), strict=True)),
            r[0],
        )
        for r in rows
    )
    recall = len({s.clip_id for s in found} & {cid for _, cid in exact[:12]}) / 12
    assert recall >= 0.8
    assert [s.distance for s in found] == sorted(s.distance for s in found)
    assert isinstance(found[0].clip_id, UUID)
