"""Representative still frames of a clip (JPEG), for embeddings and thumbnails."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

from infra.config import KeyframeStrategy
from infra.media._process import run_ffmpeg
from infra.media.ffmpeg import MediaError
from infra.media.transcode import exact_fps

logger = logging.getLogger(__name__)

__all__ = ["KeyframeStrategy", "extract_keyframes", "keyframe_frames"]

_PERCENTS: dict[str, tuple[int, ...]] = {"multi": (25, 50, 75), "midpoint": (50,)}


def keyframe_frames(start_frame: int, end_frame: int, strategy: KeyframeStrategy) -> list[tuple[int, int]]:
    """(percent, frame) pairs for a clip ``[start_frame, end_frame)``: 25/50/75 % for ``multi``,
    50 % for ``midpoint``. Frames are always inside the clip (short clips may repeat a frame)."""
    if start_frame < 0 or end_frame <= start_frame:
        raise ValueError(f"invalid frame range [{start_frame}, {end_frame})")
    if strategy not in _PERCENTS:
        raise ValueError(f"unknown keyframe strategy {strategy!r}; use 'multi' or 'midpoint'")
    length = end_frame - start_frame
    return [(p, start_frame + min(length - 1, length * p // 100)) for p in _PERCENTS[strategy]]


def extract_keyframes(
    src: Path,
    out_dir: Path,
    start_frame: int,
    end_frame: int,
    fps: float,
    strategy: KeyframeStrategy = "multi",
    *,
    quality: int = 2,
    short_side: int = 0,
    timeout: float = 120.0,
) -> list[Path]:
    """Write the strategy's frames of clip ``[start_frame, end_frame)`` of ``src`` as JPEGs named
    ``keyframe_<percent>_f<frame>.jpg`` in ``out_dir``; return their paths in percent order.

    Each frame is decoded exactly: the input is seeked to half a frame before it and decoding
    discards everything earlier (cheap on the all-intra proxy, correct on any input). With
    ``short_side`` > 0 the frames are scaled down (never up) so their shorter side has that many
    pixels: the size the embedding model takes in (``HEATERS_KEYFRAME_SHORT_SIDE``), so the embedder
    decodes small JPEGs and barely resizes.
    """
    if short_side < 0:
        raise ValueError(f"short_side must be >= 0, got {short_side}")
    scale = []
    if short_side > 0:
        n = short_side
        w = f"if(gte(iw\\,ih)\\,-2\\,min(iw\\,{n}))"
        h = f"if(gte(iw\\,ih)\\,min(ih\\,{n})\\,-2)"
        scale = ["-vf", f"scale=w={w}:h={h}:flags=bicubic"]
    src, out_dir = Path(src), Path(out_dir)
    if not src.is_file():
        raise MediaError("video file does not exist", src)
    rate = exact_fps(fps)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for percent, frame in keyframe_frames(start_frame, end_frame, strategy):
        dst = out_dir / f"keyframe_{percent:02d}_f{frame:07d}.jpg"
        tmp = dst.with_name(f".{dst.stem}.tmp.jpg")
        seek = float((frame - Fraction(1, 2)) / rate) if frame > 0 else 0.0
        try:
            run_ffmpeg(
                [
                    "-ss", f"{seek:.6f}", "-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn",
                    *scale, "-frames:v", "1", "-fps_mode", "passthrough", "-q:v", str(quality),
                    "-update", "1", "-f", "image2", str(tmp),
                ],
                what=f"extracting frame {frame}",
                path=src,
                timeout=timeout,
            )  # fmt: skip
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise MediaError(f"frame {frame} is beyond the end of the video", src)
            tmp.replace(dst)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(dst)
    logger.info("extracted %d keyframes (%s) of [%d, %d) from %s", len(paths), strategy,
                start_frame, end_frame, src)  # fmt: skip
    return paths
