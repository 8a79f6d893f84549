"""Decoding a video in time ranges side by side, one ffmpeg thread each.

ffmpeg's frame threads cost CPU of their own: on the 150 s 720p bench video two single-threaded
children, each decoding half the video from a keyframe, used 0.4-0.9 CPU s (~5-10 %) less than one
child on ffmpeg's threads, and finished sooner (docs/measurements.md, stop 23). A range starts at a
*clean* keyframe (:attr:`PacketTimes.clean_starts`): the decode from there gives exactly the frames a
whole decode gives. Each range but the last decodes one frame more than its share, and that frame must
be the next range's first; when it is not (or a later range fails), the frames from there on come
from one whole decode instead, so a file that only looks splittable costs time, never frames.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from infra.media.ffmpeg import (
    PacketTimes,
    PixFmt,
    VideoInfo,
    check_decode,
    decode_batches,
    drain_stream,
    frame_shape,
    read_frames,
    start_decoder,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AHEAD",
    "INDEXED",
    "WHOLE",
    "DecodeRange",
    "decode_in_ranges",
    "plan_ranges",
    "seek_time",
    "usable_cores",
    "video_ranges",
]

MIN_RANGE = 300  # frames: a child's start, the container's header and the seek cost ~20-40 frames' decode
# frames that may wait in memory, decoded ahead of the range being read (64 px rgb24: ~110 MB): a
# range is at most this over the ranges decoded side by side (8,000 frames on 2 cores, 1,000 on 16)
AHEAD = 16_000


@dataclass(frozen=True, slots=True)
class DecodeRange:
    first: int  # its first frame
    start: str | None  # that frame's time, as ffmpeg's ``-ss`` reads it; None: from the start
    frames: int | None  # how many frames it has; None: to the end of the video


WHOLE = (DecodeRange(0, None, None),)

#: Formats whose index takes ``-ss`` to the keyframe itself; an MPEG-TS seek (no index) landed
#: frames early and the range's decode complained of missing references.
INDEXED = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def seek_time(pts: int, time_base: Fraction) -> str:
    """``pts`` as an ``-ss`` value: seconds to the microsecond, rounded down (ffmpeg reads no
    finer; never past the frame, so the frame is the first one kept)."""
    micro = pts * time_base * 1_000_000
    whole = micro.numerator // micro.denominator
    return f"{whole // 1_000_000}.{whole % 1_000_000:06d}"


def plan_ranges(
    packets: PacketTimes, parts: int, *, min_frames: int = MIN_RANGE, max_frames: int | None = None
) -> tuple[DecodeRange, ...]:
    """About ``parts`` ranges (more where a range would pass ``max_frames``, by default
    :data:`AHEAD` over ``parts``: ``parts`` of them are decoded at once), each starting at the
    clean keyframe nearest its share's start and at least half ``min_frames`` long; the whole video
    in one range when it is short, has no clean keyframe, has open GOPs or no index."""
    hidden = packets.hidden  # packets an edit list hides: a decode's frame i is packet hidden + i
    n = len(packets.pts) - hidden
    longest = max(min_frames, AHEAD // max(1, parts)) if max_frames is None else max_frames
    count = min(max(parts, -(-n // longest)), n // min_frames)
    if packets.container not in INDEXED:
        return WHOLE
    if count < 2 or not packets.clean_starts or packets.keyframes > len(packets.clean_starts) + 1 + hidden:
        # an open-GOP stream (a keyframe, the first and the hidden ones aside, with frames shown
        # before it): a decode started even at its clean keyframes complained of missing
        # references (x264's open-gop)
        return WHOLE
    starts = np.asarray(packets.clean_starts, dtype=np.int64) - hidden
    firsts: list[int] = [0]
    for i in range(1, count):
        k = int(starts[np.argmin(np.abs(starts - i * n / count))])
        if k - firsts[-1] >= min_frames // 2 and n - k >= min_frames // 2:
            firsts.append(k)
    if len(firsts) < 2:
        return WHOLE
    ends = [*firsts[1:], None]
    return tuple(
        DecodeRange(
            first,
            None if first == 0 else seek_time(packets.pts[hidden + first], packets.time_base),
            None if end is None else end - first,
        )
        for first, end in zip(firsts, ends, strict=True)
    )


class _Child:
    """One range's ffmpeg child, its stdout read by a thread into a queue of whole-frame chunks."""

    def __init__(self, proc: subprocess.Popen[bytes], frame_bytes: int, batch_size: int) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, frame_bytes, batch_size), daemon=True),
            threading.Thread(target=drain_stream, args=(proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[bytes], frame_bytes: int, batch_size: int) -> None:
        try:
            while chunk := read_frames(stream, frame_bytes, batch_size):
                self.chunks.put(chunk)
        except (OSError, ValueError):  # closed under us: the decode was abandoned
            pass
        finally:
            self.chunks.put(None)

    def close(self, *, kill: bool = False) -> tuple[int, str]:
        """Wait for the child (killed first with ``kill``); its exit status and stderr."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
        returncode = self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return returncode, b"".join(self._err).decode("utf-8", "replace")


def video_ranges(info: VideoInfo, packets: PacketTimes | None, parts: int) -> tuple[DecodeRange, ...]:
    """:func:`plan_ranges` for a probed video, ``parts`` decoded at once: the whole video where one
    core decodes, or where the probe's packets do not account for its frames exactly (none read,
    or a container whose timing had to be repaired)."""
    if (
        packets is None
        or parts < 2
        or info.timing_repaired
        or len(packets.pts) - packets.hidden != info.frame_count
    ):
        return WHOLE
    return plan_ranges(packets, parts)


class _Disagreed(Exception):
    """A range's frames cannot be trusted from here on."""


def decode_in_ranges(
    path: Path | str,
    width: int,
    height: int,
    pix_fmt: PixFmt = "gray",
    ranges: Sequence[DecodeRange] = WHOLE,
    *,
    parallel: int = 2,
    batch_size: int = 256,
    fast: bool = True,
    strict: bool = True,
) -> Generator[NDArray[np.uint8], None, None]:
    """What :func:`infra.media.ffmpeg.decode_batches` yields, decoded by one single-threaded child
    per range, ``parallel`` at a time (a range starts when the one ``parallel`` before it has been
    read; the ones after the range being read wait in memory). One range: ``decode_batches`` on
    ffmpeg's own threads."""
    if len(ranges) < 2:
        yield from decode_batches(path, width, height, pix_fmt, batch_size, fast=fast, strict=strict)
        return
    path = Path(path)
    shape = frame_shape(path, width, height, pix_fmt)
    frame_bytes = int(np.prod(shape))
    children: dict[int, _Child] = {}

    def launch(i: int) -> None:
        if i < len(ranges):
            r = ranges[i]
            extra = None if r.frames is None else r.frames + 1  # the next range's first, to compare
            proc = start_decoder(
                path, width, height, pix_fmt, threads=1, fast=fast, start=r.start, frames=extra
            )
            children[i] = _Child(proc, frame_bytes, batch_size)

    total = 0  # frames yielded
    try:
        for i in range(parallel):
            launch(i)
        carry: bytes | None = None  # the previous range's extra frame
        for i, r in enumerate(ranges):
            child = children[i]  # left there until read: a decode abandoned midway kills it too
            if i == 0:  # from the start, as the whole decode: read as it comes
                assert r.frames is not None  # not the last range
                got = 0
                while (chunk := child.chunks.get()) is not None:
                    n = len(chunk) // frame_bytes
                    keep = min(n, max(0, r.frames - got))
                    if got + n > r.frames:
                        carry = chunk[keep * frame_bytes : (keep + 1) * frame_bytes]
                    got += n
                    if keep:
                        total += keep
                        yield np.frombuffer(chunk[: keep * frame_bytes], dtype=np.uint8).reshape(
                            (keep, *shape)
                        )
                returncode, err = child.close()
                check_decode(path, returncode, err, got, strict=strict)  # the whole decode fails alike
                if got <= r.frames:
                    raise _Disagreed(f"the first range gave {got} of {r.frames + 1} frames")
            else:  # a later range is trusted only once its child has finished well
                chunks = list(iter(child.chunks.get, None))
                returncode, err = child.close()
                frames = b"".join(chunks)
                got = len(frames) // frame_bytes
                if returncode != 0 or (strict and err.strip()) or got == 0:
                    raise _Disagreed(
                        f"the range from frame {r.first} failed ({err.strip()[-200:] or returncode})"
                    )
                if frames[:frame_bytes] != carry:
                    raise _Disagreed(f"the range from frame {r.first} does not start with that frame")
                if r.frames is not None and got <= r.frames:
                    raise _Disagreed(f"the range from frame {r.first} gave {got} of {r.frames + 1} frames")
                keep = got if r.frames is None else r.frames
                carry = frames[keep * frame_bytes : (keep + 1) * frame_bytes]
                for lo in range(0, keep, batch_size):
                    n = min(batch_size, keep - lo)
                    total += n
                    yield np.frombuffer(
                        frames, dtype=np.uint8, count=n * frame_bytes, offset=lo * frame_bytes
                    ).reshape((n, *shape))
            del children[i]
            launch(i + parallel)
    except _Disagreed as exc:
        logger.warning("%s: %s; decoding from frame %d on in one pass", path, exc, total)
        for child in children.values():
            child.close(kill=True)
        children.clear()
        skip = total
        for batch in decode_batches(path, width, height, pix_fmt, batch_size, fast=fast, strict=strict):
            if skip >= len(batch):
                skip -= len(batch)
                continue
            yield batch[skip:]
            skip = 0
    finally:
        for child in children.values():
            child.close(kill=True)
    logger.debug("decoded %s in %d ranges at %dx%d %s", path, len(ranges), width, height, pix_fmt)
