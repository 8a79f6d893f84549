"""Queries the web app runs on the read-model tables (``projections/schema.py``) and the review leases.

Every query runs on a pooled connection whose ``search_path`` is the Heaters schema, so the SQL names
tables plainly. The web app never writes read models; it writes only ``review_leases``, ``review_undo``
and ``users``.
"""

from __future__ import annotations

import logging
import posixpath
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from infra.database import DatabaseAddress, check_idle_connection, retry_once_on_lost_connection
from infra.media.sprites import SpriteManifest, sprite_position
from infra.object_storage import ObjectNotFoundError, ObjectStorage, validate_key

log = logging.getLogger(__name__)

_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

Row = dict[str, Any]


class ReadModels:
    """A connection pool on the Heaters schema and the queries of the web pages."""

    def __init__(
        self, address: DatabaseAddress, schema: str, *, min_size: int = 1, max_size: int = 8
    ) -> None:
        if not _SCHEMA.match(schema):
            raise ValueError(f"unsupported schema name {schema!r}")
        self.address = address
        self.schema = schema
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            address.conninfo(),
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "options": f"-c search_path={schema},public",
                "row_factory": dict_row,
            },
            open=False,
            name="heaters-web",
            check=check_idle_connection,  # a connection the server closed is replaced
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        with self.pool.connection(timeout=10.0) as conn:
            yield conn

    @contextmanager
    def tuple_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection returning plain tuples (for ``projections.queries``)."""
        with self.connection() as conn:
            conn.row_factory = tuple_row  # type: ignore[assignment]
            try:
                yield conn
            finally:
                conn.row_factory = dict_row

    def all(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        def read() -> list[Row]:
            with self.connection() as conn:
                return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

        return retry_once_on_lost_connection("read model query", read)

    def one(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        def read() -> Row | None:
            with self.connection() as conn:
                return conn.execute(query, params).fetchone()  # type: ignore[arg-type]

        return retry_once_on_lost_connection("read model query", read)

    # -- clips and videos --------------------------------------------------------------------------

    def clip(self, clip_id: UUID) -> Row | None:
        return self.one(
            """SELECT c.*, v.title AS video_title, v.source AS video_source, v.fps, v.frame_count,
                      v.media AS video_media
               FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id WHERE c.id = %s""",
            (clip_id,),
        )

    def video(self, video_id: UUID) -> Row | None:
        return self.one("SELECT * FROM rm_videos WHERE id = %s", (video_id,))

    def live_clips(self, video_id: UUID) -> list[Row]:
        return self.all(
            """SELECT id, start_frame, end_frame, state, sprite_manifest, grouped_with
               FROM rm_clips WHERE video_id = %s AND live ORDER BY start_frame""",
            (video_id,),
        )

    def pending_count(self) -> int:
        row = self.one("SELECT count(*) AS n FROM rm_clips WHERE state = 'pending_review' AND live")
        return int(row["n"]) if row else 0

    def videos(self, limit: int = 200) -> list[Row]:
        return self.all(
            "SELECT id, title, source, state FROM rm_videos ORDER BY submitted_at DESC LIMIT %s", (limit,)
        )

    # -- review leases -----------------------------------------------------------------------------
    # A lease keeps a clip pending review in one reviewer's queue. ``opened``: the clip is on the
    # reviewer's screen (only then does it block another reviewer's action on it, its merge or group).

    def claim_next(
        self,
        reviewer: str,
        count: int,
        exclude: Sequence[UUID],
        ttl: float,
        limit: int,
        after: tuple[UUID, int] | None = None,
    ) -> list[UUID]:
        """Lease up to ``count`` clips awaiting review for ``reviewer``, never holding more than
        ``limit`` leases in all. Order: clips pending review before skipped ones (a skipped clip comes
        back after the rest, longest skipped first); with ``after`` = (video, frame), that video's later
        clips first; then by video, then frame. Clips leased by someone else are passed over; a lease is taken atomically (two
        reviewers racing for one clip: one gets it, the other moves on)."""
        claimed: list[UUID] = []
        skip = list(exclude)
        video, frame = after if after else (None, 0)
        with self.connection() as conn:
            held_row = conn.execute(
                "SELECT count(*) AS n FROM review_leases WHERE reviewer = %s AND expires_at > now()",
                (reviewer,),
            ).fetchone()
            held = int(held_row["n"]) if held_row else 0
            for _ in range(count * 4 + 4):
                if len(claimed) >= count:
                    break
                candidates = conn.execute(
                    """SELECT c.id, (l.reviewer = %(me)s AND l.expires_at > now()) AS mine
                       FROM rm_clips c
                       JOIN rm_videos v ON v.id = c.video_id
                       LEFT JOIN review_leases l ON l.clip_id = c.id
                       WHERE c.state IN ('pending_review', 'skipped') AND c.live
                         AND NOT (c.id = ANY(%(skip)s))
                         AND (l.clip_id IS NULL OR l.expires_at <= now() OR l.reviewer = %(me)s)
                       ORDER BY c.state = 'skipped', CASE WHEN c.state = 'skipped' THEN c.updated_at END,
                                (c.video_id = %(video)s AND c.start_frame >= %(frame)s) DESC,
                                v.submitted_at, c.video_id, c.start_frame
                       LIMIT %(n)s""",
                    {"skip": skip, "me": reviewer, "n": count - len(claimed), "video": video, "frame": frame},
                ).fetchall()
                if not candidates:
                    break
                for row in candidates:
                    skip.append(row["id"])
                    if not row["mine"] and held >= limit:
                        continue
                    if self._take_lease(conn, row["id"], reviewer, ttl):
                        claimed.append(row["id"])
                        held += 0 if row["mine"] else 1
        return claimed

    @staticmethod
    def _take_lease(
        conn: psycopg.Connection[Row], clip_id: UUID, reviewer: str, ttl: float, opened: bool = False
    ) -> bool:
        """Lease ``clip_id`` to ``reviewer`` unless someone else holds it. ``opened`` (the reviewer opened
        it by its link) also takes a lease another reviewer only prefetched."""
        row = conn.execute(
            """INSERT INTO review_leases (clip_id, reviewer, expires_at, opened)
               VALUES (%(id)s, %(me)s, now() + make_interval(secs => %(ttl)s), %(opened)s)
               ON CONFLICT (clip_id) DO UPDATE SET reviewer = EXCLUDED.reviewer,
                   expires_at = EXCLUDED.expires_at,
                   opened = EXCLUDED.opened OR (review_leases.opened AND review_leases.reviewer = EXCLUDED.reviewer)
               WHERE review_leases.expires_at <= now() OR review_leases.reviewer = EXCLUDED.reviewer
                  OR (EXCLUDED.opened AND NOT review_leases.opened)
               RETURNING clip_id""",
            {"id": clip_id, "me": reviewer, "ttl": ttl, "opened": opened},
        ).fetchone()
        return row is not None

    def take_lease(self, clip_id: UUID, reviewer: str, ttl: float, opened: bool = False) -> str | None:
        """Lease one clip; None if taken, else the name of the reviewer holding it."""
        with self.connection() as conn:
            if self._take_lease(conn, clip_id, reviewer, ttl, opened):
                return None
            return self._holder(conn, clip_id, reviewer) or None

    def lease_holder(self, clip_id: UUID, reviewer: str, *, opened_only: bool = False) -> str | None:
        """The other reviewer holding a live lease on the clip (with ``opened_only``: having it on
        screen), if any."""
        with self.connection() as conn:
            return self._holder(conn, clip_id, reviewer, opened_only)

    @staticmethod
    def _holder(
        conn: psycopg.Connection[Row], clip_id: UUID, reviewer: str, opened_only: bool = False
    ) -> str | None:
        row = conn.execute(
            """SELECT reviewer FROM review_leases
               WHERE clip_id = %s AND expires_at > now() AND reviewer <> %s AND (opened OR NOT %s)""",
            (clip_id, reviewer, opened_only),
        ).fetchone()
        return str(row["reviewer"]) if row else None

    def renew_leases(self, reviewer: str, ttl: float, shown: UUID | None = None) -> int:
        """Keep the reviewer's live leases ``ttl`` seconds more (the page's heartbeat); ``shown`` is the
        clip on their screen, now opened."""
        with self.connection() as conn:
            cur = conn.execute(
                """UPDATE review_leases SET expires_at = now() + make_interval(secs => %s),
                          opened = opened OR (clip_id = %s::uuid) IS TRUE
                   WHERE reviewer = %s AND expires_at > now()""",
                (ttl, shown, reviewer),
            )
            conn.execute("DELETE FROM review_leases WHERE expires_at < now() - interval '1 hour'")
            # leases on clips decided meanwhile (by someone else: the holder's action was refused) go,
            # so they never count against the reviewer's limit
            conn.execute(
                """DELETE FROM review_leases l USING rm_clips c
                   WHERE l.reviewer = %s AND c.id = l.clip_id
                     AND (NOT c.live OR c.state NOT IN ('pending_review', 'skipped'))""",
                (reviewer,),
            )
            return cur.rowcount

    def leases_of(self, reviewer: str) -> list[UUID]:
        rows = self.all(
            "SELECT clip_id FROM review_leases WHERE reviewer = %s AND expires_at > now() ORDER BY clip_id",
            (reviewer,),
        )
        return [r["clip_id"] for r in rows]

    def release(self, clip_ids: Sequence[UUID] | None, reviewer: str) -> int:
        """Release the reviewer's leases on ``clip_ids`` (None: all of them)."""
        with self.connection() as conn:
            cur = conn.execute(
                "DELETE FROM review_leases WHERE reviewer = %s AND (%s::uuid[] IS NULL OR clip_id = ANY(%s))",
                (
                    reviewer,
                    None if clip_ids is None else list(clip_ids),
                    None if clip_ids is None else list(clip_ids),
                ),
            )
            return cur.rowcount

    def unavailable(self, clip_ids: Sequence[UUID], reviewer: str) -> list[UUID]:
        """Which of ``clip_ids`` no longer await review, or are on another reviewer's screen."""
        if not clip_ids:
            return []
        rows = self.all(
            """SELECT c.id FROM rm_clips c LEFT JOIN review_leases l ON l.clip_id = c.id
               WHERE c.id = ANY(%(ids)s)
                 AND (NOT c.live OR c.state NOT IN ('pending_review', 'skipped')
                      OR (l.reviewer <> %(me)s AND l.expires_at > now()))""",
            {"ids": list(clip_ids), "me": reviewer},
        )
        return [r["id"] for r in rows]

    def skipped(self, limit: int = 500) -> list[Row]:
        """Skipped clips, oldest decision first (they come back after the clips pending review)."""
        return self.all(
            """SELECT c.id, c.video_id, c.start_frame, c.end_frame, c.updated_at, v.title AS video_title
               FROM rm_clips c JOIN rm_videos v ON v.id = c.video_id
               WHERE c.state = 'skipped' AND c.live ORDER BY c.updated_at, c.id LIMIT %s""",
            (limit,),
        )

    # -- audit -------------------------------------------------------------------------------------

    def history(self, aggregate_id: UUID) -> list[Row]:
        return self.all(
            """SELECT version, kind, event, actor, at, payload, position FROM rm_history
               WHERE aggregate_id = %s ORDER BY version""",
            (aggregate_id,),
        )

    # -- ops ---------------------------------------------------------------------------------------

    def stage_stats(self) -> list[Row]:
        return self.all("SELECT kind, state, count FROM rm_stage_stats WHERE count > 0 ORDER BY kind, state")

    def failed_videos(self) -> list[Row]:
        return self.all(
            """SELECT id, title, source, state, failed_stage, failure_reason, stages, updated_at
               FROM rm_videos WHERE failed_stage IS NOT NULL ORDER BY updated_at DESC LIMIT 200"""
        )

    def waiting_downloads(self) -> list[Row]:
        """Videos whose download is queued or running (ops can cancel them)."""
        return self.all(
            """SELECT id, title, source, state, stages, updated_at
               FROM rm_videos WHERE state IN ('submitted', 'download_running') ORDER BY updated_at LIMIT 200"""
        )

    def failed_clips(self) -> list[Row]:
        return self.all(
            """SELECT id, video_id, state, failed_stage, failure_reason, updated_at
               FROM rm_clips WHERE failed_stage IS NOT NULL AND live ORDER BY updated_at DESC LIMIT 200"""
        )

    # -- similarity --------------------------------------------------------------------------------

    def embedding_options(self) -> tuple[list[str], list[str]]:
        rows = self.all("SELECT DISTINCT model, strategy FROM rm_embeddings WHERE live")
        return sorted({r["model"] for r in rows}), sorted({r["strategy"] for r in rows})

    def random_embedded_clip(
        self, model: str | None, strategy: str | None, video_id: UUID | None
    ) -> UUID | None:
        row = self.one(
            """SELECT clip_id FROM rm_embeddings WHERE live
                 AND (%(model)s::text IS NULL OR model = %(model)s)
                 AND (%(strategy)s::text IS NULL OR strategy = %(strategy)s)
                 AND (%(video)s::uuid IS NULL OR video_id = %(video)s)
               ORDER BY random() LIMIT 1""",
            {"model": model, "strategy": strategy, "video": video_id},
        )
        return row["clip_id"] if row else None

    def embeddings_of(self, clip_id: UUID) -> list[tuple[str, str]]:
        """The (model, strategy) pairs a clip is embedded with."""
        rows = self.all(
            "SELECT DISTINCT model, strategy FROM rm_embeddings WHERE clip_id = %s AND live ORDER BY 1, 2",
            (clip_id,),
        )
        return [(str(r["model"]), str(r["strategy"])) for r in rows]

    def clips_by_id(self, ids: Sequence[UUID]) -> dict[UUID, Row]:
        rows = self.all(
            """SELECT c.id, c.video_id, c.start_frame, c.end_frame, c.state, c.sprite_manifest, c.keyframes,
                      v.title AS video_title
               FROM rm_clips c LEFT JOIN rm_videos v ON v.id = c.video_id WHERE c.id = ANY(%s)""",
            (list(ids),),
        )
        return {r["id"]: r for r in rows}


# -- sprites ----------------------------------------------------------------------------------------


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
