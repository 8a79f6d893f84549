"""One decode of a video for everything made from all its frames: the review proxy, the sprite
sheets and the frames the shot detector analyses.

A single ffmpeg process decodes the source once; its filter graph makes the frame rate constant
(the ``fps`` filter: for a variable-rate source it can keep a frame or two fewer than
:func:`make_proxy`'s ``-r``, which duplicates to fill gaps; clips follow the proxy either way), then splits the frames three ways: an all-intra H.264 proxy (as :func:`make_proxy`), the sprite
sheets (as :func:`make_sprites`, in the proxy's geometry and frame numbering) and a reduced-size
raw video piped to this process, whose batches go to ``consume`` (the shot detector) while ffmpeg
keeps encoding. All three see the same frames, so frame ``n`` of the analysis is frame ``n`` of the
proxy and of the sprites.

With ``copy_playable`` a source that is already what the proxy would be in all but its keyframes
(H.264 8-bit 4:2:0 in a profile browsers play, within the proxy's size, frame ``n`` at ``n / fps``
from time 0: see :func:`copy_refusal`) is not re-encoded: its video is stream-copied into the proxy
(``+faststart``) and the decode only feeds the sprites and the analysis. Such a proxy has the
source's keyframes, not one per frame: seeking by decoding (keyframes) stays exact, a stream-copy
cut of it (clip export) does not.

The proxy is what the pass must deliver; sprites and analysis are extras: a failure of the
``consume`` callback is logged and the pass carries on without the analysis (the shots stage then
decodes the proxy on its own), while an ffmpeg failure fails the whole pass, as it would the proxy.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from infra.media._process import default_timeout, stderr_tail
from infra.media.children import child_options
from infra.media.ffmpeg import LOCAL_INPUT, MediaError, PixFmt, ffmpeg_exe, scaled_size
from infra.media.inspect import MediaInfo, inspect_media, inspect_packets
from infra.media.sprites import SpriteFormat, SpriteManifest, plan_sprites
from infra.media.transcode import _atomic_output, _check_distinct, _retime, exact_fps, proxy_sar, proxy_size

logger = logging.getLogger(__name__)

__all__ = ["Analysis", "PassResult", "SpriteSpec", "copy_refusal", "decode_once"]

FrameBatch = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class SpriteSpec:
    """The sprite sheets wanted from the pass (see :func:`infra.media.sprites.plan_sprites`)."""

    fps: float = 24.0
    tile_width: int = 640
    columns: int = 5
    rows: int = 5
    image_format: SpriteFormat = "jpeg"
    quality: int | None = None  # the format's default (:data:`infra.media.sprites.DEFAULT_QUALITY`)


@dataclass(frozen=True, slots=True)
class Analysis:
    """Frames for an analysis (shot detection): ``width`` wide (never wider than the proxy), in
    ``pix_fmt``, delivered to ``consume`` in batches of up to ``batch_size`` frames. ``ended`` is
    told how many frames ``consume`` took once the last is in (not after a failure of ``consume``),
    while ffmpeg may still be finishing the proxy and sprites and before the proxy is inspected:
    the analysis can finish meanwhile. The pass's result says whether those frames are the proxy's."""

    width: int
    pix_fmt: PixFmt
    consume: Callable[[FrameBatch], None]
    batch_size: int = 256
    ended: Callable[[int], None] | None = None


@dataclass(frozen=True, slots=True)
class PassResult:
    proxy: MediaInfo
    sprites: SpriteManifest | None  # None when not asked for or not rendered
    analysed_frames: int | None  # frames given to ``consume``; None when the analysis failed
    analysis_error: str | None
    seconds: float
    proxy_copied: bool = False  # the source's video was stream-copied into the proxy, not re-encoded


#: H.264 profiles every browser's ``<video>`` decodes (8-bit 4:2:0 is checked on the pixel format).
PLAYABLE_H264_PROFILES = frozenset({"Constrained Baseline", "Baseline", "Main", "High"})
_PLAYABLE_AUDIO = frozenset({"aac", "mp3"})


def copy_refusal(info: MediaInfo, src: Path, size: tuple[int, int]) -> str | None:
    """Why the video of ``src`` cannot be stream-copied into a proxy of ``size``, or None when it
    can: H.264 in a profile browsers play, ``yuv420p``, exactly ``size`` (so no scaling, even
    sides), container timing not repaired, and every frame ``n`` presented at ``n / fps`` from 0
    (read from the packets; a variable-rate or offset stream is re-encoded at a constant rate)."""
    if info.codec != "h264" or info.pix_fmt != "yuv420p":
        return f"video is {info.codec} {info.pix_fmt}, not H.264 yuv420p"
    if (info.width, info.height) != size:
        return f"{info.width}x{info.height} is not the proxy's {size[0]}x{size[1]}"
    if info.video.timing_repaired:
        return "the container's timing was repaired"
    packets = inspect_packets(src)  # read by the inspection that gave ``info``
    if packets.profile not in PLAYABLE_H264_PROFILES:
        return f"H.264 profile {packets.profile} is not one browsers play"
    if len(packets.pts) != info.frame_count or not packets.is_constant_rate(exact_fps(info.fps)):
        return f"frames are not at a constant {info.fps:g} fps from time 0"
    return None


def decode_once(
    src: Path,
    proxy_dst: Path,
    *,
    max_height: int = 720,
    preset: str = "ultrafast",
    crf: int = 28,
    sprites: tuple[SpriteSpec, Path] | None = None,
    analysis: Analysis | None = None,
    copy_playable: bool = False,
    timeout: float | None = None,
) -> PassResult:
    """Decode ``src`` once into the proxy ``proxy_dst``, sprite sheets in ``sprites[1]`` and
    analysis frames; with ``copy_playable`` a source fit to be the proxy is stream-copied instead
    of re-encoded. See the module docstring. Raises :class:`MediaError` when ffmpeg fails."""
    src, proxy_dst = Path(src), Path(proxy_dst)
    _check_distinct(src, proxy_dst)
    started = time.monotonic()
    info = inspect_media(src)
    w, h = proxy_size(info.width, info.height, max_height)
    sar = proxy_sar(info.width, info.height, w, h)
    fps = exact_fps(info.fps)
    refusal = copy_refusal(info, src, (w, h)) if copy_playable else "not asked"
    copied = refusal is None
    if copy_playable and not copied:
        logger.info("%s: proxy re-encoded, not copied: %s", src, refusal)
    plan = None
    if sprites is not None:
        spec, _ = sprites
        try:
            plan = plan_sprites(
                w, h, info.frame_count, info.fps, spec.fps, spec.tile_width, spec.columns, spec.rows,
                image_format=spec.image_format, quality=spec.quality,
            )  # fmt: skip
        except ValueError as problem:  # the sprites stage renders (and fails) on its own
            logger.warning("%s: no sprites in the decode pass: %s", src, problem)
    branches = ([] if copied else ["[p]"]) + (["[s]"] if plan else []) + (["[a]"] if analysis else [])
    graph = (
        [
            f"[0:v:0]setpts=PTS-STARTPTS,fps={fps.numerator}/{fps.denominator},"
            + (f"split={len(branches)}{''.join(branches)}" if len(branches) > 1 else f"null{branches[0]}")
        ]
        if branches
        else []
    )
    if not copied:
        graph.append(
            f"[p]scale={w}:{h}:flags=bicubic,setsar={sar.numerator}/{sar.denominator},format=yuv420p[proxy]"
        )
    analysis_size = (0, 0)
    if plan is not None:
        graph.append(plan.graph("[s]"))
    if analysis is not None:
        analysis_size = scaled_size(w, h, min(analysis.width, w))
        aw, ah = analysis_size
        graph.append(f"[a]scale={aw}:{ah}:flags=area,format={analysis.pix_fmt}[analysis]")

    sprite_work: Path | None = None
    if plan is not None and sprites is not None:
        sprites[1].mkdir(parents=True, exist_ok=True)
        sprite_work = Path(tempfile.mkdtemp(prefix=".sprites-", dir=sprites[1]))
    try:
        with _atomic_output(proxy_dst) as tmp:
            args = [
                ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error",
                # a copied proxy leaves the graph light (tiles, analysis): its filters on one thread,
                # as the decoder's threads, the encoders and the analysis keep the cores busy and
                # slice threads only added switching (CPU -4 %); the proxy's own scale wants them
                *(["-filter_complex_threads", "1"] if copied else []),
                *LOCAL_INPUT, *_retime(info), "-i", str(src),
                *(["-filter_complex", ";".join(graph)] if graph else []),
                *(_copy_args(info) if copied else _encode_args(preset, crf)),
                "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ]  # fmt: skip
            if plan is not None and sprite_work is not None:
                args += plan.output_args(sprite_work)
            if analysis is not None:
                args += ["-map", "[analysis]", "-fps_mode", "passthrough", "-f", "rawvideo"]
                args += ["-pix_fmt", analysis.pix_fmt, "pipe:1"]
            limit = timeout or default_timeout(info.duration, factor=10.0)
            analysed, error = _run(args, analysis, analysis_size, limit, src)
        proxy = inspect_media(proxy_dst)
        manifest = None
        if plan is not None and sprites is not None and sprite_work is not None:
            if proxy.frame_count != plan.source_frame_count:  # the geometry follows the proxy
                plan = plan_sprites(
                    w, h, proxy.frame_count, info.fps, *_spec_args(sprites[0]),
                    image_format=sprites[0].image_format, quality=sprites[0].quality,
                )  # fmt: skip
            try:
                manifest = plan.finish(sprite_work, sprites[1], src)
            except MediaError as problem:  # the proxy stands; the sprites stage renders on its own
                logger.warning("%s: sprites of the decode pass unusable: %s", src, problem)
    finally:
        if sprite_work is not None:
            shutil.rmtree(sprite_work, ignore_errors=True)
    if analysed is not None and analysed != proxy.frame_count:
        error = f"analysis saw {analysed} frames, the proxy has {proxy.frame_count}"
        analysed = None
    if proxy.frame_count != info.frame_count:
        logger.warning("proxy %s has %d frames, source %s has %d", proxy_dst, proxy.frame_count, src,
                       info.frame_count)  # fmt: skip
    seconds = time.monotonic() - started
    logger.info(
        "one decode of %s: proxy %dx%d %s, %d frames, %s sprites, analysis %s, in %.2f s (%.0f fps)",
        src, proxy.width, proxy.height, "copied" if copied else "all-intra", proxy.frame_count,
        manifest.sprite_count if manifest else "no", error or f"{analysed} frames",
        seconds, proxy.frame_count / max(seconds, 1e-9),
    )  # fmt: skip
    return PassResult(proxy, manifest, analysed, error, seconds, copied)


def _encode_args(preset: str, crf: int) -> list[str]:
    """The all-intra proxy from the graph's ``[proxy]`` pad (as :func:`make_proxy`)."""
    return [
        "-map", "[proxy]", "-map", "0:a:0?", "-sn", "-dn", "-fps_mode", "passthrough",
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-tune", "fastdecode",
        "-g", "1", "-keyint_min", "1", "-bf", "0", "-sc_threshold", "0",
        "-af", "asetpts=PTS-STARTPTS", "-c:a", "aac", "-b:a", "64k", "-ac", "2",
    ]  # fmt: skip


def _copy_args(info: MediaInfo) -> list[str]:
    """The source's video stream-copied; its audio copied when browsers play it, else AAC."""
    audio = (
        ["-c:a", "copy"]
        if info.audio_codec in _PLAYABLE_AUDIO
        else ["-af", "asetpts=PTS-STARTPTS", "-c:a", "aac", "-b:a", "64k", "-ac", "2"]
    )
    return ["-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn", "-c:v", "copy", *audio]


def _spec_args(spec: SpriteSpec) -> tuple[float, int, int, int]:
    return spec.fps, spec.tile_width, spec.columns, spec.rows


def _run(
    args: list[str], analysis: Analysis | None, size: tuple[int, int], timeout: float, src: Path
) -> tuple[int | None, str | None]:
    """Run the pass; return (frames given to the analysis, why the analysis failed)."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if analysis is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **child_options(),
    )
    assert proc.stderr is not None
    err_chunks: list[bytes] = []

    stderr = proc.stderr

    def drain() -> None:
        for chunk in iter(lambda: stderr.read(4096), b""):
            if sum(map(len, err_chunks)) < 64_000:
                err_chunks.append(chunk)

    err_thread = threading.Thread(target=drain, daemon=True)
    err_thread.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    analysed: int | None = None
    error: str | None = None
    try:
        if analysis is not None and proc.stdout is not None:
            analysed, error = _feed(proc.stdout, analysis, size)
    except BaseException:  # interrupted (a worker's time limit): stop ffmpeg with it
        proc.kill()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        returncode = proc.wait()
        timer.cancel()
        err_thread.join(timeout=5)
        proc.stderr.close()
    err = b"".join(err_chunks).decode("utf-8", "replace")
    if timed_out.is_set():
        raise MediaError(f"decoding once for proxy, sprites and shots timed out after {timeout:.0f} s", src)
    if returncode != 0:
        raise MediaError(f"making all-intra proxy failed: ffmpeg exit {returncode} ({stderr_tail(err)})", src)
    return analysed, error


def _feed(stdout: IO[bytes], analysis: Analysis, size: tuple[int, int]) -> tuple[int | None, str | None]:
    """Read the analysis frames and hand them over; after a failure of ``consume`` keep reading
    (and discarding) so ffmpeg finishes the proxy and sprites."""
    width, height = size
    channels = 3 if analysis.pix_fmt == "rgb24" else 1
    frame_bytes = width * height * channels
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, 3)
    count = 0
    error: str | None = None
    for buf in _chunks(stdout, frame_bytes * analysis.batch_size):
        n = len(buf) // frame_bytes
        if n == 0:
            continue
        count += n
        if error is not None:
            continue
        try:
            analysis.consume(np.frombuffer(buf[: n * frame_bytes], dtype=np.uint8).reshape((n, *shape)))
        except Exception as exc:  # the analysis is an extra: the shots stage decodes on its own
            logger.warning("frame analysis failed after %d frames, carrying on without it: %s", count, exc)
            error = f"{type(exc).__name__}: {exc}"
    if error is None and analysis.ended is not None:
        analysis.ended(count)
    return (None if error else count), error


def _chunks(stdout: IO[bytes], size: int) -> Iterator[bytes]:
    read = stdout.read
    while True:
        buf: bytes = read(size)
        if not buf:
            return
        while len(buf) < size:  # short reads happen mid-stream on pipes: fill the batch
            more: bytes = read(size - len(buf))
            if not more:
                break
            buf += more
        yield buf
