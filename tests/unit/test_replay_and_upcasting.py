"""Stored history is the truth: replay rebuilds identical aggregates, and old event versions upcast."""

from __future__ import annotations

import json
import math
import random
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from commands.service import HeatersApplication
from domain.clip import Clip
from domain.errors import DomainError
from domain.vectors import decode_vectors, encode_vectors, vector_count
from tests.helpers import PIPELINE, assert_replay_rebuilds, clipped_video, version_one_clip_created


def test_replay_rebuilds_identical_aggregates(memory_app: HeatersApplication) -> None:
    video_id, (a, b, c) = clipped_video(memory_app)
    memory_app.approve(a, "user:alice")
    left, _ = memory_app.split(b, 150, "user:alice")
    memory_app.merge(c, None, "user:bob")
    memory_app.undo(c, "user:bob")
    for aggregate_id in (video_id, a, b, c, left):
        assert_replay_rebuilds(memory_app, aggregate_id, memory_app.repository.get(aggregate_id))


def test_version_one_clip_created_events_upcast(memory_app: HeatersApplication) -> None:
    """Clips stored before origin and parents existed read back as clips of detected shots."""
    clip_id, video_id = uuid4(), uuid4()
    state = version_one_clip_created(video_id)
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


def _embedded_clip(app: HeatersApplication, vectors: list[list[float]], dtype: str = "float32") -> Clip:
    _, (clip_id, _, _) = clipped_video(app)
    app.approve(clip_id, "user:alice")
    app.record_keyframes(clip_id, "multi", [f"k/{clip_id}/0.jpg"], [0], PIPELINE)
    clip = app.get_clip(clip_id)
    clip.record_embedding("ViT-B-32", "openai", "keyframe_multi", vectors, PIPELINE, dtype=dtype)
    app.save(clip)
    return app.get_clip(clip_id)


def _unit_vectors(count: int, dimension: int, seed: int = 3) -> list[list[float]]:
    rng = random.Random(seed)
    vectors = []
    for _ in range(count):
        v = [rng.gauss(0, 1) for _ in range(dimension)]
        norm = math.sqrt(sum(x * x for x in v))
        vectors.append([x / norm for x in v])
    return vectors


def _v1_state(stored: StoredEvent, vectors: list[list[float]]) -> StoredEvent:
    """The event as version 1 stored it: vectors as JSON float lists, no class_version, no dtype."""
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["dtype"]
    state["vectors"] = vectors
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )


def test_version_one_embedded_events_upcast(memory_app: HeatersApplication) -> None:
    """Embeddings stored as JSON floats read back as float32 bytes with the same values."""
    vectors = _unit_vectors(2, 512)
    clip = _embedded_clip(memory_app, vectors)
    stored = list(memory_app.recorder.select_events(clip.id))
    other = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    other.recorder.insert_events(
        [_v1_state(e, vectors) if e.topic == "heaters.clip:Embedded" else e for e in stored]
    )
    replayed = other.get_clip(clip.id)
    assert replayed.state == "embedded" and replayed.embedding["dimension"] == 512
    (event,) = [e for e in other.events.get(clip.id) if isinstance(e, Clip.Embedded)]
    assert (event.dtype, event.dimension) == ("float32", 512)
    decoded = event.vector_list()
    assert len(decoded) == 2
    for got, want in zip(decoded, vectors, strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)  # float32 of the same values
    assert Clip.Embedded.class_version == 2
    other.close()


def test_embedded_vectors_are_stored_compactly(memory_app: HeatersApplication) -> None:
    """Event-store bytes per embedded clip (one 512-d CLIP vector): JSON floats vs float32/float16."""
    vectors = _unit_vectors(1, 512)
    sizes = {}
    for dtype in ("float32", "float16"):
        clip = _embedded_clip(memory_app, vectors, dtype)
        (stored,) = [e for e in memory_app.recorder.select_events(clip.id) if e.topic.endswith(":Embedded")]
        sizes[dtype] = len(stored.state)
        (event,) = [e for e in memory_app.events.get(clip.id) if isinstance(e, Clip.Embedded)]
        tolerance = 1e-7 if dtype == "float32" else 1e-3
        assert event.vector_list()[0] == pytest.approx(vectors[0], abs=tolerance)
    sizes["json_floats_v1"] = len(_v1_state(stored, vectors).state)
    print(f"\nevent-store bytes per embedded clip (512-d): {sizes}")
    assert sizes["float32"] < sizes["json_floats_v1"] / 3
    assert sizes["float16"] < sizes["float32"] * 0.6


@pytest.mark.parametrize(
    ("vectors", "dtype", "message"),
    [
        ([], "float32", "non-empty"),
        ([[1.0, 0.0], [1.0]], "float32", "one dimension"),
        ([[float("nan"), 0.0]], "float32", "finite"),
        ([[1e6, 0.0]], "float16", "do not fit in float16"),
        ([[1.0, 0.0]], "float64", "unknown vector dtype"),
    ],
)
def test_bad_embedding_vectors_are_refused_naming_the_clip(
    memory_app: HeatersApplication, vectors: list[list[float]], dtype: str, message: str
) -> None:
    _, (clip_id, _, _) = clipped_video(memory_app)
    memory_app.approve(clip_id, "user:alice")
    memory_app.record_keyframes(clip_id, "multi", [f"k/{clip_id}/0.jpg"], [0], PIPELINE)
    clip = memory_app.get_clip(clip_id)
    with pytest.raises(DomainError, match=message) as raised:
        clip.record_embedding("ViT-B-32", "openai", "keyframe_multi", vectors, PIPELINE, dtype=dtype)
    assert str(clip_id) in str(raised.value)


def test_compact_vectors_round_trip_and_refuse_torn_data() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.0, 1.0, -1.0]]
    for dtype in ("float32", "float16"):
        data = encode_vectors(vectors, dtype)
        assert decode_vectors(data, dtype, 3) == vectors  # exactly representable in both
        assert vector_count(data, dtype, 3) == 2
    with pytest.raises(DomainError, match="not whole vectors"):
        decode_vectors(encode_vectors(vectors, "float32"), "float32", 4)
