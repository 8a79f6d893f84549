"""Whole-video sprite sheets for scrubbing, laid out so any frame maps to a tile by arithmetic.

One set of sheets covers the whole video (not one per clip): sprite ``k`` shows the first source
frame ``f`` with ``floor(f * sprite_fps / source_fps) == k``, and sheets hold
``columns * rows`` sprites in row-major order. So a clip ``[start, end)`` is shown by sprites
``sprite_index(start) .. sprite_index(end - 1)`` and splitting or merging clips never needs new
media work. The UI scrubs by CSS ``background-position`` using :func:`sprite_position`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from infra.media._process import default_timeout, run_ffmpeg
from infra.media.ffmpeg import MediaError, probe, scaled_size
from infra.media.transcode import exact_fps

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_NAME",
    "SpriteManifest",
    "load_manifest",
    "make_sprites",
    "sprite_index",
    "sprite_position",
    "sprite_source_frame",
]

MANIFEST_NAME = "manifest.json"
_MAX_JPEG_SIDE = 65500


@dataclass(frozen=True, slots=True)
class SpriteManifest:
    """Geometry of a video's sprite sheets (stored as JSON next to them)."""

    source_fps: str  # exact fraction, e.g. "30000/1001"
    sprite_fps: str  # exact fraction, <= source_fps
    source_frame_count: int
    sprite_count: int  # sprites over all sheets
    tile_width: int
    tile_height: int
    columns: int
    rows: int
    frames_per_sheet: int  # sprites per sheet (columns * rows); the last sheet may be partial
    sheets: list[str]  # file names relative to the manifest, sheet i holds sprites [i*fps_, ...)
    version: int = 1

    @property
    def ratio(self) -> Fraction:
        """Sprites per source frame (<= 1)."""
        return Fraction(self.sprite_fps) / Fraction(self.source_fps)

    @property
    def sheet_width(self) -> int:
        return self.columns * self.tile_width

    @property
    def sheet_height(self) -> int:
        return self.rows * self.tile_height

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SpriteManifest:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def load_manifest(path: Path) -> SpriteManifest:
    """Read a manifest file written by :func:`make_sprites`."""
    return SpriteManifest.from_json(Path(path).read_text(encoding="utf-8"))


def sprite_index(manifest: SpriteManifest, frame: int) -> int:
    """Index of the sprite shown for source ``frame`` (clamped to the last sprite)."""
    if frame < 0:
        raise ValueError(f"frame must be >= 0, got {frame}")
    return min(math.floor(frame * manifest.ratio), manifest.sprite_count - 1)


def sprite_source_frame(manifest: SpriteManifest, index: int) -> int:
    """The source frame that sprite ``index`` depicts (the first frame mapping to it)."""
    return math.ceil(index / manifest.ratio)


def sprite_position(manifest: SpriteManifest, frame: int) -> tuple[str, int, int]:
    """(sheet file name, x, y) of the top-left pixel of the tile for source ``frame``."""
    k = sprite_index(manifest, frame)
    sheet, slot = divmod(k, manifest.frames_per_sheet)
    row, col = divmod(slot, manifest.columns)
    return manifest.sheets[sheet], col * manifest.tile_width, row * manifest.tile_height


def make_sprites(
    src: Path,
    out_dir: Path,
    fps: float = 24.0,
    tile_width: int = 480,
    columns: int = 5,
    rows: int = 5,
    *,
    quality: int = 3,
    timeout: float | None = None,
) -> SpriteManifest:
    """Render JPEG sprite sheets of the whole of ``src`` into ``out_dir`` plus ``manifest.json``.

    The sprite rate is ``min(fps, source fps)``; tiles are ``tile_width`` wide, height by aspect
    ratio (even), at most twice ``tile_width`` tall (a narrower tile for taller pictures). Sheets are named ``sheet_00000.jpg``... Existing sheets in ``out_dir`` from an
    earlier run are replaced (all files are written to a temporary directory first).
    """
    src, out_dir = Path(src), Path(out_dir)
    if fps <= 0 or tile_width < 2 or columns < 1 or rows < 1:
        raise ValueError("fps, tile_width, columns and rows must be positive")
    if columns * tile_width > _MAX_JPEG_SIDE:
        raise ValueError(f"sheet width {columns * tile_width} exceeds the JPEG limit")
    info = probe(src)
    source_fps = exact_fps(info.fps)
    sprite_fps = min(Fraction(fps).limit_denominator(1001), source_fps)
    ratio = sprite_fps / source_fps
    tile_w, tile_h = scaled_size(info.width, info.height, tile_width // 2 * 2)
    if tile_h > 2 * tile_w:  # taller than 1:2 (a 16x4096 strip): the tile is bounded by its height
        tile_h, tile_w = scaled_size(info.height, info.width, 2 * (tile_width // 2 * 2))
    if rows * tile_h > _MAX_JPEG_SIDE:
        raise ValueError(f"sheet height {rows * tile_h} exceeds the JPEG limit")
    sprite_count = math.floor((info.frame_count - 1) * ratio) + 1
    per_sheet = columns * rows
    filters = []
    if ratio < 1:
        p, q = ratio.numerator, ratio.denominator
        filters.append(f"select='eq(n\\,0)+gt(floor(n*{p}/{q})\\,floor((n-1)*{p}/{q}))'")
    filters += [f"scale={tile_w}:{tile_h}:flags=area", "setsar=1", f"tile={columns}x{rows}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sprites-", dir=out_dir))
    try:
        run_ffmpeg(
            [
                "-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn",
                "-vf", ",".join(filters), "-fps_mode", "passthrough",
                "-q:v", str(quality), "-start_number", "0", "-f", "image2",
                str(work / "sheet_%05d.jpg"),
            ],
            what="rendering sprite sheets",
            path=src,
            timeout=timeout or default_timeout(info.duration, factor=2.0),
        )  # fmt: skip
        produced = sorted(p.name for p in work.glob("sheet_*.jpg"))
        expected = math.ceil(sprite_count / per_sheet)
        if len(produced) != expected:
            raise MediaError(
                f"sprite rendering produced {len(produced)} sheets, expected {expected} "
                f"({sprite_count} sprites of {info.frame_count} frames)",
                src,
            )
        manifest = SpriteManifest(
            source_fps=str(source_fps),
            sprite_fps=str(sprite_fps),
            source_frame_count=info.frame_count,
            sprite_count=sprite_count,
            tile_width=tile_w,
            tile_height=tile_h,
            columns=columns,
            rows=rows,
            frames_per_sheet=per_sheet,
            sheets=produced,
        )
        for old in out_dir.glob("sheet_*.jpg"):
            old.unlink()
        for name in produced:
            (work / name).replace(out_dir / name)
        tmp_manifest = work / MANIFEST_NAME
        tmp_manifest.write_text(manifest.to_json(), encoding="utf-8")
        tmp_manifest.replace(out_dir / MANIFEST_NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "sprites for %s: %d sprites at %s fps on %d sheets", src, sprite_count, sprite_fps, len(produced)
    )
    return manifest
