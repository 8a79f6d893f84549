"""Media that lies or is oddly shaped still becomes a reviewable video (issue 9, item 7).

Each file is made with ffmpeg and run through the real stages (download, proxy, sprites, shots)
on the in-memory application and local storage.
"""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from commands.service import HeatersApplication
from domain.video import Video
from infra.config import Settings
from infra.media.ffmpeg import ffmpeg_exe, probe
from infra.media.inspect import inspect_media
from infra.object_storage import LocalObjectStorage
from processors import stages
from processors.stages import PipelineContext
from tests.security.servers import make_video

pytestmark = pytest.mark.integration


def _patch_video_timescale(path: Path, timescale: int) -> None:
    """Overwrite the time scale of the first track's ``mdhd`` box (the video track here)."""
    data = bytearray(path.read_bytes())
    box = data.find(b"mdhd")
    assert box > 0
    version = data[box + 4]
    at = box + 8 + (16 if version == 1 else 8)  # after version/flags and creation/modification times
    data[at : at + 4] = struct.pack(">I", timescale)
    path.write_bytes(bytes(data))


def _decoded_frames(path: Path) -> int:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "framecrc", "-"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return sum(1 for line in proc.stdout.decode().splitlines() if line and not line.startswith("#"))


def _ingest(app: HeatersApplication, source: Path, tmp_path: Path) -> tuple[PipelineContext, Video]:
    ctx = PipelineContext(app, LocalObjectStorage(tmp_path / "media"), Settings(home=tmp_path / "home"))
    video_id = app.submit(str(source), "user:alice")
    for stage in (stages.download, stages.proxy, stages.sprites, stages.shots):
        stage(ctx, video_id)
        video = app.get_video(video_id)
        assert video.failed_stage is None, video.stages
    return ctx, app.get_video(video_id)


def test_a_lying_mdhd_timescale_keeps_every_frame(memory_app: HeatersApplication, tmp_path: Path) -> None:
    source = make_video(
        tmp_path / "lying.mp4", "-c:a", "aac", "-shortest", frames=48,
        inputs=("-f", "lavfi", "-i", "sine=frequency=440:duration=2"),
    )  # fmt: skip
    _patch_video_timescale(source, 0xFFFFFFFF)
    info = probe(source)
    assert info.frame_count == 48
    assert info.fps == pytest.approx(24.0, rel=0.01)

    ctx, video = _ingest(memory_app, source, tmp_path)
    assert video.state == "clipped"
    assert video.frame_count == 48
    assert video.fps == pytest.approx(24.0, rel=0.01)
    proxy = ctx.storage.local_path(video.media["proxy"])
    assert proxy is not None
    assert _decoded_frames(proxy) == 48
    assert inspect_media(proxy).audio_codec == "aac"  # not silent
    assert sum(s.end - s.start for s in video.layout) == 48


@pytest.mark.parametrize("size", ["4096x16", "16x4096"])
def test_extreme_aspect_ratios_get_a_proxy(size: str, memory_app: HeatersApplication, tmp_path: Path) -> None:
    source = make_video(tmp_path / f"{size}.mp4", size=size, frames=24)
    assert (probe(source).width, probe(source).height) == tuple(int(n) for n in size.split("x"))
    ctx, video = _ingest(memory_app, source, tmp_path)
    assert video.state == "clipped"
    path = ctx.storage.local_path(video.media["proxy"])
    assert path is not None
    proxy = inspect_media(path)
    assert proxy.width % 2 == 0 and proxy.height % 2 == 0
    assert min(proxy.width, proxy.height) >= 16
    assert proxy.frame_count == 24


@pytest.mark.parametrize(("size", "dar"), [("4096x16", 256.0), ("16x4096", 1 / 256)])
def test_an_extreme_proxy_keeps_the_picture_shape(size: str, dar: float, tmp_path: Path) -> None:
    from infra.media.transcode import make_proxy

    source = make_video(tmp_path / "src.mp4", size=size, frames=12)
    make_proxy(source, tmp_path / "proxy.mp4")
    header = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "proxy.mp4")], capture_output=True, timeout=60
    ).stderr.decode()
    match = re.search(r"DAR (\d+):(\d+)", header)
    assert match is not None, header
    assert int(match[1]) / int(match[2]) == pytest.approx(dar, rel=0.02)


def test_a_video_trimmed_between_keyframes_is_clipped_at_the_frames_it_shows(
    memory_app: HeatersApplication, tmp_path: Path
) -> None:
    """A stream copy cut between keyframes (as phones and QuickTime trim) keeps the group's first
    packets and hides them with an edit list: 72 packets, 60 frames shown. The video is those 60."""
    whole = make_video(tmp_path / "whole.mp4", "-g", "24", "-bf", "2", frames=96)
    trimmed = tmp_path / "trimmed.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-v",
            "error",
            "-y",
            "-ss",
            "1.5",
            "-i",
            str(whole),
            "-c",
            "copy",
            str(trimmed),
        ],
        check=True,
        timeout=60,
    )
    shown = _decoded_frames(trimmed)
    assert shown == 60
    assert probe(trimmed).frame_count == shown

    ctx, video = _ingest(memory_app, trimmed, tmp_path)
    assert video.state == "clipped"
    assert video.frame_count == shown
    proxy = ctx.storage.local_path(video.media["proxy"])
    assert proxy is not None and _decoded_frames(proxy) == shown
    assert sum(s.end - s.start for s in video.layout) == shown
