"""The review queue's query (``web.leases.QUEUE_QUERY``) serves clips in the documented order: pending
before skipped (longest skipped first), the ``after`` video's later clips first, then by video (oldest
submitted) and frame; never a clip leased to someone else, one in ``skip``, decided or retired. Checked
against that order computed in Python from the read models' rows, over decisions, splits, merges,
skips and other reviewers' leases."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest

from commands.service import HeatersApplication
from domain.stages import ClipState
from infra.database import DatabaseAddress
from projections.runner import catch_up
from tests.helpers import clipped_video
from web.leases import QUEUE_QUERY
from web.readmodels import ReadModels

pytestmark = pytest.mark.integration

REVIEWER = "user:tester"


def _expected(
    rm: ReadModels, me: str, n: int, skip: list[UUID], video: UUID | None, frame: int
) -> list[tuple[UUID, bool]]:
    clips = rm.all("SELECT c.*, v.submitted_at FROM rm_clips c JOIN rm_videos v ON v.id = c.video_id")
    leases = {
        r["clip_id"]: r for r in rm.all("SELECT *, expires_at > now() AS live_lease FROM review_leases")
    }
    waiting = []
    for c in clips:
        lease = leases.get(c["id"])
        free = lease is None or not lease["live_lease"] or lease["reviewer"] == me
        awaiting = c["live"] and c["state"] in (ClipState.PENDING_REVIEW, ClipState.SKIPPED)
        if awaiting and free and c["id"] not in skip:
            waiting.append((c, lease is not None and lease["reviewer"] == me and lease["live_lease"]))

    def key(item: tuple[dict[str, Any], bool]) -> tuple[Any, ...]:
        c = item[0]
        skipped = c["state"] == ClipState.SKIPPED
        after = video is not None and c["video_id"] == video and c["start_frame"] >= frame
        updated: datetime | None = c["updated_at"] if skipped else None
        return (
            skipped,
            updated or datetime.min,
            not after,
            c["submitted_at"],
            c["video_id"],
            c["start_frame"],
        )

    return [(c["id"], mine) for c, mine in sorted(waiting, key=key)[:n]]


def test_queue_query_serves_the_review_order(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    rng = random.Random(7)
    videos = []
    for _ in range(4):
        video_id, clip_ids = clipped_video(pg_app, 1000, cuts=range(100, 1000, 100))
        videos.append((video_id, clip_ids))
    first, clips = videos[0]
    pg_app.approve(clips[0], REVIEWER)
    pg_app.skip(clips[1], REVIEWER)
    pg_app.split(clips[2], 250, REVIEWER)
    pg_app.merge_pair(clips[5], clips[4], REVIEWER)
    for _video, ids in videos[1:]:
        for clip_id in rng.sample(ids, 4):
            rng.choice([pg_app.approve, pg_app.skip, pg_app.archive])(clip_id, REVIEWER)
    catch_up(pg_app, pg_address)
    rm = ReadModels(pg_address, pg_schema)
    rm.open()
    try:
        live = [r["id"] for r in rm.all("SELECT id FROM rm_clips WHERE live ORDER BY id")]
        # leases on clips awaiting review, so that every reviewer holds live ones (clip ids are random:
        # drawn from every live clip, the caller's live leases sometimes all fell on decided clips)
        awaiting = [
            r["id"]
            for r in rm.all(
                "SELECT id FROM rm_clips WHERE live AND state = ANY(%s) ORDER BY id",
                ([ClipState.PENDING_REVIEW, ClipState.SKIPPED],),
            )
        ]
        with rm.connection() as conn:
            for i, clip_id in enumerate(rng.sample(awaiting, 12)):
                conn.execute(
                    "INSERT INTO review_leases (clip_id, reviewer, expires_at, opened) "
                    "VALUES (%s, %s, now() + make_interval(secs => %s), false)",
                    (clip_id, ["rita", "rob", "rae"][i % 3], [-5, 60][i % 2]),
                )
        cases = [("rita", n, [], None, 0) for n in (1, 4, 40)]
        cases += [("rob", 3, rng.sample(live, 5), None, 0), ("rae", 10, [], first, 0)]
        cases += [("rita", 5, [], video_id, 500) for video_id, _ in videos]
        cases += [("rob", 40, rng.sample(live, 20), videos[2][0], 300), ("rae", 40, live[:-3], None, 0)]
        for me, n, skip, video, frame in cases:
            got = [
                (r["id"], bool(r["mine"]))
                for r in rm.all(QUEUE_QUERY, {"skip": skip, "me": me, "n": n, "video": video, "frame": frame})
            ]
            assert got == _expected(rm, me, n, skip, video, frame), (me, n, video, frame)
        # the cases cover clips leased to the caller, to others (live and lapsed) and skipped ones
        everything = _expected(rm, "rita", 1000, [], None, 0)
        assert any(mine for _, mine in everything)
        assert len(everything) < len(live) - 3
        assert rm.one("SELECT count(*) AS n FROM rm_clips WHERE state = %s AND live", (ClipState.SKIPPED,))
    finally:
        rm.close()
