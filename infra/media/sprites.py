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
from typing import Any, Literal

from infra.media._process import default_timeout, run_ffmpeg
from infra.media.ffmpeg import LOCAL_INPUT, MediaError, probe, scaled_size
from infra.media.transcode import exact_fps

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_QUALITY",
    "FULL_RANGE",
    "MANIFEST_NAME",
    "SpriteFormat",
    "SpriteManifest",
    "SpritePlan",
    "content_type",
    "load_manifest",
    "make_sprites",
    "plan_sprites",
    "sprite_index",
    "sprite_position",
    "sprite_source_frame",
]

MANIFEST_NAME = "manifest.json"
SHEET_ENCODERS = 2
_MAX_SIDE: dict[str, int] = {"jpeg": 65500, "webp": 16383}


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


SpriteFormat = Literal["webp", "jpeg"]
#: Limited-range (video) frames to full range (JFIF's), exactly: luma 16-235 to 0-255, chroma
#: 16-240 to 0-255 about 128, rounded and clipped, then tagged full range for the JPEG encoder.
FULL_RANGE = (
    "lutyuv=y='clip(round((val-16)*255/219)\\,0\\,255)'"
    ":u='clip(round((val-128)*255/224)+128\\,0\\,255)'"
    ":v='clip(round((val-128)*255/224)+128\\,0\\,255)',setparams=range=pc"
)
#: Each format's quality when none is given: JPEG qscale 7 is at least as sharp as WebP q60 (SSIM)
#: on the sprite benchmark's videos at half its encoding CPU (docs/architecture.md).
DEFAULT_QUALITY: dict[str, int] = {"webp": 60, "jpeg": 7}
_EXTENSIONS: dict[str, str] = {"webp": "webp", "jpeg": "jpg"}
CONTENT_TYPES: dict[str, str] = {"webp": "image/webp", "jpeg": "image/jpeg"}


def content_type(name: str) -> str:
    """The MIME type of a file written here (a sheet or the manifest)."""
    if name.endswith(".json"):
        return "application/json"
    return "image/webp" if name.endswith(".webp") else "image/jpeg"


@dataclass(frozen=True, slots=True)
class SpritePlan:
    """What to render for one video: the sprite geometry, the ffmpeg filter chain that turns the
    video's frames into sheets and the encoder options (shared by :func:`make_sprites` and the
    single decode pass of :mod:`infra.media.media_pass`)."""

    source_fps: Fraction
    sprite_fps: Fraction
    source_frame_count: int
    sprite_count: int
    tile_width: int
    tile_height: int
    columns: int
    rows: int
    image_format: SpriteFormat
    quality: int  # WebP quality 0-100, or JPEG qscale 2-31 (lower is better)

    @property
    def frames_per_sheet(self) -> int:
        return self.columns * self.rows

    @property
    def sheet_count(self) -> int:
        return math.ceil(self.sprite_count / self.frames_per_sheet)

    @property
    def pattern(self) -> str:
        return f"sheet_%05d.{_EXTENSIONS[self.image_format]}"

    def tiling(self, limited: bool = False) -> str:
        """The filter chain from the video's frames to unencoded sheets (sprite rate, tiles, layout);
        ``limited`` scales the tiles into 8-bit 4:2:0 in limited range, what :data:`FULL_RANGE` takes
        (a full-range or 10-bit source included)."""
        ratio = self.sprite_fps / self.source_fps
        chain = []
        if ratio < 1:
            p, q = ratio.numerator, ratio.denominator
            chain.append(f"select='eq(n\\,0)+gt(floor(n*{p}/{q})\\,floor((n-1)*{p}/{q}))'")
        scale = f"scale={self.tile_width}:{self.tile_height}:flags=area"
        chain += [f"{scale}:out_range=tv,format=yuv420p" if limited else scale, "setsar=1"]
        chain.append(f"tile={self.columns}x{self.rows}")
        return ",".join(chain)

    def filters(self) -> str:
        """:meth:`tiling`, then for JPEG the sheets in full range (JFIF's) by :data:`FULL_RANGE`, a
        table from the tiles in limited range. The conversion ffmpeg inserts before the encoder
        otherwise turns video black into level 1, not 0: invisible, but on the letterboxed 1080p
        corpus video the sheets' SSIM fell from 0.990 to 0.959 at qscale 3 (flat areas weigh heavily
        in SSIM), for the same bytes; so did converting in the tiles' scale (0.9825 to 0.9532 at
        qscale 7). The table gives the sheets of a second swscale pass (``scale=out_range=pc``) to
        the level in luma and within one level in chroma, in half its CPU."""
        if self.image_format == "jpeg":
            return f"{self.tiling(limited=True)},{FULL_RANGE}"
        return self.tiling()

    def encoder_args(self) -> list[str]:
        if self.image_format == "webp":
            # compression_level 0: the fastest method; the files are a few per cent larger than at the default (4).
            return ["-c:v", "libwebp", "-quality", str(self.quality), "-compression_level", "0"]
        return ["-c:v", "mjpeg", "-q:v", str(self.quality)]

    @property
    def encoders(self) -> int:
        """Sheet encoders run side by side (libwebp encodes on one thread): odd and even sheets."""
        return min(SHEET_ENCODERS, self.sheet_count)

    def graph(self, source: str) -> str:
        """Filter-graph text from the ``source`` pad to the pads ``[sheets0]``, ``[sheets1]``..."""
        n = self.encoders
        if n == 1:
            return f"{source}{self.filters()}[sheets0]"
        parts = [f"{source}{self.filters()},split={n}" + "".join(f"[part{i}]" for i in range(n))]
        parts += [f"[part{i}]select='eq(mod(n\\,{n})\\,{i})'[sheets{i}]" for i in range(n)]
        return ";".join(parts)

    def output_args(self, out_dir: Path) -> list[str]:
        """ffmpeg outputs writing the pads of :meth:`graph` into ``out_dir`` (renamed by :meth:`finish`);
        each encoder on one thread (they run side by side; the same sheets as with more)."""
        ext = _EXTENSIONS[self.image_format]
        args: list[str] = []
        for i in range(self.encoders):
            args += [
                "-map", f"[sheets{i}]", "-fps_mode", "passthrough", *self.encoder_args(), "-threads", "1",
                "-start_number", "0", "-f", "image2", str(out_dir / f"part{i}_%05d.{ext}"),
            ]  # fmt: skip
        return args

    def _collect(self, work: Path) -> None:
        """Rename encoder ``i``'s ``k``-th sheet to sheet ``k * encoders + i``."""
        n = self.encoders
        for path in sorted(work.glob("part*_*.*")):
            part, index = path.stem.removeprefix("part").split("_")
            path.rename(work / (self.pattern % (int(index) * n + int(part))))

    def finish(self, work: Path, out_dir: Path, what: Path) -> SpriteManifest:
        """Check the sheets rendered into ``work``, move them into ``out_dir`` (replacing older
        sheets) and write the manifest; ``what`` names the video in errors."""
        self._collect(work)
        produced = sorted(p.name for p in work.glob("sheet_*.*") if not p.name.startswith("."))
        if len(produced) != self.sheet_count:
            raise MediaError(
                f"sprite rendering produced {len(produced)} sheets, expected {self.sheet_count} "
                f"({self.sprite_count} sprites of {self.source_frame_count} frames)",
                what,
            )
        manifest = SpriteManifest(
            source_fps=str(self.source_fps),
            sprite_fps=str(self.sprite_fps),
            source_frame_count=self.source_frame_count,
            sprite_count=self.sprite_count,
            tile_width=self.tile_width,
            tile_height=self.tile_height,
            columns=self.columns,
            rows=self.rows,
            frames_per_sheet=self.frames_per_sheet,
            sheets=produced,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("sheet_*.*"):
            old.unlink()
        for name in produced:
            (work / name).replace(out_dir / name)
        tmp_manifest = work / MANIFEST_NAME
        tmp_manifest.write_text(manifest.to_json(), encoding="utf-8")
        tmp_manifest.replace(out_dir / MANIFEST_NAME)
        return manifest


def plan_sprites(
    width: int,
    height: int,
    frame_count: int,
    source_fps: float,
    fps: float = 24.0,
    tile_width: int = 480,
    columns: int = 5,
    rows: int = 5,
    *,
    image_format: SpriteFormat = "jpeg",
    quality: int | None = None,
) -> SpritePlan:
    """The sprite geometry of a ``width`` x ``height`` video of ``frame_count`` frames.

    The sprite rate is ``min(fps, source fps)``; tiles are ``tile_width`` wide, height by aspect
    ratio (even), at most twice ``tile_width`` tall (a narrower tile for taller pictures).
    """
    if fps <= 0 or tile_width < 2 or columns < 1 or rows < 1:
        raise ValueError("fps, tile_width, columns and rows must be positive")
    if image_format not in _EXTENSIONS:
        raise ValueError(f"unknown sprite format {image_format!r}; use 'webp' or 'jpeg'")
    limit = _MAX_SIDE[image_format]
    if columns * tile_width > limit:
        raise ValueError(f"sheet width {columns * tile_width} exceeds the {image_format} limit of {limit}")
    exact_source = exact_fps(source_fps)
    sprite_fps = min(Fraction(fps).limit_denominator(1001), exact_source)
    ratio = sprite_fps / exact_source
    tile_w, tile_h = scaled_size(width, height, tile_width // 2 * 2)
    if tile_h > 2 * tile_w:  # taller than 1:2 (a 16x4096 strip): the tile is bounded by its height
        tile_h, tile_w = scaled_size(height, width, 2 * (tile_width // 2 * 2))
    if rows * tile_h > limit:
        raise ValueError(f"sheet height {rows * tile_h} exceeds the {image_format} limit of {limit}")
    if quality is None:
        quality = DEFAULT_QUALITY[image_format]
    return SpritePlan(
        source_fps=exact_source,
        sprite_fps=sprite_fps,
        source_frame_count=frame_count,
        sprite_count=math.floor((frame_count - 1) * ratio) + 1,
        tile_width=tile_w,
        tile_height=tile_h,
        columns=columns,
        rows=rows,
        image_format=image_format,
        quality=quality,
    )


def make_sprites(
    src: Path,
    out_dir: Path,
    fps: float = 24.0,
    tile_width: int = 480,
    columns: int = 5,
    rows: int = 5,
    *,
    image_format: SpriteFormat = "jpeg",
    quality: int | None = None,
    timeout: float | None = None,
) -> SpriteManifest:
    """Render sprite sheets of the whole of ``src`` into ``out_dir`` plus ``manifest.json``.

    Geometry as :func:`plan_sprites`. Sheets are named ``sheet_00000.jpg`` (or ``.webp``)...
    Existing sheets in ``out_dir`` from an earlier run are replaced (all files are written to a
    temporary directory first). The pipeline renders sprites in the proxy's decode pass
    (:mod:`infra.media.media_pass`); this is the fallback that decodes ``src`` on its own.
    """
    src, out_dir = Path(src), Path(out_dir)
    info = probe(src)
    plan = plan_sprites(
        info.width, info.height, info.frame_count, info.fps, fps, tile_width, columns, rows,
        image_format=image_format, quality=quality,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sprites-", dir=out_dir))
    try:
        run_ffmpeg(
            [
                *LOCAL_INPUT, "-i", str(src), "-filter_complex", plan.graph("[0:v:0]"),
                *plan.output_args(work),
            ],
            what="rendering sprite sheets",
            path=src,
            timeout=timeout or default_timeout(info.duration, factor=2.0),
        )  # fmt: skip
        manifest = plan.finish(work, out_dir, src)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "sprites for %s: %d sprites at %s fps on %d sheets",
        src, manifest.sprite_count, manifest.sprite_fps, len(manifest.sheets),
    )  # fmt: skip
    return manifest
