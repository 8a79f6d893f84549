"""How commands load aggregates: from the aggregate cache, each load a copy of its own, fast-forwarded
by events stored behind the cache's back (another process); and the log position a command's
events reached (what read-your-writes waits for)."""

from __future__ import annotations

import copy
from uuid import uuid4

import pytest

from commands.errors import NotFound
from commands.service import HeatersApplication, Undone
from domain.partition import Segment
from tests.helpers import clipped_video

ALICE = "user:alice"


def test_a_loaded_aggregate_is_a_copy_of_its_own(memory_app: HeatersApplication) -> None:
    video_id, (a, b, _) = clipped_video(memory_app)
    clip = memory_app.get_clip(a)
    clip.approve(ALICE)  # decided in memory, never saved
    assert memory_app.get_clip(a).state == "pending_review"
    video = memory_app.get_video(video_id)
    video.layout.clear()
    assert memory_app.get_video(video_id).clip_ids()[:2] == [a, b]


def test_loads_see_events_stored_behind_the_cache(memory_app: HeatersApplication) -> None:
    """As when another process stores them: the cached aggregate is fast-forwarded on the next load."""
    _, (a, _, _) = clipped_video(memory_app)
    cached = memory_app.get_clip(a)
    assert cached.state == "pending_review"
    elsewhere = memory_app.repository.get(a, version=cached.version)  # replayed, not from the cache
    elsewhere.approve("user:bob")
    memory_app.save(elsewhere)
    loaded = memory_app.get_clip(a)
    assert (loaded.state, loaded.version) == ("approved", cached.version + 1)


def test_clip_state_reads_the_current_state_without_a_copy(memory_app: HeatersApplication) -> None:
    """The review queue's check of a clip: fast-forwarded like a load, and nothing a later command
    does to its own copy shows in it."""
    video_id, (a, _, _) = clipped_video(memory_app)
    assert memory_app.clip_state(a) == "pending_review"
    elsewhere = memory_app.repository.get(a, version=memory_app.get_clip(a).version)
    elsewhere.approve("user:bob")
    memory_app.save(elsewhere)  # behind the cache's back
    assert memory_app.clip_state(a) == "approved"
    clip = memory_app.get_clip(a)
    clip.undo_decision("user:bob")  # undone in memory, never saved
    assert memory_app.clip_state(a) == "approved"
    with pytest.raises(NotFound):
        memory_app.clip_state(video_id)  # not a clip
    with pytest.raises(NotFound):
        memory_app.clip_state(uuid4())


def test_the_position_of_the_last_command_and_what_an_undo_reversed(memory_app: HeatersApplication) -> None:
    _, (a, b, c) = clipped_video(memory_app)
    memory_app.approve(c, ALICE)
    assert memory_app.saved_position() == memory_app.recorder.max_notification_id()
    merged, partner = memory_app.merge_pair(b, None, ALICE)  # with the previous clip
    assert partner == a
    assert memory_app.saved_position() == memory_app.recorder.max_notification_id()
    undone = memory_app.undo_decision(merged, ALICE)
    assert isinstance(undone, Undone) and (undone.kind, undone.clip_id) == ("merge", a)  # its first clip
    assert (undone.decision["with_clip_id"], undone.decision["into"]) == (b, merged)
    assert [memory_app.get_clip(x).state for x in (a, b)] == ["pending_review", "pending_review"]


def test_a_segment_copy_is_the_segment(memory_app: HeatersApplication) -> None:
    video_id, _ = clipped_video(memory_app)
    segment: Segment = memory_app.get_video(video_id).layout[0]
    assert copy.deepcopy(segment) is segment
