"""The whole pipeline on the embedded default: in-process broker, local media storage, real ffmpeg."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.corpus import Shot, Transition, make_video
from commands.service import HeatersApplication
from domain.video import Video
from entrypoints.pipeline import Pipeline, build_pipeline
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.media.ffmpeg import decode_frames, packet_times, probe
from infra.media.shot_detection import HeatersDetector, ShotDetector
from infra.object_storage import LocalObjectStorage
from processors import stages
from tests.integration.pipeline_support import (
    CUTS,
    known_cuts_video,
    tiny_embedder,
    video_settled,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> Iterator[Pipeline]:
    settings = Settings(
        home=tmp_path / "home", database_schema=pg_schema, max_attempts=2, archive_grace_seconds=0.5
    )
    storage = LocalObjectStorage(tmp_path / "media")
    pipeline = build_pipeline(settings, pg_app, pg_address, storage, embedder_factory=tiny_embedder)
    pipeline.start(poll_seconds=0.05)
    yield pipeline
    pipeline.stop()


def test_submit_to_pending_review_then_approve_to_export(
    pipeline: Pipeline, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    submitted = known_cuts_video(tmp_path / "a.mp4")
    video_id = pg_app.submit(str(submitted), "user:alice")
    wait_until(lambda: video_settled(pg_app, video_id), timeout=120)
    video = pg_app.get_video(video_id)
    assert video.state == "clipped", video.stages
    assert video.frame_count == 120
    clips = pg_app.clips_of(video_id)
    assert [(c.start, c.end) for c in clips] == [(0, 40), (40, 85), (85, 120)]
    assert all(c.state == "pending_review" for c in clips)
    assert video.cuts == CUTS

    storage = pipeline.context.storage
    assert storage.exists(video.media["proxy"]) and storage.exists(video.media["sprites"])
    # One decode made the proxy, the sprites and the shot analysis: the later stages recorded them.
    pass_prefix = video.media["proxy"].removesuffix(".mp4") + "-pass/"
    assert video.media["sprites"] == pass_prefix + "sprites/manifest.json"
    assert storage.exists(pass_prefix + "shots.json")
    assert all(k.endswith((".jpg", ".json")) for k in storage.list(pass_prefix + "sprites/"))  # the default

    pg_app.approve(clips[1].id, "user:alice")
    wait_until(lambda: pg_app.get_clip(clips[1].id).state == "exported", timeout=120)
    clip = pg_app.get_clip(clips[1].id)
    assert len(clip.keyframes["keys"]) == 3 and all(storage.exists(k) for k in clip.keyframes["keys"])
    assert clip.embedding["dimension"] > 0
    assert clip.export_key is not None and storage.exists(clip.export_key)

    kinds = [e.event for e in pg_app.history(video_id)]
    assert kinds == [
        "Submitted", "DownloadStarted", "Downloaded", "ProxyStarted", "ProxyCreated",
        "SpritesStarted", "SpritesCreated", "ShotDetectionStarted", "ShotsDetected",
    ]  # fmt: skip
    # The stored source is the submitted file as it was; editing that file later changes nothing stored.
    original = submitted.read_bytes()
    assert storage.get_bytes(video.media["source"]) == original
    submitted.write_bytes(b"edited afterwards")
    assert storage.get_bytes(video.media["source"]) == original


def _started(
    app: HeatersApplication, address: DatabaseAddress, schema: str, tmp_path: Path, **settings: Any
) -> tuple[Pipeline, LocalObjectStorage]:
    """A started pipeline with these settings, media under ``tmp_path``."""
    storage = LocalObjectStorage(tmp_path / "media")
    config = Settings(home=tmp_path / "home", database_schema=schema, **settings)
    pipeline = build_pipeline(config, app, address, storage, embedder_factory=tiny_embedder)
    pipeline.start(poll_seconds=0.05)
    return pipeline, storage


def _settled_known_cuts(app: HeatersApplication, pipeline: Pipeline, tmp_path: Path) -> Video:
    """The known-cuts video submitted to a started pipeline, once it settled (the pipeline stopped)."""
    try:
        video_id = app.submit(str(known_cuts_video(tmp_path / "a.mp4")), "user:alice")
        wait_until(lambda: video_settled(app, video_id), timeout=120)
    finally:
        pipeline.stop()
    return app.get_video(video_id)


def test_each_stage_decodes_on_its_own_when_the_single_pass_is_off(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    pipeline, storage = _started(pg_app, pg_address, pg_schema, tmp_path, media_single_pass=False)
    video = _settled_known_cuts(pg_app, pipeline, tmp_path)
    assert video.state == "clipped" and video.cuts == CUTS
    assert video.media["sprites"] == f"videos/{video.id}/sprites-a1/manifest.json"
    assert not storage.list(video.media["proxy"].removesuffix(".mp4") + "-pass/")


def test_the_shots_stage_decodes_on_its_own_when_the_pass_analysis_fails_at_its_end(
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[ShotDetector] = []

    class FailsToFinish(HeatersDetector):
        def finish(self) -> list[int]:
            raise RuntimeError("the detector gave up at the end")

    def detector(_ctx: object) -> ShotDetector:  # the pass's detector fails, the shots stage's works
        made.append(FailsToFinish() if not made else HeatersDetector())
        return made[-1]

    monkeypatch.setattr(stages, "_shot_detector", detector)
    pipeline, storage = _started(pg_app, pg_address, pg_schema, tmp_path)
    video = _settled_known_cuts(pg_app, pipeline, tmp_path)
    assert video.state == "clipped" and video.cuts == CUTS
    pass_prefix = video.media["proxy"].removesuffix(".mp4") + "-pass/"
    assert video.media["sprites"] == pass_prefix + "sprites/manifest.json"  # the pass's sheets stand
    assert not storage.exists(pass_prefix + "shots.json")
    assert [type(d) for d in made] == [FailsToFinish, HeatersDetector]


@pytest.mark.parametrize(
    ("make_source", "reason"),
    [
        (lambda tmp: str(_write(tmp / "empty.mp4", b"")), "empty"),
        (lambda tmp: str(_write(tmp / "notes.mp4", b"just some text, not a video\n" * 50)), "not a video"),
        (lambda tmp: "ftp://example.com/a.mp4", "scheme 'ftp' is not allowed"),
        (lambda tmp: "file:///etc/passwd", "scheme 'file' is not allowed"),
        (lambda tmp: "http://127.0.0.1:9/a.mp4", "not allowed"),
    ],
)
def test_bad_sources_end_as_download_failures_with_reasons(
    pipeline: Pipeline, pg_app: HeatersApplication, tmp_path: Path, make_source: object, reason: str
) -> None:
    assert callable(make_source)
    video_id = pg_app.submit(make_source(tmp_path), "user:alice")
    wait_until(lambda: video_settled(pg_app, video_id), timeout=60)
    video = pg_app.get_video(video_id)
    assert video.state == "download_failed"
    assert reason in (video.stages["download"].last_error or "")
    assert [e.event for e in pg_app.history(video_id)][-1] == "DownloadFailed"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_archived_clip_media_is_purged_after_the_grace_period(
    pipeline: Pipeline, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    video_id = pg_app.submit(str(known_cuts_video(tmp_path / "a.mp4")), "user:alice")
    wait_until(lambda: video_settled(pg_app, video_id), timeout=120)
    clip_id = pg_app.clips_of(video_id)[0].id
    pg_app.approve(clip_id, "user:alice")
    wait_until(lambda: pg_app.get_clip(clip_id).state == "exported", timeout=120)
    storage = pipeline.context.storage
    derived = storage.list(f"clips/{clip_id}/")
    assert len(derived) == 4  # three keyframes and the export

    pg_app.undo(clip_id, "user:alice")  # the reviewer changes their mind
    pg_app.archive(clip_id, "user:alice")
    wait_until(lambda: pg_app.get_clip(clip_id).media_purged, timeout=60)
    assert storage.list(f"clips/{clip_id}/") == []
    purged = [e for e in pg_app.history(clip_id) if e.event == "MediaPurged"]
    assert len(purged) == 1 and sorted(purged[0].payload["keys"]) == sorted(derived)
    assert pg_app.get_clip(clip_id).state == "archived"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static HTTP server on loopback serving a directory."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_sources_download_or_fail_with_the_status(
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    tmp_path: Path,
    http_root: tuple[Path, str],
) -> None:
    root, base = http_root
    known_cuts_video(root / "a.mp4")
    whole = (root / "a.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    settings = Settings(home=tmp_path / "home", database_schema=pg_schema, allow_private_hosts=True)
    pipeline = build_pipeline(settings, pg_app, pg_address, LocalObjectStorage(tmp_path / "media"))
    pipeline.start(poll_seconds=0.05)
    try:
        ok = pg_app.submit(f"{base}/a.mp4", "user:alice")
        missing = pg_app.submit(f"{base}/missing.mp4", "user:alice")
        truncated = pg_app.submit(f"{base}/truncated.mp4", "user:alice")
        for video_id in (ok, missing, truncated):
            wait_until(lambda v=video_id: video_settled(pg_app, v), timeout=120)
    finally:
        pipeline.stop()
    assert pg_app.get_video(ok).state == "clipped"
    assert pg_app.get_video(ok).metadata["original_url"] == f"{base}/a.mp4"
    assert "404" in (pg_app.get_video(missing).stages["download"].last_error or "")
    reason = pg_app.get_video(truncated).stages["download"].last_error or ""
    assert pg_app.get_video(truncated).state == "download_failed" and "truncated" in reason.lower(), reason


def test_a_playable_source_is_copied_into_the_proxy_and_its_clips_still_export_exactly(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    pipeline, storage = _started(pg_app, pg_address, pg_schema, tmp_path, proxy_copy_playable=True)
    # H.264 High yuv420p 320x180, keyframes only at the cuts: playable as is. The middle shot pans, so
    # every one of its frames differs from the next.
    source = tmp_path / "a.mp4"
    shots = [
        Shot("landscape", 40, scene=1),
        Shot("city", 45, "pan", 6.0, scene=2),
        Shot("shapes", 35, scene=3),
    ]
    make_video(source, shots, [Transition("cut"), Transition("cut")], fps=25.0, size=(320, 180), seed=7)
    try:
        video_id = pg_app.submit(str(source), "user:alice")
        wait_until(lambda: video_settled(pg_app, video_id), timeout=120)
        video = pg_app.get_video(video_id)
        assert video.state == "clipped" and video.cuts == CUTS
        middle = pg_app.clips_of(video_id)[1]
        _, right = pg_app.split(middle.id, 60, "user:alice")  # starts between keyframes
        pg_app.approve(right, "user:alice")
        wait_until(lambda: pg_app.get_clip(right).state == "exported", timeout=120)
    finally:
        pipeline.stop()
    proxy = tmp_path / "proxy.mp4"
    proxy.write_bytes(storage.get_bytes(video.media["proxy"]))
    packets = packet_times(proxy)
    assert len(packets.pts) == 120 and packets.keyframes == 3  # the source's own keyframes: copied
    exported = tmp_path / "clip.mp4"
    exported.write_bytes(storage.get_bytes(pg_app.get_clip(right).export_key or ""))
    assert probe(exported).frame_count == 25
    # The clip starts on frame 60, not on the keyframe before it (40) nor a neighbour.
    first = next(decode_frames(exported, 64, 36)).astype(int)
    near = {n: f.astype(int) for n, f in enumerate(decode_frames(source, 64, 36)) if n in (40, 59, 60, 61)}
    diffs = {n: float(abs(first - f).mean()) for n, f in near.items()}
    assert min(diffs, key=lambda n: diffs[n]) == 60, diffs
