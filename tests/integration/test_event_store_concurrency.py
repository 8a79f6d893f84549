"""On real PostgreSQL: concurrent reviewers race; every race has one winner and nothing partial is stored."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

from commands.errors import Conflict
from commands.service import HeatersApplication
from domain.errors import DomainError
from domain.partition import check_partition
from tests.helpers import clipped_video

pytestmark = pytest.mark.integration


def race(n: int, action: Callable[[int], object]) -> list[object]:
    """Run ``action(i)`` in n threads released at the same instant; returns results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i: int) -> object:
        barrier.wait()
        try:
            return action(i)
        except (Conflict, DomainError) as error:
            return error

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def events_by_actor(app: HeatersApplication) -> Counter[str]:
    return Counter(getattr(e, "actor", "") for e in app.iter_events())


def test_reviewers_approving_one_clip_at_once_have_one_winner(pg_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(pg_app)
    results = race(8, lambda i: pg_app.approve(a, f"user:r{i}"))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    losers = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, Conflict) or "already approved" in str(r) for r in losers)
    assert all(r.clip_id == a and r.state == "approved" for r in losers if isinstance(r, Conflict))
    assert [e.event for e in pg_app.history(a)].count("Approved") == 1


def test_a_split_racing_a_merge_of_the_same_clip_has_one_winner(pg_app: HeatersApplication) -> None:
    video_id, (_, b, _) = clipped_video(pg_app)
    for _ in range(5):
        results = race(
            2, lambda i: pg_app.split(b, 150, "user:s") if i == 0 else pg_app.merge(b, None, "user:m")
        )
        assert sum(not isinstance(r, Exception) for r in results) == 1
        loser = next(r for r in results if isinstance(r, Exception))
        assert str(b)[:8] in str(loser)
        video = pg_app.get_video(video_id)
        check_partition(video.layout, video.frame_count)
        pg_app.undo(b, "user:cleanup", any_author=True)  # as ops: the winner is s or m
        assert pg_app.get_clip(b).state == "pending_review"


def test_many_reviewers_on_one_video_keep_the_invariant_and_every_event(pg_app: HeatersApplication) -> None:
    video_id, _ = clipped_video(pg_app, frame_count=2000, cuts=range(100, 2000, 100))
    expected_events = {"approve": 1, "skip": 1, "archive": 1, "split": 6, "merge": 5, "group": 2}
    outcomes: list[tuple[str, str, bool]] = []
    lock = threading.Lock()

    def reviewer(worker: int) -> None:
        rng = random.Random(worker)
        for step in range(25):
            layout = pg_app.get_video(video_id).layout
            segment = rng.choice(layout)
            action = rng.choice([*expected_events, "undo"])
            actor = f"user:w{worker}-{step}"
            args: tuple[object, ...] = {
                "split": (segment.start + segment.length // 2,),
                "merge": (None,),
                "group": (None,),
            }.get(action, ())
            try:
                getattr(pg_app, action)(segment.clip_id, *args, actor)
                ok = True
            except (Conflict, DomainError):
                ok = False
            with lock:
                outcomes.append((action, actor, ok))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(reviewer, range(6)))

    video = pg_app.get_video(video_id)
    check_partition(video.layout, video.frame_count)
    for segment in video.layout:
        clip = pg_app.get_clip(segment.clip_id)
        assert clip.is_live and (clip.start, clip.end) == (segment.start, segment.end)

    stored = events_by_actor(pg_app)
    assert sum(ok for *_, ok in outcomes) > 20
    for action, actor, ok in outcomes:
        if not ok:
            assert stored[actor] == 0, f"refused {action} by {actor} stored {stored[actor]} events"
        elif action == "undo":
            assert stored[actor] >= 1
        else:
            assert stored[actor] == expected_events[action], f"{action} by {actor}: {stored[actor]} events"
    # No event lost or duplicated: every aggregate's versions run 1..n without a gap.
    versions: dict[UUID, list[int]] = {}
    for event in pg_app.iter_events():
        versions.setdefault(event.originator_id, []).append(event.originator_version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())


def test_pipeline_results_reported_concurrently_store_one_event(pg_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(pg_app)
    pg_app.approve(a, "user:r")
    results = race(
        6, lambda i: pg_app.record_keyframes(a, "multi", ["k1", "k2", "k3"], [25, 50, 75], f"stage:k{i}")
    )
    assert results.count(True) == 1 and results.count(False) == 5
    assert [e.event for e in pg_app.history(a)].count("KeyframesExtracted") == 1
