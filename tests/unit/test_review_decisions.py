"""Review decisions, as a reviewer makes them through the application service."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from commands.errors import Conflict, NotFound
from commands.service import HeatersApplication
from domain.errors import DomainError
from tests.helpers import clipped_video, live_layout

ALICE = "user:alice"


def states(app: HeatersApplication, video_id: UUID) -> list[tuple[int, int, str]]:
    return [(c.start, c.end, c.state) for c in app.clips_of(video_id)]


def test_clips_start_pending_review_covering_the_video(memory_app: HeatersApplication) -> None:
    video_id, _ = clipped_video(memory_app)
    assert states(memory_app, video_id) == [
        (0, 100, "pending_review"),
        (100, 200, "pending_review"),
        (200, 300, "pending_review"),
    ]


def test_approve_skip_archive(memory_app: HeatersApplication) -> None:
    _, (a, b, c) = clipped_video(memory_app)
    memory_app.approve(a, ALICE)
    memory_app.skip(b, ALICE)
    memory_app.archive(c, ALICE)
    assert [memory_app.get_clip(x).state for x in (a, b, c)] == ["approved", "skipped", "archived"]
    memory_app.approve(b, ALICE)  # a skipped clip can still be decided
    assert memory_app.get_clip(b).state == "approved"


def test_approving_an_archived_clip_is_refused(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    memory_app.archive(a, ALICE)
    with pytest.raises(Conflict, match=r"it was archived by you at .* UTC; undo that first"):
        memory_app.approve(a, ALICE)
    assert memory_app.get_clip(a).state == "archived"


def test_split_replaces_a_clip_by_two(memory_app: HeatersApplication) -> None:
    video_id, (a, _, _) = clipped_video(memory_app)
    left, right = memory_app.split(a, 40, ALICE)
    assert [(s, e) for s, e, _ in live_layout(memory_app, video_id)] == [
        (0, 40),
        (40, 100),
        (100, 200),
        (200, 300),
    ]
    assert memory_app.get_clip(a).state == "split"
    assert memory_app.get_clip(left).parent_ids == [a]
    assert memory_app.get_clip(right).state == "pending_review"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (0, "strictly inside"),
        (100, "strictly inside"),
        (150, "strictly inside"),
        (1, "at least 3 frames"),
        (98, "at least 3 frames"),
    ],
)
def test_split_outside_the_clip_or_too_near_an_edge_is_refused(
    memory_app: HeatersApplication, frame: int, message: str
) -> None:
    video_id, (a, _, _) = clipped_video(memory_app)
    before = live_layout(memory_app, video_id)
    with pytest.raises(DomainError, match=message):
        memory_app.split(a, frame, ALICE)
    assert live_layout(memory_app, video_id) == before


def test_merge_with_previous_and_by_id(memory_app: HeatersApplication) -> None:
    video_id, (a, b, c) = clipped_video(memory_app)
    merged = memory_app.merge(b, None, ALICE)
    assert [(s, e) for s, e, _ in live_layout(memory_app, video_id)] == [(0, 200), (200, 300)]
    assert memory_app.get_clip(merged).parent_ids == [a, b]
    _, (x, _, z) = clipped_video(memory_app)
    with pytest.raises(DomainError, match="not adjacent"):
        memory_app.merge(x, z, ALICE)
    with pytest.raises(DomainError, match="first clip"):
        memory_app.merge(merged, None, ALICE)
    assert memory_app.merge(c, merged, ALICE)


def test_merging_clips_of_different_videos_is_refused(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    _, (_, y, _) = clipped_video(memory_app)
    with pytest.raises(DomainError, match="different videos"):
        memory_app.merge(a, y, ALICE)


def test_group_links_both_clips_and_approves_the_current(memory_app: HeatersApplication) -> None:
    _, (a, b, c) = clipped_video(memory_app)
    memory_app.approve(a, ALICE)
    assert memory_app.group(b, None, ALICE) == a
    clip_a, clip_b = memory_app.get_clip(a), memory_app.get_clip(b)
    assert clip_b.state == "approved" and clip_a.state == "approved"
    assert clip_a.grouped_with == {b} and clip_b.grouped_with == {a}
    assert memory_app.group(c, None, ALICE) == b
    assert memory_app.get_clip(b).grouped_with == {a, c}


def test_undo_reverses_each_kind_of_decision(memory_app: HeatersApplication) -> None:
    video_id, (a, b, c) = clipped_video(memory_app)
    original = live_layout(memory_app, video_id)
    memory_app.approve(a, ALICE)
    assert memory_app.undo(a, ALICE) == "approve"
    assert memory_app.get_clip(a).state == "pending_review"

    left, right = memory_app.split(a, 50, ALICE)
    assert memory_app.undo(right, ALICE) == "split"  # undo from a child undoes the split that made it
    assert live_layout(memory_app, video_id) == original
    assert memory_app.get_clip(left).state == "retired"

    merged = memory_app.merge(c, None, ALICE)
    assert memory_app.undo(merged, ALICE) == "merge"
    assert live_layout(memory_app, video_id) == original

    memory_app.approve(a, ALICE)
    memory_app.group(b, a, ALICE)
    assert memory_app.undo(b, ALICE) == "group"
    assert memory_app.get_clip(a).grouped_with == set() and memory_app.get_clip(b).state == "pending_review"


def test_undo_refuses_when_a_later_decision_depends_on_it(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    left, _ = memory_app.split(a, 50, ALICE)
    memory_app.approve(left, ALICE)
    with pytest.raises(Conflict, match=f"clip {str(left)[:8]} was approved by you at .*; undo that first"):
        memory_app.undo(a, ALICE)
    memory_app.undo(left, ALICE)
    memory_app.undo(a, ALICE)
    assert memory_app.get_clip(a).state == "pending_review"


def test_undo_with_nothing_to_undo(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    with pytest.raises(DomainError, match="nothing to undo"):
        memory_app.undo(a, ALICE)


def test_history_is_kept_through_undo(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    memory_app.approve(a, ALICE)
    memory_app.undo(a, "user:olga", any_author=True)  # ops may undo anyone's decision
    events = [(e.event, e.actor) for e in memory_app.history(a)]
    assert events[-2:] == [("Approved", ALICE), ("DecisionUndone", "user:olga")]


@pytest.mark.parametrize("bad", ["", "nonsense", "1234", str(uuid4()), 42, None])
def test_bad_ids_give_clear_errors_and_store_nothing(memory_app: HeatersApplication, bad: object) -> None:
    clipped_video(memory_app)
    before = memory_app.recorder.max_notification_id()
    with pytest.raises((ValueError, NotFound)) as error:
        memory_app.approve(bad, ALICE)
    assert "id" in str(error.value)
    assert memory_app.recorder.max_notification_id() == before


@pytest.mark.parametrize("frame", ["50", 50.5, None, True])
def test_split_frame_must_be_an_integer(memory_app: HeatersApplication, frame: object) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    with pytest.raises(ValueError, match="frame must be an integer"):
        memory_app.split(a, frame, ALICE)  # type: ignore[arg-type]


def test_a_video_id_is_not_a_clip_id(memory_app: HeatersApplication) -> None:
    video_id, _ = clipped_video(memory_app)
    with pytest.raises(NotFound, match="no clip with id"):
        memory_app.approve(video_id, ALICE)


def test_pipeline_results_on_clips_are_idempotent(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    with pytest.raises(DomainError, match="only for approved clips"):
        memory_app.record_keyframes(a, "multi", ["k1"], [10], "stage:keyframes")
    memory_app.approve(a, ALICE)
    assert memory_app.record_keyframes(a, "multi", ["k1", "k2"], [10, 50], "stage:keyframes") is True
    assert memory_app.record_keyframes(a, "multi", ["k1", "k2"], [10, 50], "stage:keyframes") is False
    assert memory_app.record_embedding(
        a, "ViT-B-32", "openai", "keyframe_multi_avg", [[0.6, 0.8]], "stage:embed"
    )
    assert not memory_app.record_embedding(
        a, "ViT-B-32", "openai", "keyframe_multi_avg", [[0.6, 0.8]], "stage:embed"
    )
    assert memory_app.get_clip(a).state == "embedded"
    kinds = [e.event for e in memory_app.history(a)]
    assert kinds.count("KeyframesExtracted") == 1 and kinds.count("Embedded") == 1
