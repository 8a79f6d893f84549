"""The log follower's decoder of stored events gives exactly what the application's mapper gives:
the same event class and the same fields for every event a video and its clips go through, stored
versions that are upcast included; what the fast path cannot read, the mapper decodes (so its errors
are the mapper's)."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from commands.service import HeatersApplication
from domain.clip import Clip
from domain.video import Video
from infra.stored_events import StoredEventDecoder
from tests.helpers import PIPELINE, clipped_video, version_one_clip_created


class _NoMapper:
    """Stands in for the mapper where the decoder must not need it."""

    def to_domain_event(self, stored: StoredEvent) -> Any:
        raise AssertionError(f"the mapper was asked to decode {stored.topic}")


def _decoded_alike(app: HeatersApplication, stored: StoredEvent, *, fast: bool = False) -> Any:
    """The decoder's event for ``stored``, after checking it is the mapper's (and, with ``fast``,
    that the decoder made it without the mapper)."""
    expected = app.mapper.to_domain_event(stored)
    decoder = StoredEventDecoder(app.mapper)
    if fast:
        assert decoder.fast
        decoder.mapper = _NoMapper()  # type: ignore[assignment]
    got = decoder.decode(stored)
    assert type(got) is type(expected)
    assert vars(got) == vars(expected)
    assert {k: type(v) for k, v in vars(got).items()} == {k: type(v) for k, v in vars(expected).items()}
    return got


def _with_state(stored: StoredEvent, state: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )


def test_every_event_of_a_reviewed_video_decodes_as_the_mapper_decodes_it(
    memory_app: HeatersApplication,
) -> None:
    _, (a, b, c) = clipped_video(memory_app)
    memory_app.approve(a, "user:alice")
    memory_app.record_keyframes(a, "multi", [f"k/{a}/0.jpg"], [0], PIPELINE)
    clip = memory_app.get_clip(a)
    clip.record_embedding("ViT-B-32", "openai", "keyframe_multi", [[0.6, 0.8], [1.0, 0.0]], PIPELINE)
    memory_app.save(clip)
    memory_app.split(b, 150, "user:alice")
    memory_app.merge(c, None, "user:bob")
    memory_app.undo(c, "user:bob")
    stored = list(memory_app.recorder.select_notifications(1, 1000))
    topics = {s.topic for s in stored}
    assert {Video.Created.TOPIC, Clip.Created.TOPIC, Clip.Embedded.TOPIC, Clip.Split.TOPIC} <= topics
    for event in stored:
        _decoded_alike(memory_app, event, fast=True)


def test_stored_version_one_events_are_upcast_as_the_mapper_upcasts_them(
    memory_app: HeatersApplication,
) -> None:
    """Clip.Created without origin and parents, ProxyCreated without its frame count, Embedded with
    its vectors as JSON floats (before they were stored as base64 float32)."""
    video_id, (clip_id, _, _) = clipped_video(memory_app)
    memory_app.approve(clip_id, "user:alice")
    memory_app.record_keyframes(clip_id, "multi", [f"k/{clip_id}/0.jpg"], [0], PIPELINE)
    clip = memory_app.get_clip(clip_id)
    vectors = [[0.6, 0.8], [0.28, 0.96]]
    clip.record_embedding("ViT-B-32", "openai", "keyframe_multi", vectors, PIPELINE)
    memory_app.save(clip)
    stored = {s.topic: s for s in memory_app.recorder.select_notifications(1, 1000)}

    created = _decoded_alike(
        memory_app, _with_state(stored[Clip.Created.TOPIC], version_one_clip_created(video_id)), fast=True
    )
    assert (created.origin, created.parent_ids) == ("shots", [])

    proxy_state = json.loads(stored[Video.ProxyCreated.TOPIC].state)
    del proxy_state["class_version"], proxy_state["frame_count"]
    proxy = _decoded_alike(memory_app, _with_state(stored[Video.ProxyCreated.TOPIC], proxy_state), fast=True)
    assert proxy.frame_count is None

    embedded_state = json.loads(stored[Clip.Embedded.TOPIC].state)
    del embedded_state["class_version"], embedded_state["dtype"]
    embedded_state["vectors"] = vectors
    embedded = _decoded_alike(memory_app, _with_state(stored[Clip.Embedded.TOPIC], embedded_state), fast=True)
    assert embedded.dtype == "float32"
    assert embedded.vector_list() == [pytest.approx(v, rel=1e-6) for v in vectors]


def test_nested_values_are_revived_innermost_first(memory_app: HeatersApplication) -> None:
    """UUIDs and datetimes inside lists and objects, objects that only look like a stored value
    (three keys, or one), empty containers."""
    uuid = {"_type_": "uuid_hex", "_data_": uuid4().hex}
    state = {
        **version_one_clip_created(uuid4()),
        "class_version": 2,
        "origin": "merge",
        "parent_ids": [uuid, [uuid, {"x": uuid}], []],
        "extra": {"_type_": "uuid_hex", "_data_": uuid["_data_"], "more": 1},
        "only": {"_type_": "uuid_hex"},
        "empty": {},
    }
    stored = StoredEvent(uuid4(), 1, Clip.Created.TOPIC, json.dumps(state).encode())
    event = _decoded_alike(memory_app, stored, fast=True)
    assert event.extra["_type_"] == "uuid_hex" and event.parent_ids[1][1]["x"] == event.parent_ids[0]


@pytest.mark.parametrize(
    "state",
    [
        b'{"actor": "user:a", "timestamp": {"_type_": "datetime_iso", "_data_": "2025-06-01T12:00:00+00:00"},'
        b' "score": NaN}',  # Python's JSON reads NaN; msgspec does not: the mapper decodes it
        b'{"actor": "user:a", "timestamp": {"_type_": "datetime_iso", "_data_": "2025-06-01T12:00:00+00:00"},'
        b' "big": 1e400}',
    ],
)
def test_what_only_pythons_json_reads_is_decoded_by_the_mapper(
    memory_app: HeatersApplication, state: bytes
) -> None:
    _decoded_alike(memory_app, StoredEvent(uuid4(), 2, Clip.Approved.TOPIC, state))


@pytest.mark.parametrize(
    "state",
    [
        b"{",
        b'{"timestamp": {"_type_": "no_such_type", "_data_": "x"}}',
        b'{"timestamp": {"_type_": ["unhashable"], "_data_": "x"}}',
        b'{"_type_": "uuid_hex", "_data_": "not hex"}',
        b"[1, 2]",
        b'"\xff"',
    ],
)
def test_a_state_it_cannot_decode_fails_with_the_mappers_error(
    memory_app: HeatersApplication, state: bytes
) -> None:
    stored = StoredEvent(uuid4(), 1, Clip.Created.TOPIC, state)
    with pytest.raises(Exception) as expected:
        memory_app.mapper.to_domain_event(stored)
    with pytest.raises(type(expected.value)) as got:
        StoredEventDecoder(memory_app.mapper).decode(stored)
    assert str(got.value) == str(expected.value)


def test_an_unknown_topic_fails_as_the_mapper_fails(memory_app: HeatersApplication) -> None:
    stored = StoredEvent(uuid4(), 1, "heaters.clip:NoSuchEvent", b'{"actor": "user:a"}')
    with pytest.raises(Exception) as expected:
        memory_app.mapper.to_domain_event(stored)
    with pytest.raises(type(expected.value)):
        StoredEventDecoder(memory_app.mapper).decode(stored)


def test_a_compressing_application_is_decoded_by_its_mapper() -> None:
    app = HeatersApplication(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.popo",
            "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
        }
    )
    try:
        app.submit("/videos/a.mp4", "user:alice")
        assert StoredEventDecoder(app.mapper).fast is False
        (stored,) = app.recorder.select_notifications(1, 10)
        assert _decoded_alike(app, stored).source == "/videos/a.mp4"
    finally:
        app.close()
