"""Test helpers: drive a video through the pipeline commands without media work."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from commands.service import HeatersApplication

PIPELINE = "stage:test-pipeline"


def clipped_video(
    app: HeatersApplication,
    frame_count: int = 300,
    cuts: Sequence[int] = (100, 200),
    fps: float = 25.0,
    *,
    source: str = "/videos/test.mp4",
    title: str = "test video",
    sprites_key: str | None = None,
) -> tuple[UUID, list[UUID]]:
    """A video whose shots are detected: returns its id and its clip ids in frame order. Its sprites
    are ``sprites_key`` (by default a key under the video's own folder that holds nothing)."""
    video_id = app.submit(source, "user:tester")
    attempt = app.start_video_stage(video_id, "download", PIPELINE)
    app.record_downloaded(
        video_id,
        attempt,
        PIPELINE,
        media_key=f"videos/{video_id}/source.mp4",
        title=title,
        original_url=None,
        checksum="0" * 64,
        duration=frame_count / fps,
        fps=fps,
        frame_count=frame_count,
        width=320,
        height=240,
        codec="h264",
    )
    attempt = app.start_video_stage(video_id, "proxy", PIPELINE)
    app.record_proxy(video_id, attempt, f"videos/{video_id}/proxy.mp4", 320, 240, PIPELINE)
    attempt = app.start_video_stage(video_id, "sprites", PIPELINE)
    sprites_key = sprites_key or f"videos/{video_id}/sprites/manifest.json"
    app.record_sprites(video_id, attempt, sprites_key, PIPELINE)
    attempt = app.start_video_stage(video_id, "shots", PIPELINE)
    clip_ids = app.record_shots(video_id, attempt, list(cuts), "test", {}, PIPELINE)
    return video_id, clip_ids


def live_layout(app: HeatersApplication, video_id: UUID) -> list[tuple[int, int, UUID]]:
    return [(s.start, s.end, s.clip_id) for s in app.get_video(video_id).layout]


def assert_replay_rebuilds(app: HeatersApplication, aggregate_id: UUID, live: object) -> None:
    """Replaying the aggregate's stored events (each one mutating what the ones before built) gives
    ``live`` again, its version and its creation and modification times included."""
    events = list(app.events.get(aggregate_id))
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)  # type: ignore[attr-defined]
    assert replayed == live
    assert replayed.version == len(events)
    assert replayed.created_on == events[0].timestamp  # type: ignore[attr-defined]
    assert replayed.modified_on == events[-1].timestamp  # type: ignore[attr-defined]


def version_one_clip_created(video_id: UUID) -> dict[str, object]:
    """The stored state of a ``Clip.Created`` from before clips had an origin and parents (version 1,
    upcast on reading)."""
    return {
        "originator_topic": "heaters.clip:Clip",
        "video_id": {"_type_": "uuid_hex", "_data_": video_id.hex},
        "start": 0,
        "end": 50,
        "actor": "stage:shots",
        "timestamp": {"_type_": "datetime_iso", "_data_": "2025-06-01T12:00:00+00:00"},
    }
