"""Browser-playable normalisation, the all-intra review proxy and frame-accurate clip export.

Frame numbers are 0-based indices into the video's frames; a clip is the half-open range
``[start_frame, end_frame)``. The proxy is encoded with every frame a keyframe (``-g 1``), so a
stream copy can start at any frame: :func:`export_clip` never re-encodes and is exact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from infra.media._process import default_timeout, run_ffmpeg
from infra.media.ffmpeg import LOCAL_INPUT, MediaError
from infra.media.inspect import MediaInfo, inspect_media, inspect_packets

logger = logging.getLogger(__name__)

__all__ = [
    "NormaliseResult",
    "exact_fps",
    "export_clip",
    "frame_time",
    "is_browser_playable",
    "make_proxy",
    "normalise",
    "proxy_size",
]

_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
_PLAYABLE_PIX_FMTS = frozenset({"yuv420p", "yuvj420p"})
_PLAYABLE_AUDIO = frozenset({"aac", "mp3"})
_NTSC_BASES = (24, 30, 48, 60, 120)


def exact_fps(fps: float) -> Fraction:
    """``fps`` as an exact fraction; 29.97 and friends become 30000/1001 etc.

    ffmpeg prints frame rates rounded (``29.97 fps``); timestamps computed from the rounded value
    drift by ~14 ms after 4 hours, close to half a frame, so NTSC rates are snapped back.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        if abs(fps - float(ntsc)) < 0.006:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def frame_time(frame: int, fps: float) -> float:
    """Presentation time in seconds of ``frame`` in a constant-rate video."""
    return float(frame / exact_fps(fps))


def is_browser_playable(info: MediaInfo) -> bool:
    """True when a browser's ``<video>`` plays the file as is: MP4 (not QuickTime) with H.264
    8-bit 4:2:0 video and AAC/MP3 audio or no audio."""
    if info.container != _MP4_FAMILY or (info.major_brand or "").strip() == "qt":
        return False
    if info.codec != "h264" or info.pix_fmt not in _PLAYABLE_PIX_FMTS:
        return False
    return info.audio_codec is None or info.audio_codec in _PLAYABLE_AUDIO


@dataclass(frozen=True, slots=True)
class NormaliseResult:
    """``path`` is the browser-playable file: ``src`` itself when nothing was needed."""

    path: Path
    transcoded: bool
    info: MediaInfo  # of ``path``


@contextmanager
def _atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``dst`` (same suffix) that replaces ``dst`` on success."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{uuid.uuid4().hex[:8]}.tmp{dst.suffix}")
    try:
        yield tmp
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def _check_distinct(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        raise ValueError(f"source and destination are the same file: {src}")


def normalise(src: Path, dst: Path, *, timeout: float | None = None) -> NormaliseResult:
    """Make ``src`` browser-playable (H.264/AAC MP4, +faststart), writing ``dst`` only if needed.

    An already playable ``src`` is left alone and returned (``transcoded=False``, ``dst`` not
    written). When the video is already H.264 4:2:0 it is stream-copied and only the audio and/or
    container change; otherwise the video is re-encoded with libx264 CRF 18.
    """
    src, dst = Path(src), Path(dst)
    info = inspect_media(src)
    if is_browser_playable(info) and not info.video.timing_repaired:
        logger.info("%s is browser-playable; not normalising", src)
        return NormaliseResult(src, False, info)
    _check_distinct(src, dst)
    # A stream copy would keep a lying time scale: re-timed video is re-encoded.
    copy_video = (
        info.codec == "h264" and info.pix_fmt in _PLAYABLE_PIX_FMTS and not info.video.timing_repaired
    )
    video_args = (
        ["-c:v", "copy"]
        if copy_video
        else ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
    )
    if info.audio_codec is None:
        audio_args = ["-an"]
    elif info.audio_codec in _PLAYABLE_AUDIO:
        audio_args = ["-c:a", "copy"]
    else:
        audio_args = ["-c:a", "aac", "-b:a", "192k"]
    with _atomic_output(dst) as tmp:
        run_ffmpeg(
            [
                *LOCAL_INPUT, *_retime(info), "-i", str(src), "-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn",
                *video_args, *audio_args, "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ],
            what="normalising to H.264/AAC MP4",
            path=src,
            timeout=timeout or default_timeout(info.duration, factor=6.0),
        )  # fmt: skip
    out = inspect_media(dst)
    logger.info("normalised %s -> %s (video %s)", src, dst, "copied" if copy_video else "re-encoded")
    return NormaliseResult(dst, True, out)


def _retime(info: MediaInfo) -> list[str]:
    """Input options that replace a lying container timing by a constant rate (see ``probe``)."""
    if not info.video.timing_repaired:
        return []
    rate = exact_fps(info.fps)
    return ["-ignore_editlist", "1", "-r", f"{rate.numerator}/{rate.denominator}"]


PROXY_MIN_SIDE = 16


def proxy_size(width: int, height: int, max_height: int = 720) -> tuple[int, int]:
    """Largest even (w, h) within ``round(max_height*16/9)`` x ``max_height`` keeping the aspect
    ratio; never upscales. A side is never under :data:`PROXY_MIN_SIDE` pixels (or the source's
    own, rounded up to even), so extreme aspect ratios (4096x16) still get a usable proxy; the
    proxy's sample aspect ratio then keeps the picture's shape (see :func:`proxy_sar`)."""
    if width <= 0 or height <= 0 or max_height <= 0:
        raise ValueError("width, height and max_height must be positive")
    max_width = round(max_height * 16 / 9)
    scale = min(1.0, max_width / width, max_height / height)

    def side(source: int) -> int:
        floor = min(PROXY_MIN_SIDE, (source + 1) // 2 * 2)
        return max(floor, 2, int(source * scale) // 2 * 2)

    return side(width), side(height)


def proxy_sar(width: int, height: int, w: int, h: int) -> Fraction:
    """Sample aspect ratio that shows a ``w`` x ``h`` proxy in the source's shape (square pixels
    assumed in the source); 1 unless a minimum side bent the proportions by more than 1 %."""
    sar = Fraction(width * h, height * w)
    return sar.limit_denominator(1000) if abs(sar - 1) > Fraction(1, 100) else Fraction(1)


def make_proxy(
    src: Path,
    dst: Path,
    max_height: int = 720,
    *,
    crf: int = 28,
    preset: str = "ultrafast",
    timeout: float | None = None,
) -> MediaInfo:
    """Encode the review proxy: all-intra H.264 (every frame a keyframe), fit within 1280x720
    (for ``max_height=720``), even dimensions, ``-tune fastdecode``, AAC 64k, +faststart.
    ``ultrafast`` encodes about twice as fast as ``veryfast`` for files about a quarter larger, and
    decodes faster too: the right trade for a review proxy.

    The frame rate is kept and made constant, so frame ``n`` is at ``n / fps``; the proxy has the
    same frames as ``src`` and starts at time 0. Returns the proxy's :class:`MediaInfo`.
    """
    src, dst = Path(src), Path(dst)
    _check_distinct(src, dst)
    info = inspect_media(src)
    w, h = proxy_size(info.width, info.height, max_height)
    sar = proxy_sar(info.width, info.height, w, h)
    fps = exact_fps(info.fps)
    vf = f"setpts=PTS-STARTPTS,scale={w}:{h}:flags=bicubic,setsar={sar.numerator}/{sar.denominator},format=yuv420p"
    with _atomic_output(dst) as tmp:
        run_ffmpeg(
            [
                *LOCAL_INPUT, *_retime(info), "-i", str(src), "-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn",
                "-vf", vf, "-fps_mode", "cfr", "-r", f"{fps.numerator}/{fps.denominator}",
                "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-tune", "fastdecode",
                "-g", "1", "-keyint_min", "1", "-bf", "0", "-sc_threshold", "0",
                "-af", "asetpts=PTS-STARTPTS", "-c:a", "aac", "-b:a", "64k", "-ac", "2",
                "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ],
            what="making all-intra proxy",
            path=src,
            timeout=timeout or default_timeout(info.duration, factor=8.0),
        )  # fmt: skip
    out = inspect_media(dst)
    if out.frame_count != info.frame_count:
        logger.warning(
            "proxy %s has %d frames, source %s has %d", dst, out.frame_count, src, info.frame_count
        )
    logger.info("proxy %s: %dx%d, %d frames", dst, out.width, out.height, out.frame_count)
    return out


def export_clip(
    proxy: Path,
    dst: Path,
    start_frame: int,
    end_frame: int,
    fps: float,
    *,
    timeout: float = 600.0,
) -> Path:
    """Write frames ``[start_frame, end_frame)`` of ``proxy`` to ``dst`` (MP4). An all-intra proxy
    is cut by stream copy (frame-accurate because every proxy frame is a keyframe; nothing is
    re-encoded); a proxy copied from a playable source (keyframes only here and there) is decoded
    from half a frame before ``start_frame`` and the clip encoded (libx264 veryfast CRF 18, AAC).

    Audio is copied for the same span (to AAC-frame granularity).
    """
    proxy, dst = Path(proxy), Path(dst)
    _check_distinct(proxy, dst)
    if start_frame < 0 or end_frame <= start_frame:
        raise ValueError(f"invalid frame range [{start_frame}, {end_frame})")
    if not proxy.is_file():
        raise MediaError("proxy file does not exist", proxy)
    rate = exact_fps(fps)
    count = end_frame - start_frame
    packets = inspect_packets(proxy, timeout)  # the proxy stage's inspection read them
    if packets.keyframes < len(packets.pts):
        return _encode_clip(proxy, dst, start_frame, count, rate, timeout)
    # Seek half a frame past the start: the demuxer lands on the keyframe at or before that time,
    # which is exactly start_frame whatever the rounding; make_zero then rebases the timestamps.
    seek = float((start_frame + Fraction(1, 2)) / rate) if start_frame > 0 else 0.0
    with _atomic_output(dst) as tmp:
        run_ffmpeg(
            [
                "-ss", f"{seek:.6f}", "-i", str(proxy), "-map", "0:v:0", "-map", "0:a:0?",
                "-frames:v", str(count), "-t", f"{float(count / rate):.6f}",
                "-c", "copy", "-avoid_negative_ts", "make_zero",
                "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ],
            what=f"exporting frames [{start_frame}, {end_frame})",
            path=proxy,
            timeout=timeout,
        )  # fmt: skip
    logger.info("exported frames [%d, %d) of %s to %s", start_frame, end_frame, proxy, dst)
    return dst


def _encode_clip(
    proxy: Path, dst: Path, start_frame: int, count: int, rate: Fraction, timeout: float
) -> Path:
    """Frames ``[start_frame, start_frame + count)`` of a proxy that is not all-intra, encoded: the
    input is seeked to half a frame before the start and decoded from the keyframe before it, so the
    first frame kept is exactly ``start_frame`` (as :mod:`infra.media.keyframes` does)."""
    seek = float((start_frame - Fraction(1, 2)) / rate) if start_frame > 0 else 0.0
    with _atomic_output(dst) as tmp:
        run_ffmpeg(
            [
                "-ss", f"{seek:.6f}", "-i", str(proxy), "-map", "0:v:0", "-map", "0:a:0?",
                "-frames:v", str(count), "-t", f"{float(count / rate):.6f}", "-fps_mode", "passthrough",
                "-vf", "setpts=PTS-STARTPTS", "-af", "asetpts=PTS-STARTPTS",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ],
            what=f"encoding frames [{start_frame}, {start_frame + count})",
            path=proxy,
            timeout=timeout,
        )  # fmt: skip
    logger.info(
        "exported frames [%d, %d) of %s to %s (encoded)", start_frame, start_frame + count, proxy, dst
    )
    return dst
