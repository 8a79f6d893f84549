"""Media tools against the real ffmpeg binary, on tiny generated videos.

The "ramp" video encodes its frame index in its brightness (luma 20 + 2n, lossless), so a JPEG
tile or keyframe tells which frame it shows.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from infra.config import Settings
from infra.media.download import DownloadError, fetch_source
from infra.media.ffmpeg import MediaError, ffmpeg_exe, packet_times, probe
from infra.media.inspect import inspect_media
from infra.media.keyframes import extract_keyframes, keyframe_frames
from infra.media.media_pass import Analysis, SpriteSpec, copy_refusal, decode_once
from infra.media.sprites import (
    MANIFEST_NAME,
    load_manifest,
    make_sprites,
    sprite_index,
    sprite_position,
    sprite_source_frame,
)
from infra.media.transcode import export_clip, is_browser_playable, make_proxy, normalise, proxy_size

pytestmark = pytest.mark.integration

FPS = 25
FRAMES = 100  # 4 s


def ffmpeg(*args: str) -> str:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args], capture_output=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stderr.decode()


def frame_md5s(path: Path) -> list[str]:
    proc = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-f",
            "framemd5",
            "-",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return [
        line.rsplit(",", 1)[1].strip()
        for line in proc.stdout.decode().splitlines()
        if not line.startswith("#")
    ]


def key_flags(path: Path) -> list[bool]:
    """Per decoded frame: is it a keyframe (showinfo's iskey)."""
    err = ffmpeg("-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-")
    return [m == "1" for m in re.findall(r"iskey:(\d)", err)]


def ramp_frame(image: Image.Image) -> int:
    """Frame index encoded in a ramp-video image (JPEG is full range: Y' = (Y - 16) * 255 / 219)."""
    mean = ImageStat.Stat(image.convert("L")).mean[0]
    return round((mean * 219 / 255 + 16 - 20) / 2)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        "playable": d / "playable.mp4",
        "ramp": d / "ramp.mp4",
        "mkv": d / "mpeg4.mkv",
        "ntsc": d / "ntsc.mp4",
    }
    sine = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={FRAMES / FPS}"]
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration={FRAMES / FPS}", *sine,
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
        str(files["playable"]),
    )  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i",
        f"color=c=black:s=160x120:r={FPS}:d={FRAMES / FPS},geq=lum='20+2*N':cb=128:cr=128", *sine,
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-g", "50",
        "-c:a", "aac", "-shortest", str(files["ramp"]),
    )  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
        "-c:v", "mpeg4", "-c:a", "libopus", str(files["mkv"]),
    )  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30000/1001:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(files["ntsc"]),
    )  # fmt: skip
    return files


@pytest.fixture(scope="module")
def ramp_proxy(media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("proxy") / "proxy.mp4"
    make_proxy(media["ramp"], dst)
    return dst


# ---------------------------------------------------------------- transcode


def test_probe_counts_frames_when_ffmpeg_prints_no_frame_count(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg 7.0 (the imageio-ffmpeg 0.6 and 0.7 wheels) leaves ``frame=`` out of a stream
    copy's stats; every probe then said "video stream has no frames". Here an ffmpeg that prints
    no frame count stands in for it."""
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(
        f"""#!{sys.executable}
import re, subprocess, sys
done = subprocess.run([{str(ffmpeg_exe())!r}, *sys.argv[1:]], stdout=sys.stdout, stderr=subprocess.PIPE)
sys.stderr.write(re.sub(r"frame=\\s*\\d+", "", done.stderr.decode("utf-8", "replace")))
sys.exit(done.returncode)
"""
    )
    wrapper.chmod(0o755)
    real = probe(media["ramp"])
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(wrapper))
    ffmpeg_exe.cache_clear()
    try:
        assert ffmpeg_exe() == str(wrapper)
        said = subprocess.run([str(wrapper), "-i", str(media["ramp"]), "-c", "copy", "-f", "null", "-"],
                              capture_output=True, check=False).stderr.decode()  # fmt: skip
        assert "frame=" not in said and "time=" in said  # what ffmpeg 7.0 prints
        assert probe(media["ramp"]) == real
        assert real.frame_count == FRAMES
    finally:
        ffmpeg_exe.cache_clear()


def test_normalise_skipped_for_playable_input(media: dict[str, Path], tmp_path: Path) -> None:
    info = inspect_media(media["playable"])
    assert is_browser_playable(info)
    result = normalise(media["playable"], tmp_path / "out.mp4")
    assert result.transcoded is False
    assert result.path == media["playable"]
    assert not (tmp_path / "out.mp4").exists()


def test_a_file_is_inspected_once_until_it_changes(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infra.media.inspect as inspect_module

    reads: list[Path] = []
    real = inspect_module.probe_with_packets
    monkeypatch.setattr(
        inspect_module, "probe_with_packets", lambda path, **kw: (reads.append(path), real(path, **kw))[1]
    )
    video = tmp_path / "video.mp4"
    video.write_bytes(media["playable"].read_bytes())
    first = inspect_media(video)
    assert (first.codec, first.audio_codec, first.frame_count) == ("h264", "aac", FRAMES)
    linked = tmp_path / "stored.mp4"
    linked.hardlink_to(video)  # local storage takes a stage's file by a hard link: the same file
    assert inspect_media(video) == inspect_media(linked) == first and len(reads) == 1
    video.unlink()
    video.write_bytes(media["mkv"].read_bytes())  # another file at the same path
    again = inspect_media(video)
    assert (again.codec, again.audio_codec, again.container) == ("mpeg4", "opus", "matroska,webm")
    assert len(reads) == 2


def test_normalise_transcodes_other_codecs(media: dict[str, Path], tmp_path: Path) -> None:
    before = inspect_media(media["mkv"])
    assert not is_browser_playable(before)
    result = normalise(media["mkv"], tmp_path / "out.mp4")
    assert result.transcoded is True and result.path == tmp_path / "out.mp4"
    assert is_browser_playable(result.info)
    assert (result.info.codec, result.info.pix_fmt, result.info.audio_codec) == ("h264", "yuv420p", "aac")
    assert result.info.frame_count == before.frame_count
    data = result.path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart


def test_proxy_size_fits_without_upscaling() -> None:
    assert proxy_size(1920, 1080) == (1280, 720)
    assert proxy_size(3840, 1600) == (1280, 532)
    assert proxy_size(1080, 1920) == (404, 720)
    assert proxy_size(320, 240) == (320, 240)
    assert proxy_size(641, 361) == (640, 360)
    assert proxy_size(4096, 16) == (1280, 16)  # a side never under 16 px: extreme ratios still get a proxy
    assert proxy_size(16, 4096) == (16, 720)
    assert proxy_size(7, 5) == (8, 6)  # tiny sources: even, never below their own size


def test_proxy_is_all_intra_and_keeps_every_frame(media: dict[str, Path], tmp_path: Path) -> None:
    src = media["playable"]
    assert not all(key_flags(src))  # control: a normal encode has inter frames
    info = make_proxy(src, tmp_path / "proxy.mp4")
    flags = key_flags(tmp_path / "proxy.mp4")
    assert len(flags) == FRAMES and all(flags)
    assert (info.width, info.height, info.frame_count, info.fps) == (320, 240, FRAMES, FPS)
    assert (info.codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert is_browser_playable(info)
    data = (tmp_path / "proxy.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")


@pytest.mark.parametrize(("start", "end"), [(0, 100), (0, 1), (1, 14), (37, 50), (99, 100), (50, 51)])
def test_export_is_frame_accurate(ramp_proxy: Path, tmp_path: Path, start: int, end: int) -> None:
    reference = frame_md5s(ramp_proxy)
    out = export_clip(ramp_proxy, tmp_path / "clip.mp4", start, end, FPS)
    assert probe(out).frame_count == end - start
    assert frame_md5s(out) == reference[start:end]


def test_export_at_ntsc_rate(media: dict[str, Path], tmp_path: Path) -> None:
    proxy = tmp_path / "proxy.mp4"
    info = make_proxy(media["ntsc"], proxy)
    assert abs(info.fps - 29.97) < 0.01 and info.frame_count == 60
    reference = frame_md5s(proxy)
    for start, end in [(1, 2), (17, 45), (59, 60)]:
        out = export_clip(proxy, tmp_path / f"clip{start}.mp4", start, end, info.fps)
        assert frame_md5s(out) == reference[start:end]


def test_export_rejects_bad_ranges(ramp_proxy: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        export_clip(ramp_proxy, tmp_path / "x.mp4", 10, 10, FPS)
    with pytest.raises(ValueError):
        export_clip(ramp_proxy, tmp_path / "x.mp4", -1, 10, FPS)


# ---------------------------------------------------------------- sprites


def test_sprite_manifest_arithmetic(ramp_proxy: Path, tmp_path: Path) -> None:
    manifest = make_sprites(ramp_proxy, tmp_path, fps=10, tile_width=80, columns=4, rows=3)
    assert load_manifest(tmp_path / MANIFEST_NAME) == manifest
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert raw["sprite_fps"] == "10" and raw["source_fps"] == "25"
    assert (manifest.tile_width, manifest.tile_height, manifest.frames_per_sheet) == (80, 60, 12)
    assert manifest.sprite_count == 40  # 4 s at 10 fps
    assert manifest.sheets == [f"sheet_{i:05d}.jpg" for i in range(4)]  # 12 + 12 + 12 + 4
    with Image.open(tmp_path / manifest.sheets[0]) as sheet:
        assert sheet.size == (320, 180)

    for frame in [0, 1, 2, 3, 5, 29, 30, 31, 62, 88, 97, 99]:
        name, x, y = sprite_position(manifest, frame)
        k = sprite_index(manifest, frame)
        assert k == frame * 10 // 25
        assert name == manifest.sheets[k // 12]
        assert (x, y) == ((k % 12) % 4 * 80, (k % 12) // 4 * 60)
        shown = sprite_source_frame(manifest, k)
        assert shown <= frame < shown + 3  # a sprite covers 2.5 source frames
        with Image.open(tmp_path / name) as sheet:
            tile = sheet.crop((x + 8, y + 8, x + 72, y + 52))
            assert ramp_frame(tile) == shown, frame
    assert sprite_index(manifest, 10_000) == manifest.sprite_count - 1


def test_sprites_at_source_rate_are_one_per_frame(ramp_proxy: Path, tmp_path: Path) -> None:
    manifest = make_sprites(ramp_proxy, tmp_path, fps=24, tile_width=48, columns=10, rows=10)
    assert manifest.sprite_fps == "24" and manifest.sprite_count == 96  # floor(99 * 24/25) + 1
    assert len(manifest.sheets) == 1
    for frame in [0, 24, 25, 26, 50, 99]:
        name, x, y = sprite_position(manifest, frame)
        with Image.open(tmp_path / name) as sheet:
            tile = sheet.crop((x + 6, y + 6, x + 42, y + 30))
            assert ramp_frame(tile) == sprite_source_frame(manifest, sprite_index(manifest, frame))
    # A re-run replaces the sheets (no stale files).
    again = make_sprites(ramp_proxy, tmp_path, fps=5, tile_width=48, columns=2, rows=2)
    assert sorted(p.name for p in tmp_path.glob("sheet_*.jpg")) == again.sheets
    assert len(again.sheets) == 5  # 20 sprites / 4


# ---------------------------------------------------------------- keyframes


def test_keyframes_per_strategy(ramp_proxy: Path, tmp_path: Path) -> None:
    multi = extract_keyframes(ramp_proxy, tmp_path / "m", 10, 30, FPS, "multi")
    assert [p.name for p in multi] == [
        "keyframe_25_f0000015.jpg",
        "keyframe_50_f0000020.jpg",
        "keyframe_75_f0000025.jpg",
    ]
    for path, frame in zip(multi, (15, 20, 25), strict=True):
        with Image.open(path) as image:
            assert image.size == (160, 120)
            assert ramp_frame(image) == frame
    mid = extract_keyframes(ramp_proxy, tmp_path / "s", 97, 100, FPS, "midpoint")
    assert len(mid) == 1
    with Image.open(mid[0]) as image:
        assert ramp_frame(image) == 98
    assert keyframe_frames(0, 1, "multi") == [(25, 0), (50, 0), (75, 0)]
    assert keyframe_frames(0, 4, "midpoint") == [(50, 2)]


def test_keyframes_at_the_models_size_are_scaled_down_never_up(ramp_proxy: Path, tmp_path: Path) -> None:
    small = extract_keyframes(ramp_proxy, tmp_path / "a", 10, 30, FPS, "multi", short_side=60)
    for path, frame in zip(small, (15, 20, 25), strict=True):
        with Image.open(path) as image:
            assert image.size == (80, 60)  # 160x120 with its shorter side at 60
            assert ramp_frame(image) == frame
    kept = extract_keyframes(ramp_proxy, tmp_path / "b", 10, 30, FPS, "midpoint", short_side=224)
    with Image.open(kept[0]) as image:
        assert image.size == (160, 120)


def test_keyframes_exact_on_long_gop_source(media: dict[str, Path], tmp_path: Path) -> None:
    paths = extract_keyframes(media["ramp"], tmp_path, 40, 80, FPS, "multi")  # keyframes at 0, 50
    with Image.open(paths[0]) as a, Image.open(paths[2]) as c:
        assert (ramp_frame(a), ramp_frame(c)) == (50, 70)


# ---------------------------------------------------------------- download


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("www")
    (root / "video.mp4").write_bytes(media["playable"].read_bytes())
    (root / "notes.mp4").write_text("this is not a video\n" * 20)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/stream.mp4":
                super().do_GET()
                return
            self.send_response(200)  # HTTP/1.0, no Content-Length: the body ends when the socket closes
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            self.wfile.write((root / "video.mp4").read_bytes())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


PRIVATE_OK = Settings(allow_private_hosts=True)


def test_download_local_file(media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.chdir(media["playable"].parent)
    got = fetch_source("playable.mp4", tmp_path / "dl", Settings())  # relative path
    assert got.path == tmp_path / "dl" / "source.mp4"
    assert got.path.read_bytes() == media["playable"].read_bytes()
    assert got.checksum == hashlib.sha256(media["playable"].read_bytes()).hexdigest()
    assert (got.title, got.extractor, got.original_url) == ("playable", "local", str(media["playable"]))
    assert (got.info.frame_count, got.info.width, got.info.height) == (FRAMES, 320, 240)
    with pytest.raises(DownloadError, match="local files are not accepted"):
        fetch_source(str(media["playable"]), tmp_path / "dl2", Settings(), allow_local_files=False)


def test_download_rejects_bad_local_files(media: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "a.mp4"
    empty.touch()
    with pytest.raises(DownloadError) as info:
        fetch_source(str(empty), tmp_path / "dl", Settings())
    assert info.value.reason == f"source file is empty (0 bytes): {empty}"

    text = tmp_path / "notes.mp4"
    text.write_text("hello, I am a text file\n" * 10)
    with pytest.raises(DownloadError, match=r"^not a video file: .*notes\.mp4$"):
        fetch_source(str(text), tmp_path / "dl", Settings())

    data = media["playable"].read_bytes()
    cut_tail = tmp_path / "cut_tail.mp4"  # moov atom at the end: lost
    cut_tail.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match=r"^truncated MP4: .*cut_tail\.mp4$"):
        fetch_source(str(cut_tail), tmp_path / "dl", Settings())

    faststart = tmp_path / "fs.mp4"
    ffmpeg("-i", str(media["playable"]), "-c", "copy", "-movflags", "+faststart", str(faststart))
    fs = faststart.read_bytes()
    cut_data = tmp_path / "cut_data.mp4"  # index intact, media data missing
    cut_data.write_bytes(fs[: len(fs) // 2])
    with pytest.raises(DownloadError, match=r"truncated or corrupt .*cut_data\.mp4$"):
        fetch_source(str(cut_data), tmp_path / "dl", Settings())

    with pytest.raises(DownloadError, match="does not exist"):
        fetch_source(str(tmp_path / "nope.mp4"), tmp_path / "dl", Settings())
    with pytest.raises(DownloadError, match="not a regular file"):
        fetch_source(str(tmp_path), tmp_path / "dl", Settings())
    with pytest.raises(DownloadError, match="over the limit of 1000 bytes"):
        fetch_source(str(media["playable"]), tmp_path / "dl", Settings(max_download_bytes=1000))
    with pytest.raises(DownloadError, match=r"video is 4 s long, over the limit of 2 s"):
        fetch_source(str(media["playable"]), tmp_path / "dl", Settings(max_duration_seconds=2))
    assert not list((tmp_path / "dl").iterdir())  # nothing half-written left behind


@pytest.mark.parametrize(
    ("source", "scheme"),
    [
        ("ftp://example.com/a.mp4", "ftp"),
        ("file:///etc/passwd", "file"),
        ("FILE:/etc/passwd", "file"),
        ("data:video/mp4;base64,AAAA", "data"),
        ("javascript:alert(1)", "javascript"),
        ("gopher://example.com/", "gopher"),
    ],
)
def test_download_rejects_other_schemes(source: str, scheme: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        fetch_source(source, tmp_path, PRIVATE_OK)
    assert info.value.reason.startswith(f"scheme '{scheme}' is not allowed; use http(s) or a local path")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:{port}/video.mp4", "loopback"),
        ("http://localhost:{port}/video.mp4", "loopback"),
        ("http://[::1]:{port}/video.mp4", "loopback"),
        ("http://10.1.2.3/video.mp4", "private"),
        ("http://192.168.0.10/video.mp4", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0/video.mp4", "unspecified"),
        ("http://[::ffff:127.0.0.1]/video.mp4", "loopback"),
        ("http://100.64.0.1/video.mp4", "not globally routable"),
    ],
)
def test_download_refuses_private_hosts(
    url: str, kind: str, http_root: tuple[str, Path], tmp_path: Path
) -> None:
    port = http_root[0].rsplit(":", 1)[1]
    with pytest.raises(DownloadError) as info:
        fetch_source(url.format(port=port), tmp_path, Settings())
    assert f"({kind}), which is not allowed" in info.value.reason
    assert "HEATERS_ALLOW_PRIVATE_HOSTS" in info.value.reason


def test_download_http_404(http_root: tuple[str, Path], tmp_path: Path) -> None:
    url = f"{http_root[0]}/missing.mp4"
    with pytest.raises(DownloadError) as info:
        fetch_source(url, tmp_path, PRIVATE_OK)
    assert info.value.reason == f"HTTP 404 from {url}"


def test_download_served_video(http_root: tuple[str, Path], tmp_path: Path) -> None:
    import hashlib

    url = f"{http_root[0]}/video.mp4"
    got = fetch_source(url, tmp_path / "dl", PRIVATE_OK)
    expected = (http_root[1] / "video.mp4").read_bytes()
    assert got.path.parent == tmp_path / "dl" and got.path.suffix == ".mp4"
    assert got.path.read_bytes() == expected
    assert got.checksum == hashlib.sha256(expected).hexdigest()
    assert (got.original_url, got.title, got.extractor) == (url, "video", "generic")
    assert got.info.frame_count == FRAMES
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["source.mp4"]  # work files cleaned up

    small = Settings(allow_private_hosts=True, max_download_bytes=100_000)
    with pytest.raises(DownloadError, match="larger than the limit of 100000 bytes"):
        fetch_source(url, tmp_path / "small", small)  # Content-Length known: refused before downloading
    with pytest.raises(DownloadError, match="larger than the limit of 100000 bytes"):
        fetch_source(f"{http_root[0]}/stream.mp4", tmp_path / "small", small)  # no Content-Length
    assert list((tmp_path / "small").iterdir()) == []

    streamed = fetch_source(f"{http_root[0]}/stream.mp4", tmp_path / "streamed", PRIVATE_OK)
    assert streamed.checksum == got.checksum


def test_download_served_text_file(http_root: tuple[str, Path], tmp_path: Path) -> None:
    url = f"{http_root[0]}/notes.mp4"
    with pytest.raises(DownloadError) as info:
        fetch_source(url, tmp_path, PRIVATE_OK)
    assert "not a video" in info.value.reason or "no downloadable video" in info.value.reason
    assert url in info.value.reason


# ---------------------------------------------------------------- one decode pass


def test_one_decode_makes_proxy_webp_sprites_and_analysis_frames_of_the_same_frames(
    media: dict[str, Path], tmp_path: Path
) -> None:
    batches: list[np.ndarray] = []
    ended: list[int] = []
    result = decode_once(
        media["ramp"],
        tmp_path / "proxy.mp4",
        sprites=(SpriteSpec(10, 80, 4, 3, image_format="webp"), tmp_path / "sprites"),  # an earlier default
        analysis=Analysis(32, "gray", batches.append, batch_size=16, ended=ended.append),
    )
    assert ended == [FRAMES]  # told once, when the last frame was in
    # The proxy is the same all-intra proxy make_proxy makes: every frame, every frame a keyframe.
    assert result.proxy.frame_count == FRAMES and result.proxy.audio_codec == "aac"
    assert all(key_flags(tmp_path / "proxy.mp4"))
    assert len(frame_md5s(tmp_path / "proxy.mp4")) == FRAMES
    # Analysis frames: all of them, in order, at the reduced size.
    frames = np.concatenate(batches)
    assert result.analysed_frames == FRAMES and result.analysis_error is None
    assert frames.shape == (FRAMES, 24, 32) and max(len(b) for b in batches) == 16
    for n in (0, 1, 37, 99):
        assert ramp_frame(Image.fromarray(frames[n])) == n
    # Sprites: WebP sheets in the proxy's numbering, the manifest beside them.
    manifest = result.sprites
    assert manifest is not None and manifest == load_manifest(tmp_path / "sprites" / MANIFEST_NAME)
    assert manifest.sheets == [f"sheet_{i:05d}.webp" for i in range(4)] and manifest.sprite_count == 40
    assert not [p for p in (tmp_path / "sprites").iterdir() if p.name.startswith(".")]  # no work dirs left
    for frame in (0, 31, 62, 99):
        name, x, y = sprite_position(manifest, frame)
        with Image.open(tmp_path / "sprites" / name) as sheet:
            assert sheet.format == "WEBP" and sheet.size == (320, 180)
            tile = sheet.crop((x + 8, y + 8, x + 72, y + 52))
            assert ramp_frame(tile) == sprite_source_frame(manifest, sprite_index(manifest, frame))


def test_one_decode_keeps_the_proxy_when_the_analysis_fails(media: dict[str, Path], tmp_path: Path) -> None:
    seen: list[int] = []

    def broken(batch: np.ndarray) -> None:
        seen.append(len(batch))
        raise RuntimeError("detector exploded")

    ended: list[int] = []
    result = decode_once(
        media["ramp"],
        tmp_path / "proxy.mp4",
        analysis=Analysis(32, "rgb24", broken, batch_size=10, ended=ended.append),
    )
    assert seen == [10] and not ended  # called once, then the frames are read and dropped
    assert result.analysed_frames is None and result.analysis_error == "RuntimeError: detector exploded"
    assert result.proxy.frame_count == FRAMES and result.sprites is None


def test_one_decode_of_a_non_video_is_a_media_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"not a video\n" * 100)
    with pytest.raises(MediaError):
        decode_once(bad, tmp_path / "proxy.mp4", analysis=Analysis(32, "gray", lambda b: None))
    assert not (tmp_path / "proxy.mp4").exists()


def test_webp_sprites_are_smaller_than_jpeg_at_the_same_tile_size(
    media: dict[str, Path], tmp_path: Path
) -> None:
    webp = make_sprites(media["playable"], tmp_path / "w", fps=25, tile_width=160, image_format="webp")
    jpeg = make_sprites(media["playable"], tmp_path / "j", fps=25, tile_width=160, image_format="jpeg")
    assert webp.sheets[0].endswith(".webp") and jpeg.sheets[0].endswith(".jpg")
    size = lambda d: sum(p.stat().st_size for p in d.glob("sheet_*"))  # noqa: E731
    assert size(tmp_path / "w") < size(tmp_path / "j")
    with pytest.raises(ValueError, match="webp limit"):
        make_sprites(media["playable"], tmp_path / "x", tile_width=4000, columns=5, image_format="webp")


@pytest.mark.parametrize(
    ("pix_fmt", "levels"),
    [("yuv420p", (16, 126, 235)), ("yuvj420p", (0, 128, 255))],  # video range, and a full-range source
)
def test_jpeg_sheets_are_full_range_with_black_at_zero(
    pix_fmt: str, levels: tuple[int, int, int], tmp_path: Path
) -> None:
    """Black, mid grey and white bands come out of the JPEG sheets at luma 0, 128 and 255: video
    black is not left at level 1 (which costs flat letterbox bars SSIM), whatever the source's range."""
    width, height, frames = 240, 80, FPS
    luma = np.repeat(np.array(levels, np.uint8), width // 3)[None, :].repeat(height, axis=0)
    chroma = np.full((height // 2, width // 2), 128, np.uint8)
    raw = tmp_path / "bands.yuv"
    raw.write_bytes((luma.tobytes() + chroma.tobytes() * 2) * frames)
    src = tmp_path / f"bands_{pix_fmt}.mp4"
    ffmpeg(
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "-r", str(FPS), "-i", str(raw),
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", pix_fmt, str(src),
    )  # fmt: skip
    manifest = make_sprites(src, tmp_path / "sprites", fps=5, tile_width=240, columns=2, rows=2)
    with Image.open(tmp_path / "sprites" / manifest.sheets[0]) as sheet:
        sheet.draft("YCbCr", sheet.size)  # the JPEG's own luma, not converted to RGB and back
        shown = np.asarray(sheet.convert("YCbCr"))[:, :, 0]
    band = manifest.tile_width // 3
    for i, want in enumerate((0, 128, 255)):
        centre = shown[8 : manifest.tile_height - 8, i * band + 8 : (i + 1) * band - 8]
        assert int(centre.min()) == int(centre.max()) == want, (pix_fmt, i)


def test_one_decode_with_impossible_sprite_settings_still_makes_the_proxy(
    media: dict[str, Path], tmp_path: Path
) -> None:
    result = decode_once(
        media["ramp"],
        tmp_path / "proxy.mp4",
        sprites=(
            SpriteSpec(tile_width=8000, columns=5, image_format="webp"),
            tmp_path / "sprites",
        ),  # too wide
    )
    assert result.proxy.frame_count == FRAMES and result.sprites is None


# ---------------------------------------------------------------- a playable source copied into the proxy


@pytest.fixture(scope="module")
def ramp_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ramp as a browser would get it: H.264 High (near-lossless, not the lossless profile),
    B-frames, a keyframe every 50 frames, AAC."""
    path = tmp_path_factory.mktemp("gop") / "ramp_gop.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"color=c=black:s=160x120:r={FPS}:d={FRAMES / FPS},geq=lum='20+2*N':cb=128:cr=128",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={FRAMES / FPS}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "1", "-bf", "2", "-g", "50", "-pix_fmt", "yuv420p",
        "-profile:v", "high", "-c:a", "aac", "-shortest", str(path),
    )  # fmt: skip
    return path


def test_a_playable_source_is_copied_into_the_proxy_and_still_seeks_exactly(
    ramp_gop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []  # the files ffmpeg stream-copied to read them (probes, packet reads)
    real_run = subprocess.run

    def run(cmd: list[str], **kw: object) -> object:
        if cmd[-3:-1] in (["-f", "null"], ["-f", "framecrc"]):
            reads.append(cmd[cmd.index("-i") + 1])
        return real_run(cmd, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", run)
    source = tmp_path / "source.mp4"
    shutil.copyfile(ramp_gop, source)  # a file no other test inspected
    batches: list[np.ndarray] = []
    proxy = tmp_path / "proxy.mp4"
    result = decode_once(
        source,
        proxy,
        sprites=(SpriteSpec(fps=10, tile_width=80, columns=4, rows=3), tmp_path / "sprites"),
        analysis=Analysis(32, "gray", batches.append, batch_size=16),
        copy_playable=True,
    )
    assert result.proxy_copied
    # Each file read once: the source's inspection gave the copy check its packets, and the
    # proxy's gives clip export its keyframes.
    export_clip(proxy, tmp_path / "clip.mp4", 50, 60, FPS)
    assert reads == [str(source), str(proxy)]
    # The source's coded frames, bit for bit: the same pictures, its keyframes (not one per frame).
    assert frame_md5s(proxy) == frame_md5s(ramp_gop) and len(frame_md5s(proxy)) == FRAMES
    assert sum(key_flags(proxy)) == 2 and result.proxy.audio_codec == "aac"
    assert is_browser_playable(result.proxy) and packet_times(proxy).is_constant_rate(Fraction(FPS))
    # Sprites and analysis still see every frame in the proxy's numbering.
    frames = np.concatenate(batches)
    assert result.analysed_frames == FRAMES and [ramp_frame(Image.fromarray(frames[n])) for n in (0, 37, 99)] == [
        0, 37, 99,
    ]  # fmt: skip
    manifest = result.sprites
    assert manifest is not None and manifest.sprite_count == 40
    name, x, y = sprite_position(manifest, 62)
    with Image.open(tmp_path / "sprites" / name) as sheet:
        assert ramp_frame(sheet.crop((x + 8, y + 8, x + 72, y + 52))) == 60
    # Seeking by decoding stays frame-exact between the keyframes (0 and 50).
    paths = extract_keyframes(proxy, tmp_path / "kf", 40, 80, FPS, "multi")
    assert [ramp_frame(Image.open(p)) for p in paths] == [50, 60, 70]
    paths = extract_keyframes(proxy, tmp_path / "kf1", 13, 30, FPS, "midpoint")  # B-frames, no keyframe near
    assert [ramp_frame(Image.open(p)) for p in paths] == [f for _, f in keyframe_frames(13, 30, "midpoint")]


@pytest.mark.parametrize(
    ("which", "max_height", "why"),
    [
        ("ramp", 720, "profile High 4:4:4 Predictive"),  # lossless: a profile browsers do not play
        ("mkv", 720, "not H.264"),
        ("playable", 120, "not the proxy's"),  # larger than the proxy: scaled, so encoded
    ],
)
def test_a_source_unfit_to_be_the_proxy_is_encoded_all_intra(
    media: dict[str, Path], tmp_path: Path, which: str, max_height: int, why: str
) -> None:
    info = inspect_media(media[which])
    assert why in (copy_refusal(info, media[which], proxy_size(info.width, info.height, max_height)) or "")
    result = decode_once(media[which], tmp_path / "proxy.mp4", max_height=max_height, copy_playable=True)
    assert not result.proxy_copied and all(key_flags(tmp_path / "proxy.mp4"))


def test_a_variable_rate_source_is_not_copied(tmp_path: Path) -> None:
    vfr = tmp_path / "vfr.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={FPS}:duration=2",
        "-vf", "setpts='PTS+gte(N,20)*0.4/TB'", "-fps_mode", "vfr",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(vfr),
    )  # fmt: skip
    info = inspect_media(vfr)
    packets = packet_times(vfr)
    assert len(packets.pts) == 50 and not packets.is_constant_rate(Fraction(FPS))
    assert "constant" in (copy_refusal(info, vfr, (info.width, info.height)) or "")
    result = decode_once(vfr, tmp_path / "proxy.mp4", copy_playable=True)
    assert not result.proxy_copied


@pytest.mark.parametrize(("start", "end"), [(0, 10), (13, 30), (49, 51), (60, 100)])
def test_export_of_a_copied_proxy_is_frame_accurate(
    ramp_gop: Path, tmp_path: Path, start: int, end: int
) -> None:
    proxy = tmp_path / "proxy.mp4"
    assert decode_once(ramp_gop, proxy, copy_playable=True).proxy_copied
    out = export_clip(proxy, tmp_path / "clip.mp4", start, end, FPS)
    assert probe(out).frame_count == end - start
    paths = extract_keyframes(
        out, tmp_path / "kf", 0, end - start, FPS, "multi"
    )  # clip frame k is frame start + k
    assert [ramp_frame(Image.open(p)) for p in paths] == [
        f + start for _, f in keyframe_frames(0, end - start, "multi")
    ]
    assert inspect_media(out).video.duration == pytest.approx((end - start) / FPS, abs=0.03)
