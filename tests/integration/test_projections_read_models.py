"""On real PostgreSQL: every read model reflects the commands (review decisions and pipeline results)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

import projections.similarity
from commands.service import HeatersApplication
from domain.clip import Clip
from infra.database import DatabaseAddress
from projections.base import RowCache
from projections.runner import catch_up, schema_connection
from projections.similarity import hnsw_index_name
from tests.helpers import PIPELINE, clipped_video

pytestmark = pytest.mark.integration

REVIEWER = "user:reviewer"


class ReadModelRows:
    """The read models of the test's schema: caught up on demand and read by plain queries."""

    def __init__(self, app: HeatersApplication, address: DatabaseAddress, schema: str) -> None:
        self.app = app
        self.address = address
        self.schema = schema

    def catch_up(self) -> None:
        catch_up(self.app, self.address)

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with schema_connection(self.address, self.schema) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[call-overload, no-any-return]

    def clip(self, clip_id: UUID) -> dict[str, Any]:
        with schema_connection(self.address, self.schema) as conn:
            cur = conn.execute("SELECT * FROM rm_clips WHERE id = %s", (clip_id,))
            names = [d.name for d in cur.description or ()]
            row = cur.fetchone()
        assert row is not None, f"no rm_clips row for {clip_id}"
        return dict(zip(names, row, strict=True))

    def video_counts(self, video_id: UUID) -> tuple[int, int]:
        ((clip_count, pending_count),) = self.rows(
            "SELECT clip_count, pending_count FROM rm_videos WHERE id = %s", video_id
        )
        return clip_count, pending_count

    def live_clips(self, video_id: UUID, columns: str = "id") -> list[tuple[Any, ...]]:
        """``columns`` of the video's live clips in ``rm_clips``, in frame order."""
        query = f"SELECT {columns} FROM rm_clips WHERE video_id = %s AND live ORDER BY start_frame"
        return self.rows(query, video_id)

    def stats(self) -> dict[tuple[str, str], int]:
        return {(k, s): n for k, s, n in self.rows("SELECT kind, state, count FROM rm_stage_stats")}


@pytest.fixture
def rm(pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str) -> ReadModelRows:
    return ReadModelRows(pg_app, pg_address, pg_schema)


def pipeline_results(app: HeatersApplication, clip_id: UUID, vector: list[float]) -> None:
    app.record_keyframes(clip_id, "multi", [f"k/{clip_id}/0.jpg"], [app.get_clip(clip_id).start], PIPELINE)
    app.record_embedding(clip_id, "ViT-T", "test", "keyframe_multi_avg", [vector], PIPELINE)
    app.record_export(clip_id, f"exports/{clip_id}.mp4", PIPELINE)


def test_video_and_clips_after_shots(pg_app: HeatersApplication, rm: ReadModelRows) -> None:
    video_id, clip_ids = clipped_video(pg_app)
    rm.catch_up()
    ((state, stage, title, frames, media, stages, by),) = rm.rows(
        "SELECT state, current_stage, title, frame_count, media, stages, submitted_by FROM rm_videos WHERE id = %s",
        video_id,
    )
    assert (state, stage, title, frames, by) == ("clipped", None, "test video", 300, "user:tester")
    assert set(media) == {"source", "proxy", "sprites"}
    assert all(s["status"] == "done" for s in stages.values())
    assert rm.video_counts(video_id) == (3, 3)
    live = rm.live_clips(video_id, "id, start_frame, end_frame, state, origin")
    assert live == [
        (clip_ids[0], 0, 100, "pending_review", "shots"),
        (clip_ids[1], 100, 200, "pending_review", "shots"),
        (clip_ids[2], 200, 300, "pending_review", "shots"),
    ]
    assert rm.stats()[("clip", "pending_review")] == 3
    assert rm.stats()[("video", "clipped")] == 1


def test_review_decisions_split_merge_group_and_undo(pg_app: HeatersApplication, rm: ReadModelRows) -> None:
    video_id, (a, b, c) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    pg_app.skip(b, REVIEWER)
    left, right = pg_app.split(c, 250, REVIEWER)
    rm.catch_up()
    assert rm.clip(a)["state"] == "approved"
    assert rm.clip(b)["state"] == "skipped"
    split = rm.clip(c)
    assert (split["state"], split["live"]) == ("split", False)
    child = rm.clip(left)
    assert (child["origin"], child["parent_ids"], child["start_frame"], child["end_frame"]) == (
        "split",
        [c],
        200,
        250,
    )
    assert rm.video_counts(video_id) == (4, 2)  # a approved, b skipped

    merged = pg_app.merge(right, left, REVIEWER)
    pg_app.group(b, a, "user:grouper")
    rm.catch_up()
    assert rm.video_counts(video_id) == (3, 1)
    m = rm.clip(merged)
    assert (m["origin"], sorted(m["parent_ids"]), m["state"]) == (
        "merge",
        sorted([left, right]),
        "pending_review",
    )
    assert rm.clip(left)["live"] is False
    grouped = rm.clip(b)
    assert (grouped["state"], grouped["grouped_with"], grouped["last_actor"]) == (
        "approved",
        [a],
        "user:grouper",
    )
    assert rm.clip(a)["grouped_with"] == [b]

    pg_app.undo(b, "user:grouper")  # the grouping (only its author, or ops, undoes it)
    pg_app.undo(merged, REVIEWER)  # the merge
    pg_app.undo(left, REVIEWER)  # the split (left has no decision of its own)
    rm.catch_up()
    assert (
        rm.clip(b)["state"],
        rm.clip(b)["grouped_with"],
    ) == (
        "skipped",
        [],
    )
    assert rm.clip(a)["grouped_with"] == []
    assert rm.clip(merged)["state"] == "retired"
    assert (rm.clip(c)["state"], rm.clip(c)["live"]) == (
        "pending_review",
        True,
    )
    assert rm.clip(left)["state"] == "retired"
    assert rm.video_counts(video_id) == (3, 1)
    live = rm.live_clips(video_id)
    assert [r[0] for r in live] == [a, b, c]
    s = rm.stats()
    assert s[("clip", "approved")] == 1 and s[("clip", "skipped")] == 1 and s[("clip", "pending_review")] == 1
    assert s[("clip", "retired")] == 3 and ("clip", "split") not in s and ("clip", "merged") not in s


def test_pipeline_results_failures_retry_and_undo_of_approval(
    pg_app: HeatersApplication, rm: ReadModelRows
) -> None:
    video_id, (a, b, _) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    pg_app.approve(b, REVIEWER)
    pg_app.record_clip_failure(b, "keyframes", 1, "ffmpeg exploded", PIPELINE)
    pipeline_results(pg_app, a, [1.0, 0.0, 0.0])
    rm.catch_up()
    ra = rm.clip(a)
    assert ra["state"] == "exported" and ra["export_key"] == f"exports/{a}.mp4"
    assert ra["keyframes"]["keys"] == [f"k/{a}/0.jpg"]
    rb = rm.clip(b)
    assert (rb["failed_stage"], rb["failure_reason"]) == ("keyframes", "ffmpeg exploded")
    assert rm.stats()[("clip_stage_failed", "keyframes")] == 1
    assert rm.stats()[("clip_failures", "keyframes")] == 1
    assert rm.rows("SELECT clip_id, video_id, dimension, live FROM rm_embeddings") == [(a, video_id, 3, True)]

    pg_app.request_retry(b, REVIEWER)
    pg_app.undo(a, REVIEWER)  # undo the approval: keyframes, embedding and export are cleared
    rm.catch_up()
    rb = rm.clip(b)
    assert (rb["failed_stage"], rb["failure_reason"]) == (None, None)
    assert ("clip_stage_failed", "keyframes") not in rm.stats()
    ra = rm.clip(a)
    assert (ra["state"], ra["keyframes"], ra["export_key"]) == ("pending_review", {}, None)
    assert rm.rows("SELECT count(*) FROM rm_embeddings") == [(0,)]
    assert rm.video_counts(video_id) == (3, 2)


def test_embeddings_follow_split_and_its_undo(
    pg_app: HeatersApplication, rm: ReadModelRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (a, _, _) = clipped_video(pg_app)
    pg_app.approve(a, REVIEWER)
    pipeline_results(pg_app, a, [0.0, 1.0])
    # Logs from before a split needed the clip awaiting review hold splits of embedded clips: the
    # projection still follows them.
    monkeypatch.setattr(Clip, "require_reviewable", lambda self, action, actor: None)
    pg_app.split(a, 50, REVIEWER)
    monkeypatch.undo()
    monkeypatch.setattr(projections.similarity, "INDEX_MIN_ROWS", 1)  # indexed from its first vector
    rm.catch_up()
    assert rm.rows("SELECT live FROM rm_embeddings WHERE clip_id = %s", a) == [(False,)]
    pg_app.undo(a, REVIEWER)
    rm.catch_up()
    assert rm.rows("SELECT live FROM rm_embeddings WHERE clip_id = %s", a) == [(True,)]
    indexes = rm.rows("SELECT indexname FROM pg_indexes WHERE schemaname = %s", rm.schema)
    assert (hnsw_index_name("rm_embeddings", 2),) in indexes


def test_history_has_every_event_with_json_payloads(pg_app: HeatersApplication, rm: ReadModelRows) -> None:
    video_id, (a, b, _) = clipped_video(pg_app)
    pg_app.group(b, a, REVIEWER)
    rm.catch_up()
    total = sum(1 for _ in pg_app.iter_events())
    assert rm.rows("SELECT count(*), max(position) FROM rm_history") == [(total, total)]
    ((kind, event, actor, payload),) = rm.rows(
        "SELECT kind, event, actor, payload FROM rm_history WHERE aggregate_id = %s AND event = 'Grouped'",
        b,
    )
    assert (kind, event, actor, payload) == ("clip", "Grouped", REVIEWER, {"with_clip_id": str(a)})
    ((shots,),) = rm.rows(
        "SELECT payload FROM rm_history WHERE aggregate_id = %s AND event = 'ShotsDetected'",
        video_id,
    )
    assert shots["clips"][0]["clip_id"] == str(a)
    assert [e.event for e in pg_app.history(a)] == [
        r[0] for r in rm.rows("SELECT event FROM rm_history WHERE aggregate_id = %s ORDER BY version", a)
    ]


def test_embeddings_of_every_event_version_reach_the_read_models(
    pg_app: HeatersApplication, rm: ReadModelRows
) -> None:
    """A version-1 Embedded (JSON floats, stored before compact vectors) and version-2 ones (float32 and
    float16 bytes) give the same vectors in rm_embeddings and a summary in rm_history."""
    _, (a, b, c) = clipped_video(pg_app)
    old, half = [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]
    for clip_id in (a, b, c):
        pg_app.approve(clip_id, REVIEWER)
        pg_app.record_keyframes(
            clip_id, "multi", [f"k/{clip_id}/0.jpg"], [pg_app.get_clip(clip_id).start], PIPELINE
        )
    pg_app.record_embedding(a, "ViT-T", "test", "keyframe_multi", [old, half], PIPELINE)
    clip = pg_app.get_clip(b)
    clip.record_embedding("ViT-T", "test", "keyframe_multi", [half], PIPELINE, dtype="float16")
    pg_app.save(clip)
    pg_app.record_embedding(c, "ViT-T", "test", "keyframe_multi", [[0.1] * 3], PIPELINE)
    with schema_connection(rm.address, rm.schema) as conn:  # rewrite a's event as version 1 stored it
        ((state,),) = conn.execute(
            "SELECT state FROM heaters_events WHERE originator_id = %s AND topic = 'heaters.clip:Embedded'",
            (a,),
        ).fetchall()
        legacy = json.loads(bytes(state))
        del legacy["class_version"], legacy["dtype"]
        legacy["vectors"] = [old, half]
        conn.execute(
            "UPDATE heaters_events SET state = %s WHERE originator_id = %s AND topic = 'heaters.clip:Embedded'",
            (json.dumps(legacy).encode(), a),
        )
        conn.commit()
    rm.catch_up()
    found = rm.rows(
        "SELECT clip_id, vector_index, embedding::text FROM rm_embeddings ORDER BY clip_id = %s DESC, vector_index",
        a,
    )
    by_clip = {(clip_id, i): [float(x) for x in text.strip("[]").split(",")] for clip_id, i, text in found}
    assert by_clip[(a, 0)] == pytest.approx(old) and by_clip[(a, 1)] == pytest.approx(half)
    assert by_clip[(b, 0)] == pytest.approx(half, abs=1e-3)
    assert by_clip[(c, 0)] == pytest.approx([0.1] * 3)
    summaries = dict(
        rm.rows(
            "SELECT aggregate_id, payload->'vectors' FROM rm_history WHERE event = 'Embedded'",
        )
    )
    assert summaries == {
        a: {"count": 2, "dimension": 3, "dtype": "float32"},
        b: {"count": 1, "dimension": 3, "dtype": "float16"},
        c: {"count": 1, "dimension": 3, "dtype": "float32"},
    }


def test_a_row_cache_writes_every_column_type_back_as_it_reads_it(
    pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """Rows go to PostgreSQL as one JSON array of arrays, each value read by its column's type:
    arrays (quotes, backslashes, NULLs inside), jsonb (a JSON null inside it, none at all), times,
    floats. Inserted, then updated, each reads back as written."""
    columns = ("id", "tags", "ids", "doc", "at", "ratio", "flag")
    first = {
        "id": UUID(int=1),
        "tags": ['say "hi"', "back\\slash", None, "{braces}, commas", "NULL"],
        "ids": [UUID(int=2), UUID(int=3)],
        "doc": {"a": None, "b": [1, "x"]},
        "at": datetime(2026, 11, 27, 17, 0, 0, 123456, tzinfo=UTC),
        "ratio": 0.1 + 0.2,
        "flag": True,
    }
    second = {
        "id": UUID(int=4),
        "tags": [],
        "ids": None,
        "doc": None,
        "at": None,
        "ratio": None,
        "flag": None,
    }
    with schema_connection(pg_address, pg_schema) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE cached (id uuid PRIMARY KEY, tags text[], ids uuid[], doc jsonb, at timestamptz, "
            "ratio double precision, flag boolean)"
        )
        cache = RowCache("cached", "id", columns)
        for row in (first, second):
            cache.put(row["id"], dict(row))
        cache.flush(cur)
        cache.clear()
        cache.load(cur, [UUID(int=1), UUID(int=4)])
        assert cache.get(UUID(int=1)) == first
        assert cache.get(UUID(int=4)) == second
        cache.edit(UUID(int=1))["tags"] = ["changed"]
        cache.flush(cur)
        ((tags, doc),) = cur.execute("SELECT tags, doc FROM cached WHERE id = %s", (UUID(int=1),)).fetchall()
        assert (tags, doc) == (["changed"], first["doc"])
