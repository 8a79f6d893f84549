"""On real PostgreSQL: a rebuild equals the incremental read models and swaps them in while writes go
on; similar clips come back by cosine distance through the HNSW index."""

from __future__ import annotations

import random
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

import projections.queries
import projections.similarity
from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from projections.queries import similar_clips, similar_clips_query
from projections.rebuild import rebuild
from projections.runner import ProjectionDaemon, catch_up, schema_connection, set_search_path, wait_for
from projections.similarity import create_hnsw_index, hnsw_index_name
from tests.helpers import PIPELINE, clipped_video
from tests.projection_helpers import REVIEWER, checksums, embed, positions, unit, varied_history

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("index_min_rows", [1, projections.similarity.INDEX_MIN_ROWS])
def test_rebuild_equals_incremental(
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    index_min_rows: int,
) -> None:
    """With the HNSW index from the first vector (built while following, in the background) and with
    none (too few vectors)."""
    monkeypatch.setattr(projections.similarity, "INDEX_MIN_ROWS", index_min_rows)
    varied_history(pg_app)
    head = catch_up(pg_app, pg_address, batch_size=7)  # many small batches
    incremental = checksums(pg_address, pg_schema)
    assert rebuild(pg_app, pg_address) == head  # all projections, one big batch after another
    assert checksums(pg_address, pg_schema) == incremental
    assert rebuild(pg_app, pg_address, "similarity") == head
    assert checksums(pg_address, pg_schema) == incremental
    with schema_connection(pg_address, pg_schema) as conn:
        names = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg_schema,))
        }
        indexes = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,))
        }
    assert not any("__rebuild" in n for n in names | indexes)
    assert {"rm_clips_pkey", "rm_clips_video", "rm_clips_pending", "rm_embeddings_dimension"} <= indexes
    assert (hnsw_index_name("rm_embeddings", 3) in indexes) == (index_min_rows == 1)
    assert set(positions(pg_address, pg_schema)) == {"videos", "clips", "history", "similarity", "stats"}


def test_rebuild_while_reviewers_work_misses_nothing(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    clip_ids = [
        c for _ in range(3) for c in clipped_video(pg_app, frame_count=1000, cuts=range(50, 1000, 50))[1]
    ]
    catch_up(pg_app, pg_address)
    stop = threading.Event()

    def review() -> None:
        for clip_id in clip_ids:
            if stop.is_set():
                return
            pg_app.approve(clip_id, REVIEWER)

    with ProjectionDaemon(pg_app, pg_address, poll_interval=0.05):
        reviewer = threading.Thread(target=review)
        reviewer.start()
        rebuild(pg_app, pg_address, "clips", batch_size=20)
        reviewer.join()
        assert wait_for(pg_address, pg_schema, pg_app.recorder.max_notification_id() or 0, timeout=10)
    live = checksums(pg_address, pg_schema)
    with schema_connection(pg_address, pg_schema) as conn:
        approved = conn.execute("SELECT count(*) FROM rm_clips WHERE state = 'approved'").fetchone()
    assert approved == (len(clip_ids),)
    rebuild(pg_app, pg_address)
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
    catch_up(pg_app, pg_address)
    with schema_connection(pg_address, pg_schema) as conn:
        found = similar_clips(conn, pg_schema, a)
        assert [s.clip_id for s in found] == [d, b, c]
        assert found[0].video_id == other_video and (found[1].start, found[1].end) == (100, 200)
        assert found[0].score == pytest.approx(
            sum(x * y for x, y in zip(vectors[a], vectors[d], strict=True))
        )
        assert found[2].distance == pytest.approx(1.0)
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a, video_id=video_id)] == [b, c]
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a, other_videos=True)] == [d]
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a, least=True)] == [c, b, d]
        assert similar_clips(conn, pg_schema, a, least=True)[0].distance == pytest.approx(1.0)
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a, limit=1, offset=1)] == [b]
        assert similar_clips(conn, pg_schema, a, model="other") == []
    pg_app.undo(d, REVIEWER)  # d's approval undone: its vectors stop being found
    catch_up(pg_app, pg_address)
    with schema_connection(pg_address, pg_schema) as conn:
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a)] == [b, c]


def fill_16d(address: DatabaseAddress, schema: str, rows: list[tuple[UUID, UUID, str, list[float]]]) -> None:
    """Many 16-d rows (clip, video, model, vector) in rm_embeddings and rm_clips, then the projection's
    own index built over them (as a rebuild does): enough rows for the planner to prefer the index to
    a scan."""
    with schema_connection(address, schema) as conn:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP INDEX IF EXISTS {}").format(
                    sql.Identifier(hnsw_index_name("rm_embeddings", 16))
                )
            )
            cur.executemany(
                "INSERT INTO rm_embeddings (clip_id, model, strategy, vector_index, video_id, live, dimension, "
                "embedding, updated_at) VALUES (%s, %s, 'keyframe_multi_avg', 0, %s, true, 16, %s::vector, now())",
                [(r[0], r[2], r[1], "[" + ",".join(f"{x:.5f}" for x in r[3]) + "]") for r in rows],
            )
            cur.executemany(
                "INSERT INTO rm_clips (id, video_id, start_frame, end_frame, state, live, origin, created_at, "
                "updated_at, version) VALUES (%s, %s, 0, 10, 'embedded', true, 'shots', now(), now(), 1)",
                [(r[0], r[1]) for r in rows],
            )
            create_hnsw_index(cur, "rm_embeddings", 16)
        conn.execute("ANALYZE rm_embeddings")
        conn.commit()


def test_similarity_query_uses_the_hnsw_index(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    _, (a, _, _) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    embed(pg_app, a, unit(*[1.0] * 16))
    catch_up(pg_app, pg_address)
    rng = random.Random(7)
    video = uuid4()
    rows = [(uuid4(), video, "ViT-T", unit(*[rng.gauss(0, 1) for _ in range(16)])) for _ in range(8000)]
    fill_16d(pg_address, pg_schema, rows)
    with schema_connection(pg_address, pg_schema) as conn:
        params = {
            "clip_id": a,
            "model": "ViT-T",
            "strategy": "keyframe_multi_avg",
            "video_id": None,
            "ef_search": "100",
        }
        plan = "\n".join(
            r[0]
            for r in conn.execute(sql.SQL("EXPLAIN ") + similar_clips_query(pg_schema, 16, False), params)
        )
        assert hnsw_index_name("rm_embeddings", 16) in plan, plan
        least_plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN ")
                + similar_clips_query(pg_schema, 16, False, least=True, other_videos=True),
                params,
            )
        )
        assert hnsw_index_name("rm_embeddings", 16) in least_plan, least_plan  # no scan of every clip
        video_plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN ") + similar_clips_query(pg_schema, 16, True),
                {**params, "video_id": uuid4()},
            )
        )
        # a small video: its rows through the video index, ranked exactly, never the HNSW index
        assert "rm_embeddings_video" in video_plan and "using rm_embeddings_hnsw" not in video_plan, (
            video_plan
        )
        found = similar_clips(conn, pg_schema, a)
        farthest = similar_clips(conn, pg_schema, a, least=True)
        in_video = similar_clips(conn, pg_schema, a, video_id=video)
    assert len(found) == 12
    exact = sorted(
        (
            1 - sum(x * float(f"{y:.5f}") for x, y in zip(unit(*[1.0] * 16), r[3], strict=True)),  # as stored
            r[0],
        )
        for r in rows
    )
    recall = len({s.clip_id for s in found} & {cid for _, cid in exact[:12]}) / 12
    assert recall >= 0.8
    assert [s.clip_id for s in in_video] == [cid for _, cid in exact[:12]]  # one video: exact
    far_recall = len({s.clip_id for s in farthest} & {cid for _, cid in exact[-12:]}) / 12
    assert far_recall >= 0.8, far_recall
    assert [s.distance for s in farthest] == sorted((s.distance for s in farthest), reverse=True)
    assert farthest[0].distance > 1.5  # nearly opposite: these really are the least similar
    assert [s.distance for s in found] == sorted(s.distance for s in found)
    assert isinstance(found[0].clip_id, UUID)


def test_catch_up_far_behind_builds_the_hnsw_index_once_at_the_head(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections.runner

    monkeypatch.setattr(projections.similarity, "INDEX_MIN_ROWS", 1)

    def index_oid() -> int | None:
        with schema_connection(pg_address, pg_schema) as conn:
            row = conn.execute(
                "SELECT to_regclass(%s)::oid", (hnsw_index_name("rm_embeddings", 3),)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    _, (a, b, c) = clipped_video(pg_app)
    for clip_id, vector in ((a, unit(1, 0, 0)), (b, unit(1, 0.2, 0))):
        pg_app.approve(clip_id, REVIEWER)
        embed(pg_app, clip_id, vector)
    catch_up(pg_app, pg_address)  # a few events: the index is made once due (here at once) and kept
    first = index_oid()
    assert first is not None
    pg_app.approve(c, REVIEWER)
    embed(pg_app, c, unit(1, 0.1, 0))
    catch_up(pg_app, pg_address)
    assert index_oid() == first  # a short catch-up maintains it
    _, (d, *_) = clipped_video(pg_app)
    pg_app.approve(d, REVIEWER)
    embed(pg_app, d, unit(0, 1, 0))
    monkeypatch.setattr(projections.runner, "BULK_BACKLOG", 5)
    catch_up(pg_app, pg_address)  # "far" behind now: dropped, filled, built again at the head
    rebuilt = index_oid()
    assert rebuilt is not None and rebuilt != first
    with schema_connection(pg_address, pg_schema) as conn:
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a)] == [c, b, d]


def test_far_behind_similarity_goes_first_on_its_topics_and_is_recorded_at_the_head(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up far behind (and a rebuild) apply the similarity read model first, alone, reading only
    its topics, so PostgreSQL builds its HNSW index while the others are applied: the read models are
    those of a catch-up in small batches, and similarity's position is the head although the log ends
    with events of other topics."""
    import projections.runner

    monkeypatch.setattr(projections.similarity, "INDEX_MIN_ROWS", 1)
    varied_history(pg_app)
    _, (a, b, _) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    embed(pg_app, a, unit(0, 0, 1))
    pg_app.skip(b, REVIEWER)  # the last event is not one of similarity's
    monkeypatch.setattr(projections.runner, "BULK_BACKLOG", 5)
    head = catch_up(pg_app, pg_address)
    assert positions(pg_address, pg_schema) == dict.fromkeys(
        ("videos", "clips", "history", "similarity", "stats"), (head, "running")
    )
    bulk = checksums(pg_address, pg_schema)
    assert rebuild(pg_app, pg_address) == head
    assert checksums(pg_address, pg_schema) == bulk
    with schema_connection(pg_address, pg_schema) as conn:  # start again, in small batches
        for table in (*projections.runner.PROJECTIONS["similarity"].base_tables(), "projection_positions"):
            conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(table)))
        for name in ("videos", "clips", "history", "stats"):
            for table in projections.runner.PROJECTIONS[name].base_tables():
                conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(table)))
        conn.commit()
    monkeypatch.setattr(projections.runner, "BULK_BACKLOG", 1_000_000)
    assert catch_up(pg_app, pg_address, batch_size=7) == head
    assert checksums(pg_address, pg_schema) == bulk
    with schema_connection(pg_address, pg_schema) as conn:
        indexes = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,))
        }
    assert hnsw_index_name("rm_embeddings", 3) in indexes


def round_trips(conn: psycopg.Connection[Any], search: Callable[[], object]) -> int:
    """The statements ``search`` sent to the server (libpq's trace of the protocol messages)."""
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            search()
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        # Lines are "time, F (from the client) or B, length, message": a statement ends in Sync
        # (extended protocol) or is one Query (simple protocol: BEGIN, COMMIT).
        messages = [line.rstrip("\n").split("\t") for line in trace]
        return sum(1 for m in messages if m[1:2] == ["F"] and m[3].split(" ")[0] in ("Sync", "Query"))


def test_each_search_is_one_statement_once_it_knows_the_embeddings_shape(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the web's autocommit connections a search is one round trip. The statement has to name the
    dimension (for its partial index) and how many candidates to take (four per clip wanted when clips
    have several vectors): the first search of a kind guesses them, and says so when it guessed wrong,
    so that search alone takes a second statement."""
    monkeypatch.setattr(projections.queries, "_shapes", {})
    monkeypatch.setattr(projections.queries, "_last_shape", (512, False, True))
    _, clips = clipped_video(pg_app, frame_count=1000, cuts=range(100, 1000, 100))
    single, multi = clips[:4], clips[4:]
    for i, clip_id in enumerate(single):
        pg_app.approve(clip_id, REVIEWER)
        embed(pg_app, clip_id, unit(1, i / 10, 0))
    for i, clip_id in enumerate(multi):  # two near vectors each: the nearest candidates come in pairs
        pg_app.approve(clip_id, REVIEWER)
        start = pg_app.get_clip(clip_id).start
        pg_app.record_keyframes(
            clip_id, "multi", [f"k/{clip_id}/0.jpg", f"k/{clip_id}/1.jpg"], [start, start + 1], PIPELINE
        )
        pg_app.record_embedding(
            clip_id, "ViT-T", "test", "keyframe_multi", [unit(1, i / 10, 0), unit(1, i / 10, 0.01)], PIPELINE
        )
    catch_up(pg_app, pg_address)
    with connect(pg_address, autocommit=True) as conn:
        set_search_path(conn, pg_schema)
        found: list[list[UUID]] = []

        def search(clip_id: UUID, strategy: str | None = None) -> Callable[[], object]:
            return lambda: found.append(
                [s.clip_id for s in similar_clips(conn, pg_schema, clip_id, strategy=strategy, limit=3)]
            )

        assert round_trips(conn, search(single[0])) == 2  # guessed 512 dimensions: 3
        assert round_trips(conn, search(single[3])) == 1
        assert found == [single[1:], [single[2], single[1], single[0]]]
        assert round_trips(conn, search(multi[0], "keyframe_multi")) == 2  # guessed one vector a clip
        assert round_trips(conn, search(multi[5], "keyframe_multi")) == 1
        assert found[2:] == [multi[1:4], [multi[4], multi[3], multi[2]]]  # three clips, not pairs
        assert round_trips(conn, search(single[0])) == 1
        assert found[4] == single[1:]


def test_the_statement_turns_iterative_scans_on_before_the_index_scan_starts(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """The HNSW settings are set by the search's own statement; pgvector reads them at the index scan's
    first tuple. With a small ef_search and a model filter that passes one row in a hundred, only
    iterative scans fill the page."""
    _, (a, _, _) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    embed(pg_app, a, unit(*[1.0] * 16))
    catch_up(pg_app, pg_address)
    rng = random.Random(11)
    rows = [
        (uuid4(), uuid4(), "ViT-T" if i % 100 == 0 else "other", unit(*[rng.gauss(0, 1) for _ in range(16)]))
        for i in range(8000)
    ]
    fill_16d(pg_address, pg_schema, rows)
    with connect(pg_address, autocommit=True) as conn:
        set_search_path(conn, pg_schema)
        found = similar_clips(conn, pg_schema, a, limit=12, ef_search=5)
    same_model = {r[0] for r in rows if r[2] == "ViT-T"}
    assert len(found) == 12 and {s.clip_id for s in found} <= same_model


def exact_order(vectors: dict[UUID, list[float]], probe: UUID, candidates: list[UUID]) -> list[UUID]:
    """``candidates`` nearest first by cosine distance to ``probe``'s vector (float32, as stored)."""

    def stored(v: list[float]) -> list[float]:
        return list(struct.unpack(f"{len(v)}f", struct.pack(f"{len(v)}f", *v)))

    q = stored(vectors[probe])
    return sorted(candidates, key=lambda c: -sum(x * y for x, y in zip(q, stored(vectors[c]), strict=True)))


def index_valid(address: DatabaseAddress, schema: str, dimension: int) -> bool | None:
    with schema_connection(address, schema) as conn:
        row = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            (hnsw_index_name("rm_embeddings", dimension),),
        ).fetchone()
    return None if row is None else bool(row[0])


def test_below_the_threshold_there_is_no_index_and_searches_rank_exactly(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """Fewer vectors of a dimension than INDEX_MIN_ROWS: no HNSW index is built, and every order
    (nearest, least similar, other videos, a page further on) is the exact one."""
    rng = random.Random(3)
    first, clips = clipped_video(pg_app, frame_count=1000, cuts=range(100, 1000, 100))
    _, others = clipped_video(pg_app, frame_count=1000, cuts=range(100, 1000, 100))
    vectors = {c: unit(*[rng.gauss(0, 1) for _ in range(8)]) for c in clips + others}
    for clip_id, vector in vectors.items():
        pg_app.approve(clip_id, REVIEWER)
        embed(pg_app, clip_id, vector)
    catch_up(pg_app, pg_address)
    assert index_valid(pg_address, pg_schema, 8) is None
    probe = clips[0]
    everyone = exact_order(vectors, probe, [c for c in vectors if c != probe])
    with connect(pg_address, autocommit=True) as conn:
        set_search_path(conn, pg_schema)

        def ids(**options: Any) -> list[UUID]:
            return [s.clip_id for s in similar_clips(conn, pg_schema, probe, **options)]

        assert ids(limit=19) == everyone
        assert ids(limit=19, least=True) == everyone[::-1]
        assert ids(limit=5, offset=3) == everyone[3:8]
        assert ids(limit=10, other_videos=True) == exact_order(vectors, probe, others)
        assert ids(limit=10, other_videos=True, least=True) == exact_order(vectors, probe, others)[::-1]
        assert ids(limit=9, video_id=first) == exact_order(vectors, probe, clips[1:])
        assert projections.queries._shapes[(pg_schema, None, None)] == (8, False, False)  # known: unindexed


def test_crossing_the_threshold_builds_the_index_in_the_background(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's batch that brings a dimension to INDEX_MIN_ROWS has its HNSW index built beside it
    (CREATE INDEX CONCURRENTLY, batches going on); searches rank exactly before and use it after."""
    monkeypatch.setattr(projections.similarity, "INDEX_MIN_ROWS", 6)
    rng = random.Random(5)
    _, clips = clipped_video(pg_app, frame_count=1000, cuts=range(100, 1000, 100))
    vectors = {c: unit(*[rng.gauss(0, 1) for _ in range(8)]) for c in clips}
    probe = clips[0]
    with ProjectionDaemon(pg_app, pg_address, poll_interval=0.05):
        for clip_id in clips[:5]:
            pg_app.approve(clip_id, REVIEWER)
            embed(pg_app, clip_id, vectors[clip_id])
        assert wait_for(pg_address, pg_schema, pg_app.recorder.max_notification_id() or 0, timeout=10)
        assert index_valid(pg_address, pg_schema, 8) is None  # 5 vectors: none
        with connect(pg_address, autocommit=True) as conn:
            set_search_path(conn, pg_schema)
            found = [s.clip_id for s in similar_clips(conn, pg_schema, probe)]
        assert found == exact_order(vectors, probe, clips[1:5])
        assert projections.queries._shapes[(pg_schema, None, None)][2] is False
        for clip_id in clips[5:]:
            pg_app.approve(clip_id, REVIEWER)
            embed(pg_app, clip_id, vectors[clip_id])
        assert wait_for(pg_address, pg_schema, pg_app.recorder.max_notification_id() or 0, timeout=10)
        deadline = time.monotonic() + 30
        while not index_valid(pg_address, pg_schema, 8) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index_valid(pg_address, pg_schema, 8) is True
    with connect(pg_address, autocommit=True) as conn:
        set_search_path(conn, pg_schema)
        found = [s.clip_id for s in similar_clips(conn, pg_schema, probe)]
    assert found == exact_order(vectors, probe, clips[1:])  # ten vectors: the index finds them all
    assert projections.queries._shapes[(pg_schema, None, None)][2] is True


def test_a_dimension_without_its_index_reads_only_its_rows(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """A new model's few vectors beside many of another dimension: the exact ranking takes its
    dimension's rows through the (dimension, model, strategy) index, not a scan of the whole table."""
    _, (a, b, _) = clipped_video(pg_app)
    for clip_id, vector in ((a, unit(1, 0, 0)), (b, unit(1, 1, 0))):
        pg_app.approve(clip_id, REVIEWER)
        embed(pg_app, clip_id, vector)
    catch_up(pg_app, pg_address)
    rng = random.Random(13)
    fill_16d(
        pg_address,
        pg_schema,
        [(uuid4(), uuid4(), "ViT-T", unit(*[rng.gauss(0, 1) for _ in range(16)])) for _ in range(8000)],
    )
    with connect(pg_address, autocommit=True) as conn:
        set_search_path(conn, pg_schema)
        params = {"clip_id": a, "model": None, "strategy": None, "video_id": None, "ef_search": "200"}
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN ") + similar_clips_query(pg_schema, 3, False, indexed=False), params
            )
        )
        assert "rm_embeddings_dimension" in plan and "Seq Scan on rm_embeddings" not in plan, plan
        assert [s.clip_id for s in similar_clips(conn, pg_schema, a)] == [b]
        assert projections.queries._shapes[(pg_schema, None, None)] == (3, False, False)
