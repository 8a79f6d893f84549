"""Stored history is the truth: replay rebuilds identical aggregates, and old event versions upcast."""

from __future__ import annotations

import json
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from commands.service import HeatersApplication
from domain.clip import Clip
from tests.helpers import clipped_video


def test_replay_rebuilds_identical_aggregates(memory_app: HeatersApplication) -> None:
    video_id, (a, b, c) = clipped_video(memory_app)
    memory_app.approve(a, "user:alice")
    left, _ = memory_app.split(b, 150, "user:alice")
    memory_app.merge(c, None, "user:bob")
    memory_app.undo(c, "user:bob")
    for aggregate_id in (video_id, a, b, c, left):
        live = memory_app.repository.get(aggregate_id)
        events = list(memory_app.events.get(aggregate_id))
        replayed = None
        for event in events:
            replayed = event.mutate(replayed)  # type: ignore[attr-defined]
        assert replayed == live
        assert replayed.version == len(events)
        assert replayed.modified_on == events[-1].timestamp  # type: ignore[attr-defined]


def test_version_one_clip_created_events_upcast(memory_app: HeatersApplication) -> None:
    """Clips stored before origin and parents existed read back as clips of detected shots."""
    clip_id, video_id = uuid4(), uuid4()
    state = {
        "originator_topic": "heaters.clip:Clip",
        "video_id": {"_type_": "uuid_hex", "_data_": video_id.hex},
        "start": 0,
        "end": 50,
        "actor": "stage:shots",
        "timestamp": {"_type_": "datetime_iso", "_data_": "2025-06-01T12:00:00+00:00"},
    }
    memory_app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=clip_id,
                originator_version=1,
                topic="heaters.clip:Created",
                state=json.dumps(state).encode(),
            )
        ]
    )
    clip = memory_app.get_clip(clip_id)
    assert isinstance(clip, Clip)
    assert (clip.origin, clip.parent_ids, clip.video_id, clip.start, clip.end) == (
        "shots",
        [],
        video_id,
        0,
        50,
    )
    assert Clip.Created.class_version == 2


def test_history_as_of_a_version_and_a_time(memory_app: HeatersApplication) -> None:
    _, (a, _, _) = clipped_video(memory_app)
    memory_app.approve(a, "user:alice")
    approved_at = memory_app.get_clip(a).modified_on
    memory_app.undo(a, "user:alice")
    memory_app.archive(a, "user:alice")
    assert memory_app.state_at(a, 3).state == "approved"
    assert memory_app.version_at(a, approved_at) == 3
    assert memory_app.get_clip(a).state == "archived"


def test_version_one_proxy_created_events_upcast(memory_app: HeatersApplication) -> None:
    """Proxies stored before the proxy's own frame count existed had the source's count."""
    video_id = clipped_video(memory_app)[0]
    stored = list(memory_app.recorder.select_events(video_id))
    proxy = next(e for e in stored if e.topic == "heaters.video:ProxyCreated")
    state = json.loads(proxy.state)
    assert state.pop("class_version") == 2
    del state["frame_count"]
    legacy = StoredEvent(
        proxy.originator_id, proxy.originator_version, proxy.topic, json.dumps(state).encode()
    )
    other = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    other.recorder.insert_events([e if e is not proxy else legacy for e in stored])
    video = other.get_video(video_id)
    assert video.frame_count == 300 and video.state == "clipped"
    other.close()
