"""The ffmpeg binary, probing and reduced-resolution decoding.

Heaters uses the static ffmpeg shipped with ``imageio-ffmpeg`` (there is no system ffmpeg and no
ffprobe). :func:`probe` reads the container header and counts video packets with a stream copy
(no decoding, exact frame count). :func:`decode_frames` / :func:`decode_batches` decode through a
rawvideo pipe at a reduced resolution, which is what makes frame analysis cheap.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import IO, Literal

import numpy as np
from numpy.typing import NDArray

from infra.media.children import child_options

logger = logging.getLogger(__name__)

PixFmt = Literal["gray", "rgb24"]
Frame = NDArray[np.uint8]

__all__ = [
    "Frame",
    "MediaError",
    "PacketTimes",
    "PixFmt",
    "VideoInfo",
    "check_decode",
    "check_media_file",
    "decode_batches",
    "decode_frames",
    "drain_stream",
    "ffmpeg_exe",
    "frame_shape",
    "packet_times",
    "probe",
    "probe_with_header",
    "probe_with_packets",
    "read_frames",
    "scaled_size",
    "start_decoder",
]


class MediaError(Exception):
    """A media file cannot be used. ``reason`` is a short human-readable explanation."""

    def __init__(self, reason: str, path: Path | str | None = None) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        super().__init__(f"{reason}: {path}" if path is not None else reason)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`probe` knows about the first video stream of a file."""

    duration: float  # seconds (frame_count / fps when the container has no duration)
    fps: float
    frame_count: int  # exact: video packets counted by a stream copy
    width: int
    height: int
    codec: str
    # The container's timing was unusable (an invalid or absurd media time scale): frame_count and
    # fps come from the packets themselves, and the file must be re-timed before use (normalise does).
    timing_repaired: bool = False


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise MediaError("imageio-ffmpeg is not installed") from exc
    exe: str = imageio_ffmpeg.get_ffmpeg_exe()
    return exe


@lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    """The first line of ``ffmpeg -version`` (benchmarks record which build decoded)."""
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, check=False, timeout=30
    )
    return done.stdout.splitlines()[0] if done.stdout else f"unknown (exit {done.returncode})"


_STREAM_RE = re.compile(r"Stream #\d+:\d+[^:]*: Video: (?P<codec>[A-Za-z0-9_]+)(?P<rest>.*)")
_SIZE_RE = re.compile(r"\b(?P<w>[1-9]\d{0,4})x(?P<h>[1-9]\d{0,4})\b")
_FPS_RE = re.compile(r"(?P<v>\d+(?:\.\d+)?)(?P<k>k?) (?:fps|tbr)\b")
_DURATION_RE = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)")
_TRUNCATION_MARKERS = (
    "partial file",
    "corrupt input packet",
    "Invalid NAL unit size",
    "error reading header",
)


def check_media_file(path: Path) -> None:
    """Raise :class:`MediaError` unless ``path`` is a non-empty regular file."""
    if not path.exists():
        raise MediaError("file does not exist", path)
    if not path.is_file():
        raise MediaError("not a regular file", path)
    if path.stat().st_size == 0:
        raise MediaError("file is empty", path)


def _parse_fps(rest: str) -> float | None:
    for match in _FPS_RE.finditer(rest):
        value = float(match["v"]) * (1000.0 if match["k"] else 1.0)
        if value > 0:
            return value
    return None


#: Input option for every file ffmpeg reads here: it may read the file itself but never open a
#: network URL named inside it (an HLS or DASH playlist disguised as a video).
LOCAL_INPUT: tuple[str, ...] = ("-protocol_whitelist", "file,pipe")

#: Frame rates outside this range mean the container's time scale lies (see :func:`probe`).
PLAUSIBLE_FPS = (1.0, 1000.0)
DEFAULT_FPS = 25.0


def _count_packets(path: Path, timeout: float, *, ignore_editlist: bool = False) -> int:
    """Packets of the first video stream, counted by a stream copy to the ``framecrc`` muxer."""
    return _packet_lines(
        _copy_video(path, "framecrc", "probe", timeout, ignore_editlist=ignore_editlist).stdout
    )


def _packet_lines(out: bytes) -> int:
    """Frames shown: the packets a ``framecrc`` stream copy printed (one line each, after its ``#``
    header) but those flagged "discard" (``F=`` with bit 4): packets an MP4/MOV edit list hides, as
    a stream copy cut between keyframes keeps its group's first ones, which a decode never gives.
    (The stats line's ``frame=`` is no count to rely on: ffmpeg 7.0, the imageio-ffmpeg 0.6 and 0.7
    wheels' build, leaves it out of a stream copy's stats.)"""
    return sum(not _packet_flags(line) & _DISCARD for line in _packet_fields(out.decode("ascii", "replace")))


_DISCARD = 4  # AV_PKT_FLAG_DISCARD: decoded for the frames after it, never shown


def _packet_fields(out: str) -> Iterator[list[str]]:
    """Each packet line of a ``framecrc`` output: stream, dts, pts, duration, size, crc[, F=flags]."""
    for line in out.splitlines():
        if line.strip() and not line.startswith("#"):
            yield [f.strip() for f in line.split(",")]


def _packet_flags(fields: Sequence[str]) -> int:
    """A packet line's flags (none printed: a keyframe's, 1)."""
    return int(fields[6][2:], 16) if len(fields) > 6 and fields[6].startswith("F=") else 1


def _copy_video(
    path: Path, muxer: str, what: str, timeout: float, *, ignore_editlist: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """Stream-copy the first video stream of ``path`` (checked to be a non-empty file) to ``muxer``
    on stdout, nothing decoded (``ignore_editlist``: every packet, whatever the container's edit
    list shows); ffmpeg's exit status is the caller's to judge."""
    check_media_file(path)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", *(["-ignore_editlist", "1"] if ignore_editlist else []),
        *LOCAL_INPUT, "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", muxer, "-",
    ]  # fmt: skip
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, **child_options())
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{what} timed out after {timeout:.0f} s", path) from exc


def probe(path: Path | str, timeout: float = 600.0) -> VideoInfo:
    """Describe the first video stream of ``path``; raise :class:`MediaError` if it is unusable.

    The frame count is exact for the packets present: ffmpeg stream-copies the video to a null
    muxer (no decoding, I/O bound). A file whose data ends early ("partial file") is reported as
    truncated. A header can lie: when the stream's time scale is invalid or gives an absurd frame
    rate, the container's edit list (in those units) may hide all but one frame, so the packets are
    counted again ignoring it, the rate is taken from that count and the container's duration, and
    ``timing_repaired`` is set.
    """
    return probe_with_header(path, timeout)[0]


def probe_with_header(path: Path | str, timeout: float = 600.0) -> tuple[VideoInfo, str]:
    """:func:`probe`, and what ffmpeg said of the file's container and streams on the way (the
    ``ffmpeg -i`` header dump, followed by the stream copy's own lines)."""
    path = Path(path)
    proc = _copy_video(path, "framecrc", "probe", timeout)
    err = proc.stderr.decode("utf-8", "replace")
    return _probed(path, proc.returncode, err, timeout, _packet_lines(proc.stdout)), err


def probe_with_packets(path: Path | str, timeout: float = 600.0) -> tuple[VideoInfo, str, PacketTimes | None]:
    """:func:`probe_with_header` and :func:`packet_times` from one ffmpeg run: the probe's stream
    copy goes to the ``framecrc`` muxer instead of ``null`` (the same header and frame count on
    stderr, a line per packet on stdout; measured on a 150 s 720p file: 0.04 CPU s either way).
    The packets are None when ffmpeg printed none it could read (``packet_times`` then says why)."""
    path = Path(path)
    proc = _copy_video(path, "framecrc", "probe", timeout)
    err = proc.stderr.decode("utf-8", "replace")
    info = _probed(path, proc.returncode, err, timeout, _packet_lines(proc.stdout))
    return info, err, _packets(proc.stdout.decode("ascii", "replace"), err)


def _probed(path: Path, returncode: int, err: str, timeout: float, packets: int) -> VideoInfo:
    """The :class:`VideoInfo` of what a ``framecrc`` stream copy of ``path`` said on stderr and
    the ``packets`` it printed (see :func:`probe`)."""
    stream = _STREAM_RE.search(err)
    if stream is None:
        if "Invalid data found" in err or "moov atom not found" in err:
            raise MediaError("not a readable video (invalid data or truncated container)", path)
        if "Stream #" in err:
            raise MediaError("no video stream", path)
        raise MediaError(f"not a readable video ({_last_line(err)})", path)
    if returncode != 0 and "Stream map" in err:
        raise MediaError("no video stream", path)
    if any(marker in err for marker in _TRUNCATION_MARKERS):
        raise MediaError("truncated or corrupt video data", path)
    if returncode != 0:
        raise MediaError(f"ffmpeg failed ({_last_line(err)})", path)

    codec = stream["codec"]
    rest = stream["rest"]
    size = _SIZE_RE.search(rest)
    if size is None:
        raise MediaError("video stream has no frame size", path)
    width, height = int(size["w"]), int(size["h"])
    fps = _parse_fps(rest)
    frame_count = packets
    if frame_count <= 0:
        raise MediaError("video stream has no frames", path)
    if fps is None:
        raise MediaError("video stream has no frame rate", path)
    dur = _DURATION_RE.search(err)
    container_duration = (
        int(dur["h"]) * 3600 + int(dur["m"]) * 60 + float(dur["s"]) if dur is not None else None
    )
    low, high = PLAUSIBLE_FPS
    repaired = False
    if "Invalid mdhd time scale" in err or not low <= fps <= high:
        packets = _count_packets(path, timeout, ignore_editlist=True)
        if packets > frame_count:
            logger.warning(
                "%s: the container's timing is unusable (%.4g fps, %d frame(s) shown of %d packets); "
                "counting the packets",
                path, fps, frame_count, packets,
            )  # fmt: skip
            frame_count, repaired = packets, True
            rate = frame_count / container_duration if container_duration else 0.0
            fps = rate if low <= rate <= high else DEFAULT_FPS
    duration = container_duration if container_duration is not None and not repaired else frame_count / fps
    info = VideoInfo(duration, fps, frame_count, width, height, codec, repaired)
    logger.debug("probed %s: %s", path, info)
    return info


@dataclass(frozen=True, slots=True)
class PacketTimes:
    """The packets of a file's first video stream, read by a stream copy (nothing decoded)."""

    profile: str | None  # the codec profile ffmpeg names, e.g. "High" or "High 4:4:4 Predictive"
    time_base: Fraction  # of ``pts``
    # presentation timestamps in ``time_base`` units, in presentation order (8 bytes each: the
    # inspections remember them, see :func:`infra.media.inspect.inspect_packets`)
    pts: Sequence[int]
    keyframes: int  # packets flagged as keyframes
    # frames where a decode can start and give exactly the frames a whole decode gives from there:
    # keyframes that every packet before them (in decode order) precedes in time and every packet
    # after them follows (no frame of an earlier group shown after it, none of its own before it)
    clean_starts: Sequence[int] = ()
    container: str | None = None  # ffmpeg's name of the file's format, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    # the first ``hidden`` packets in presentation order are decoded but never shown: an MP4/MOV edit
    # list starts the video after them (a stream copy cut between keyframes), ffmpeg flags them
    # "discard", and a decode's frame ``i`` is packet ``hidden + i``
    hidden: int = 0

    def is_constant_rate(self, rate: Fraction) -> bool:
        """Whether packet ``n`` is presented at ``n / rate`` (within half a frame) from time 0, for
        every packet: a copy of this stream is then a proxy whose frame ``n`` is at ``n / fps``."""
        if not self.pts:
            return False
        step = 1 / (rate * self.time_base)  # one frame in time-base units, p / q
        p, q = step.numerator, step.denominator
        # |pts - n p / q| <= p / 2q, in integers
        return all(abs(2 * q * pts - 2 * n * p) <= p for n, pts in enumerate(self.pts))


_PROFILE_RE = re.compile(r"Stream #\d+:\d+[^:]*: Video: [A-Za-z0-9_]+ \((?P<profile>[^)]+)\)")
_INPUT_RE = re.compile(r"^Input #0, (?P<format>\S+), from ", re.MULTILINE)
_TIME_BASE_RE = re.compile(r"^#tb 0: (?P<num>\d+)/(?P<den>\d+)", re.MULTILINE)


def packet_times(path: Path | str, timeout: float = 600.0) -> PacketTimes:
    """Read every packet's presentation time of the first video stream (``framecrc`` of a stream
    copy: I/O bound like :func:`probe`); raise :class:`MediaError` when ffmpeg cannot."""
    path = Path(path)
    proc = _copy_video(path, "framecrc", "reading packet times", timeout)
    err = proc.stderr.decode("utf-8", "replace")
    packets = _packets(proc.stdout.decode("ascii", "replace"), err) if proc.returncode == 0 else None
    if packets is None:
        raise MediaError(f"cannot read packet times ({_last_line(err)})", path)
    return packets


def _packets(out: str, err: str) -> PacketTimes | None:
    """The packets a ``framecrc`` stream copy printed (``out``; ``err`` names the profile), or
    None when it printed no time base."""
    base = _TIME_BASE_RE.search(out)
    if base is None:
        return None
    pts: list[int] = []
    keys: list[int] = []  # decode-order indices of the keyframes
    hidden: list[int] = []  # the pts of packets flagged "discard" (an edit list hides them)
    for fields in _packet_fields(out):
        pts.append(int(fields[2]))
        flags = _packet_flags(fields)
        if flags & 1:
            keys.append(len(pts) - 1)
        if flags & _DISCARD:
            hidden.append(pts[-1])
    # the hidden packets are those presented first, or no decode index maps to a packet
    shown = sorted(pts)[len(hidden) :]
    mapped = not hidden or not shown or max(hidden) < shown[0]
    starts = [j for j in _clean_starts(pts, keys) if not shown or pts[j] >= shown[0]] if mapped else []
    profile = _PROFILE_RE.search(err)
    return PacketTimes(
        profile=profile["profile"] if profile else None,
        time_base=Fraction(int(base["num"]), int(base["den"])),
        pts=array("q", sorted(pts)),
        keyframes=len(keys),
        clean_starts=starts,
        container=container["format"] if (container := _INPUT_RE.search(err)) else None,
        hidden=len(hidden),
    )


def _clean_starts(pts: Sequence[int], keys: Sequence[int]) -> list[int]:
    """The keyframes (decode-order indices ``keys`` into ``pts``) that every earlier packet
    precedes and every later one follows in time; such a keyframe is also frame number ``j`` in
    presentation order. The last packet counts too (an all-intra stream's keyframes are all clean)."""
    if not pts:
        return []
    later = np.minimum.accumulate(np.asarray(pts, dtype=np.int64)[::-1])[::-1]  # min of pts[j:]
    earlier = np.maximum.accumulate(np.asarray(pts, dtype=np.int64))  # max of pts[: j + 1]
    n = len(pts)
    return [
        j for j in keys
        if 0 < j < n and earlier[j - 1] < pts[j] and (j == n - 1 or pts[j] < later[j + 1])
    ]  # fmt: skip


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def scaled_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) for decoding at ``target_width`` keeping the aspect ratio (even height, >= 2)."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    h = max(2, round(height * target_width / width / 2) * 2)
    return target_width, h


def drain_stream(stream: IO[bytes], sink: list[bytes], limit: int = 64_000) -> None:
    """Read ``stream`` to its end (a child's stderr, so that the child never blocks on it), keeping
    its first ``limit`` bytes in ``sink``."""
    size = 0
    for chunk in iter(lambda: stream.read(4096), b""):
        if size < limit:
            sink.append(chunk)
            size += len(chunk)


def start_decoder(
    path: Path,
    width: int,
    height: int,
    pix_fmt: PixFmt,
    *,
    threads: int,
    fast: bool,
    start: str | None = None,
    frames: int | None = None,
) -> subprocess.Popen[bytes]:
    """An ffmpeg child decoding ``path``'s first video stream to raw ``pix_fmt`` frames on stdout
    (``start``: from that time, as ``-ss`` reads it; ``frames``: at most that many)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-threads", str(threads)]
    if threads:  # a child that decodes on ``threads`` threads scales on as many
        cmd += ["-filter_threads", str(threads)]
    if fast:
        cmd += ["-skip_loop_filter", "all", "-flags2", "+fast"]
    if start is not None:
        cmd += ["-ss", start]
    cmd += [
        "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", f"scale={width}:{height}:flags=area,format={pix_fmt}",
        "-fps_mode", "passthrough", *(["-frames:v", str(frames)] if frames is not None else []),
        "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **child_options()
    )


def decode_batches(
    path: Path | str,
    width: int,
    height: int,
    pix_fmt: PixFmt = "gray",
    batch_size: int = 256,
    *,
    threads: int = 0,
    fast: bool = True,
    strict: bool = True,
) -> Iterator[NDArray[np.uint8]]:
    """Decode every frame of the first video stream, scaled to ``width``x``height``.

    Yields arrays of shape ``(n, height, width)`` (gray) or ``(n, height, width, 3)`` (rgb24) with
    ``1 <= n <= batch_size``, in presentation order, one entry per coded frame (no duplication or
    dropping). ``fast`` skips the H.264 loop filter, which is invisible at analysis resolutions and
    saves a good share of decode time. With ``strict``, any decode error (truncated or corrupt
    data) raises :class:`MediaError` after the frames read so far were yielded.
    """
    path = Path(path)
    shape = frame_shape(path, width, height, pix_fmt)
    frame_bytes = int(np.prod(shape))
    proc = start_decoder(path, width, height, pix_fmt, threads=threads, fast=fast)
    assert proc.stdout is not None and proc.stderr is not None
    err_chunks: list[bytes] = []
    err_thread = threading.Thread(target=drain_stream, args=(proc.stderr, err_chunks), daemon=True)
    err_thread.start()
    total = 0
    finished = False
    try:
        while True:
            buf = read_frames(proc.stdout, frame_bytes, batch_size)
            if not buf:
                break
            n = len(buf) // frame_bytes
            total += n
            yield np.frombuffer(buf, dtype=np.uint8).reshape((n, *shape))
        finished = True
    finally:
        if not finished and proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        returncode = proc.wait()
        err_thread.join(timeout=5)
        proc.stderr.close()
    err = b"".join(err_chunks).decode("utf-8", "replace")
    check_decode(path, returncode, err, total, strict=strict)
    logger.debug("decoded %d frames of %s at %dx%d %s", total, path, width, height, pix_fmt)


def frame_shape(path: Path, width: int, height: int, pix_fmt: PixFmt) -> tuple[int, ...]:
    """One decoded frame's array shape, ``(height, width)`` or ``(height, width, 3)``, once ``path``
    is a usable file (:class:`MediaError`) and the size positive (:class:`ValueError`)."""
    check_media_file(path)
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    return (height, width) if pix_fmt == "gray" else (height, width, 3)


def read_frames(stream: IO[bytes], frame_bytes: int, count: int) -> bytes:
    """Up to ``count`` whole frames from a rawvideo pipe (empty at its end)."""
    buf = stream.read(frame_bytes * count)
    if len(buf) % frame_bytes:
        # a short read only happens at EOF; ffmpeg never writes partial frames otherwise
        buf += stream.read(frame_bytes - len(buf) % frame_bytes)
        buf = buf[: len(buf) // frame_bytes * frame_bytes]
    return buf


def check_decode(path: Path, returncode: int, err: str, total: int, *, strict: bool) -> None:
    """Raise :class:`MediaError` for a decode child that failed after ``total`` frames (or, with
    ``strict``, said anything on stderr)."""
    if returncode != 0:
        if total == 0:
            raise MediaError(f"cannot decode video ({_last_line(err)})", path)
        raise MediaError(f"decoding failed after {total} frames ({_last_line(err)})", path)
    if total == 0:
        raise MediaError("video has no decodable frames", path)
    if strict and err.strip():
        raise MediaError(f"truncated or corrupt video data after {total} frames ({_last_line(err)})", path)


def decode_frames(
    path: Path | str,
    width: int,
    height: int,
    pix_fmt: PixFmt = "gray",
    *,
    threads: int = 0,
    fast: bool = True,
    strict: bool = True,
) -> Iterator[Frame]:
    """Like :func:`decode_batches` but one ``(height, width[, 3])`` frame at a time."""
    for batch in decode_batches(path, width, height, pix_fmt, threads=threads, fast=fast, strict=strict):
        yield from batch
