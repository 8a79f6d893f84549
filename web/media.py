"""Sprite media for the pages: manifests read from object storage (cached), sheet URLs and the CSS of
one thumbnail tile."""

from __future__ import annotations

import logging
import posixpath
import threading
import time
from dataclasses import dataclass
from typing import Any

from infra.media.sprites import SpriteManifest, sprite_position
from infra.object_storage import ObjectNotFoundError, ObjectStorage, validate_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thumb:
    """CSS for one sprite tile scaled to ``width`` pixels."""

    url: str
    width: int
    height: int
    bg_width: int
    bg_height: int
    x: int
    y: int

    @property
    def style(self) -> str:
        return (
            f"width:{self.width}px;height:{self.height}px;background-image:url('{self.url}');"
            f"background-size:{self.bg_width}px {self.bg_height}px;"
            f"background-position:-{self.x}px -{self.y}px"
        )


def media_url(key: str) -> str:
    from urllib.parse import quote

    return "/media/" + quote(validate_key(key))


class Manifests:
    """Sprite manifests read from object storage, cached for a while (they change only on a re-run)."""

    def __init__(self, storage: ObjectStorage, ttl: float = 300.0, max_entries: int = 512) -> None:
        self.storage = storage
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, SpriteManifest | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str | None) -> SpriteManifest | None:
        if not key:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        manifest: SpriteManifest | None
        try:
            manifest = SpriteManifest.from_json(self.storage.get_bytes(key).decode("utf-8"))
        except (ObjectNotFoundError, ValueError, TypeError, KeyError) as error:
            log.warning("sprite manifest %s unavailable: %s", key, error)
            manifest = None
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (now + (self.ttl if manifest else 10.0), manifest)
        return manifest

    @staticmethod
    def sheet_urls(key: str, manifest: SpriteManifest) -> list[str]:
        base = posixpath.dirname(key)
        return [media_url(posixpath.join(base, sheet)) for sheet in manifest.sheets]

    def player(self, key: str | None) -> dict[str, Any] | None:
        """What the sprite player needs: geometry, rates and the sheet URLs."""
        manifest = self.get(key)
        if manifest is None or key is None:
            return None
        return {
            "sheets": self.sheet_urls(key, manifest),
            "tile_width": manifest.tile_width,
            "tile_height": manifest.tile_height,
            "columns": manifest.columns,
            "rows": manifest.rows,
            "per_sheet": manifest.frames_per_sheet,
            "sprite_count": manifest.sprite_count,
            "sprite_fps": manifest.sprite_fps,
            "source_fps": manifest.source_fps,
        }

    def thumb(self, key: str | None, frame: int, width: int = 160) -> Thumb | None:
        manifest = self.get(key)
        if manifest is None or key is None:
            return None
        sheet, x, y = sprite_position(manifest, max(0, frame))
        scale = width / manifest.tile_width
        return Thumb(
            url=media_url(posixpath.join(posixpath.dirname(key), sheet)),
            width=width,
            height=round(manifest.tile_height * scale),
            bg_width=round(manifest.sheet_width * scale),
            bg_height=round(manifest.sheet_height * scale),
            x=round(x * scale),
            y=round(y * scale),
        )
