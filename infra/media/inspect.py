"""Container and stream details beyond :class:`~infra.media.ffmpeg.VideoInfo`.

:func:`inspect_media` combines :func:`infra.media.ffmpeg.probe` (exact frame count, truncation check)
with the header facts that decide browser playability: container, brand, pixel format and audio
codec, read from what the probe's ffmpeg printed of the input (one process per file). What it found
is remembered for the file (its device, inode, size and modification time): the stages of one
worker inspect the same file several times (the download's check, normalising, the proxy's pass,
a hard link of it in local storage), and a file changed or replaced is inspected anew.

The probe's stream copy also prints every video packet (``framecrc``): :func:`inspect_packets`
gives them for a file inspected lately without reading it again (the proxy's copy check, clip
export's keyframe check).
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Self, TypeVar, overload

from infra.media.ffmpeg import (
    LOCAL_INPUT,
    PacketTimes,
    VideoInfo,
    ffmpeg_exe,
    packet_times,
    probe_with_packets,
)

logger = logging.getLogger(__name__)
_Fact = TypeVar("_Fact")

__all__ = ["MediaInfo", "diagnose_unreadable", "inspect_media", "inspect_packets"]

_INPUT_RE = re.compile(r"^Input #0, (?P<fmt>[^ ]+), from ", re.MULTILINE)
_BRAND_RE = re.compile(r"^\s*major_brand\s*:\s*(?P<brand>.*)$", re.MULTILINE)
_VIDEO_RE = re.compile(r"Stream #0:\d+[^:]*: Video: (?P<codec>[A-Za-z0-9_]+)(?P<rest>.*)")
_AUDIO_RE = re.compile(r"Stream #0:\d+[^:]*: Audio: (?P<codec>[A-Za-z0-9_]+)")
_PIXFMT_RE = re.compile(r"(?:^|, )(?P<pix>(?:yuv|yuvj|nv|gbr|rgb|bgr|gray|p0)[a-z0-9]*)(?:\(|,|$)")


class _OfVideo(Generic[_Fact]):
    """A read-only attribute of :class:`MediaInfo` that is a fact of its ``video`` (typed by ``fact``)."""

    def __init__(self, fact: Callable[[VideoInfo], _Fact]) -> None:
        self._fact = fact

    @overload
    def __get__(self, info: None, owner: type[MediaInfo]) -> Self: ...
    @overload
    def __get__(self, info: MediaInfo, owner: type[MediaInfo] | None = None) -> _Fact: ...
    def __get__(self, info: MediaInfo | None, owner: type[MediaInfo] | None = None) -> _Fact | Self:
        return self if info is None else self._fact(info.video)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """Everything Heaters needs to decide what to do with a media file."""

    video: VideoInfo
    container: str  # ffmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"
    major_brand: str | None  # MP4 family only: "isom", "mp42", "qt" (QuickTime) ...
    pix_fmt: str | None  # of the first video stream, e.g. "yuv420p"
    audio_codec: str | None  # of the first audio stream; None when there is no audio

    # The video stream's facts, read as the VideoInfo's.
    duration = _OfVideo(lambda video: video.duration)
    fps = _OfVideo(lambda video: video.fps)
    frame_count = _OfVideo(lambda video: video.frame_count)
    width = _OfVideo(lambda video: video.width)
    height = _OfVideo(lambda video: video.height)
    codec = _OfVideo(lambda video: video.codec)


#: Files inspected lately, by identity (:func:`_identity`); a few suffice: one per stage at work.
_REMEMBERED = 64
_inspected: OrderedDict[tuple[int, int, int, int], MediaInfo] = OrderedDict()
#: The packets of the files inspected last (8 bytes a packet: 1.4 MB for an hour at 25 fps).
_PACKETS_REMEMBERED = 8
_packets: OrderedDict[tuple[int, int, int, int], PacketTimes] = OrderedDict()
_inspected_lock = threading.Lock()


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """The file's device, inode, size and modification time (ns): a write, or another file moved
    in its place, changes them. None when it cannot be read (the probe then says why)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def inspect_media(path: Path | str, timeout: float = 600.0) -> MediaInfo:
    """Probe ``path`` (raises :class:`MediaError` if unusable) and read its container details;
    a file inspected before and unchanged since is not read again."""
    path = Path(path)
    key = _identity(path)
    known = _recall(_inspected, key)
    if known is not None:
        return known
    video, said, packets = probe_with_packets(path, timeout=timeout)
    info = _media_info(video, _input_part(said))
    logger.debug("inspected %s: %s", path, info)
    if key is not None and key == _identity(path):  # not changed while it was read
        _remember(_inspected, key, info, _REMEMBERED)
        if packets is not None:
            _remember(_packets, key, packets, _PACKETS_REMEMBERED)
    return info


def inspect_packets(path: Path | str, timeout: float = 600.0) -> PacketTimes:
    """:func:`~infra.media.ffmpeg.packet_times` of ``path``: what its inspection read when the
    file was inspected lately and is unchanged since, else read now (and remembered)."""
    path = Path(path)
    key = _identity(path)
    known = _recall(_packets, key)
    if known is not None:
        return known
    packets = packet_times(path, timeout)
    if key is not None and key == _identity(path):
        _remember(_packets, key, packets, _PACKETS_REMEMBERED)
    return packets


_Remembered = TypeVar("_Remembered")


def _recall(
    memory: OrderedDict[tuple[int, int, int, int], _Remembered], key: tuple[int, int, int, int] | None
) -> _Remembered | None:
    """What ``memory`` holds for the file identified by ``key`` (marked as used lately), or None."""
    if key is None:
        return None
    with _inspected_lock:
        known = memory.get(key)
        if known is not None:
            memory.move_to_end(key)
        return known


def _remember(
    memory: OrderedDict[tuple[int, int, int, int], _Remembered],
    key: tuple[int, int, int, int],
    value: _Remembered,
    limit: int,
) -> None:
    """Keep ``value`` for the file identified by ``key``, forgetting the least recently used
    beyond ``limit``."""
    with _inspected_lock:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > limit:
            memory.popitem(last=False)


def _input_part(said: str) -> str:
    """What ffmpeg printed of its input, without the output's part (which repeats streams and
    metadata)."""
    end = min((i for i in (said.find("\nOutput #"), said.find("\nStream mapping:")) if i >= 0), default=-1)
    return said if end < 0 else said[:end]


def _media_info(video: VideoInfo, header: str) -> MediaInfo:
    fmt = _INPUT_RE.search(header)
    brand = _BRAND_RE.search(header)
    vstream = _VIDEO_RE.search(header)
    pix = _PIXFMT_RE.search(vstream["rest"]) if vstream else None
    audio = _AUDIO_RE.search(header)
    info = MediaInfo(
        video=video,
        container=fmt["fmt"] if fmt else "unknown",
        major_brand=brand["brand"].strip() if brand else None,
        pix_fmt=pix["pix"] if pix else None,
        audio_codec=audio["codec"] if audio else None,
    )
    return info


def diagnose_unreadable(path: Path | str) -> str:
    """Why ffmpeg cannot open ``path``, in words a person can act on (for error messages)."""
    path = Path(path)
    try:
        err = _read_header(path)
    except subprocess.TimeoutExpired:
        return "ffmpeg timed out reading the header"
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    if "misdetection possible" in err or ("moov atom not found" in err and head[4:8] != b"ftyp"):
        return "not a video file: ffmpeg does not recognise its format"
    if "moov atom not found" in err:
        return "truncated MP4: the index (moov atom) is missing, the file is incomplete"
    if "Invalid data found when processing input" in err:
        return "not a video file: ffmpeg does not recognise its format"
    if _VIDEO_RE.search(err) is None and "Stream #" in err:
        return "no video stream (audio only?)"
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "ffmpeg cannot read it"


def _read_header(path: Path) -> str:
    """What ``ffmpeg -i`` says about ``path``'s container and streams (raises ``TimeoutExpired``)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *LOCAL_INPUT, "-i", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60.0,
        check=False,
    )
    return proc.stderr.decode("utf-8", "replace")  # exit code 1 ("no output file") is expected
