"""Review leases (``review_leases``): a lease keeps a clip awaiting review in one reviewer's queue for a
short time. ``opened``: the clip is on the reviewer's screen (only then does it block another
reviewer's action on it, its merge or group, or keep a bookmark from taking it)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from uuid import UUID

import psycopg

from domain.stages import ClipState
from projections.views import REVIEWABLE_SQL
from web.readmodels import ReadModels, Row

#: How often (seconds) a process deletes the leases that lapsed more than an hour ago.
SWEEP_SECONDS = 60.0

_FREE = "(l.clip_id IS NULL OR l.expires_at <= now() OR l.reviewer = %(me)s)"
_MINE = "(l.reviewer = %(me)s AND l.expires_at > now()) AS mine"

#: The next ``n`` clips awaiting review that are free for reviewer ``me`` (or leased to them), in review
#: order, leaving out ``skip``: (1) pending clips of ``video`` from ``frame`` on, (2) the other pending
#: clips, by video (oldest submitted first) and frame, (3) skipped clips, longest skipped first. Each
#: part reads what an index gives in its order and PostgreSQL stops at the ``n``-th row, so a claim
#: reads about the clips it passes over (a part that is not reached is not run): ordering every clip
#: awaiting review in one sort cost PostgreSQL 2-5 ms of CPU a claim with 3,000 pending
#: (``bench/review_load.py --server-cpu``), growing with the queue. Part (2) walks the videos with
#: clips pending review (``rm_videos.pending_count``, kept in the same transaction as ``rm_clips``),
#: each through the partial index ``rm_clips_queue`` in frame order; the LIMIT inside keeps PostgreSQL
#: from flattening that into a scan of every pending clip.
QUEUE_QUERY = f"""
    (SELECT c.id, {_MINE}
       FROM rm_clips c LEFT JOIN review_leases l ON l.clip_id = c.id
       WHERE c.video_id = %(video)s AND c.start_frame >= %(frame)s AND c.live AND c.state = '{ClipState.PENDING_REVIEW}'
         AND NOT (c.id = ANY(%(skip)s)) AND {_FREE}
       ORDER BY c.start_frame LIMIT %(n)s)
    UNION ALL
    (SELECT c.id, c.mine
       FROM (SELECT id, submitted_at FROM rm_videos WHERE pending_count > 0) v
       CROSS JOIN LATERAL (
           SELECT c.id, c.start_frame, {_MINE}
           FROM rm_clips c LEFT JOIN review_leases l ON l.clip_id = c.id
           WHERE c.video_id = v.id AND c.live AND c.state = '{ClipState.PENDING_REVIEW}'
             AND NOT coalesce(c.video_id = %(video)s AND c.start_frame >= %(frame)s, false)
             AND NOT (c.id = ANY(%(skip)s)) AND {_FREE}
           ORDER BY c.start_frame LIMIT %(n)s) c
       ORDER BY v.submitted_at, v.id, c.start_frame LIMIT %(n)s)
    UNION ALL
    (SELECT c.id, {_MINE}
       FROM rm_clips c JOIN rm_videos v ON v.id = c.video_id LEFT JOIN review_leases l ON l.clip_id = c.id
       WHERE c.state = '{ClipState.SKIPPED}' AND c.live AND NOT (c.id = ANY(%(skip)s)) AND {_FREE}
       ORDER BY c.updated_at, (c.video_id = %(video)s AND c.start_frame >= %(frame)s) DESC,
                v.submitted_at, c.video_id, c.start_frame
       LIMIT %(n)s)
    LIMIT %(n)s"""


class Leases:
    """The leases of the review queue, on the read models' connection pool (the queue joins
    ``review_leases`` with ``rm_clips``)."""

    def __init__(self, rm: ReadModels) -> None:
        self.rm = rm
        #: when this process last deleted the leases that lapsed long ago (housekeeping, not per call)
        self._swept = 0.0

    def claim_next(
        self,
        reviewer: str,
        count: int,
        exclude: Sequence[UUID],
        ttl: float,
        limit: int,
        after: tuple[UUID, int] | None = None,
        held: int | None = None,
    ) -> list[UUID]:
        """Lease up to ``count`` clips awaiting review for ``reviewer``, never holding more than
        ``limit`` leases in all. Order: clips pending review before skipped ones (a skipped clip comes
        back after the rest, longest skipped first); with ``after`` = (video, frame), that video's later
        clips first; then by video, then frame. Clips leased by someone else are passed over; a lease is taken atomically (two
        reviewers racing for one clip: one gets it, the other moves on). ``held``: how many live leases
        the reviewer holds, when the caller just counted them (:meth:`renew_leases`)."""
        claimed: list[UUID] = []
        skip = list(exclude)
        video, frame = after if after else (None, 0)
        with self.rm.connection() as conn:
            if held is None:
                held_row = conn.execute(
                    "SELECT count(*) AS n FROM review_leases WHERE reviewer = %s AND expires_at > now()",
                    (reviewer,),
                ).fetchone()
                held = int(held_row["n"]) if held_row else 0
            for _ in range(count * 4 + 4):
                if len(claimed) >= count:
                    break
                candidates = conn.execute(
                    QUEUE_QUERY,
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
        return Leases.send_take_lease(conn, clip_id, reviewer, ttl, opened).fetchone() is not None

    @staticmethod
    def send_take_lease(
        conn: psycopg.Connection[Row], clip_id: UUID, reviewer: str, ttl: float, opened: bool = False
    ) -> psycopg.Cursor[Row]:
        """Send :meth:`_take_lease`'s statement (in a pipeline: with others, in one round trip); its
        cursor returns the clip's id when the lease was taken."""
        return conn.execute(
            """INSERT INTO review_leases (clip_id, reviewer, expires_at, opened)
               VALUES (%(id)s, %(me)s, now() + make_interval(secs => %(ttl)s), %(opened)s)
               ON CONFLICT (clip_id) DO UPDATE SET reviewer = EXCLUDED.reviewer,
                   expires_at = EXCLUDED.expires_at,
                   opened = EXCLUDED.opened OR (review_leases.opened AND review_leases.reviewer = EXCLUDED.reviewer)
               WHERE review_leases.expires_at <= now() OR review_leases.reviewer = EXCLUDED.reviewer
                  OR (EXCLUDED.opened AND NOT review_leases.opened)
               RETURNING clip_id""",
            {"id": clip_id, "me": reviewer, "ttl": ttl, "opened": opened},
        )

    def take_lease(self, clip_id: UUID, reviewer: str, ttl: float, opened: bool = False) -> str | None:
        """Lease one clip; None if taken, else the name of the reviewer holding it."""
        with self.rm.connection() as conn:
            if self._take_lease(conn, clip_id, reviewer, ttl, opened):
                return None
            return self._holder(conn, clip_id, reviewer) or None

    def lease_holder(self, clip_id: UUID, reviewer: str, *, opened_only: bool = False) -> str | None:
        """The other reviewer holding a live lease on the clip (with ``opened_only``: having it on
        screen), if any."""
        with self.rm.connection() as conn:
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
        clip on their screen, now opened. Returns how many live leases they hold now. Leases on clips
        decided meanwhile go first (by someone else: the holder's action was refused), so they never
        count against the reviewer's limit; about once a minute, leases lapsed an hour ago go too. The
        statements go in one round trip."""
        sweep = time.monotonic() >= self._swept + SWEEP_SECONDS
        if sweep:
            self._swept = time.monotonic()
        with self.rm.connection() as conn:
            with conn.pipeline():
                conn.execute(
                    f"""DELETE FROM review_leases l USING rm_clips c
                       WHERE l.reviewer = %s AND c.id = l.clip_id
                         AND (NOT c.live OR c.state NOT IN {REVIEWABLE_SQL})""",
                    (reviewer,),
                )
                if sweep:
                    conn.execute("DELETE FROM review_leases WHERE expires_at < now() - interval '1 hour'")
                cur = conn.execute(
                    """UPDATE review_leases SET expires_at = now() + make_interval(secs => %s),
                              opened = opened OR (clip_id = %s::uuid) IS TRUE
                       WHERE reviewer = %s AND expires_at > now()""",
                    (ttl, shown, reviewer),
                )
            return cur.rowcount

    def release(self, clip_ids: Sequence[UUID] | None, reviewer: str) -> int:
        """Release the reviewer's leases on ``clip_ids`` (None: all of them)."""
        with self.rm.connection() as conn:
            return self.send_release(conn, clip_ids, reviewer).rowcount

    @staticmethod
    def send_release(
        conn: psycopg.Connection[Row], clip_ids: Sequence[UUID] | None, reviewer: str
    ) -> psycopg.Cursor[Row]:
        """Send :meth:`release`'s statement (in a pipeline: with others, in one round trip)."""
        ids = None if clip_ids is None else list(clip_ids)
        return conn.execute(
            "DELETE FROM review_leases WHERE reviewer = %s AND (%s::uuid[] IS NULL OR clip_id = ANY(%s))",
            (reviewer, ids, ids),
        )

    def unavailable(self, clip_ids: Sequence[UUID], reviewer: str) -> list[UUID]:
        """Which of ``clip_ids`` no longer await review, or are on another reviewer's screen."""
        if not clip_ids:
            return []
        with self.rm.connection() as conn:
            return [r["id"] for r in self.send_unavailable(conn, clip_ids, reviewer).fetchall()]

    @staticmethod
    def send_unavailable(
        conn: psycopg.Connection[Row], clip_ids: Sequence[UUID], reviewer: str
    ) -> psycopg.Cursor[Row]:
        """Send :meth:`unavailable`'s query (in a pipeline: with others, in one round trip); its rows
        have the ids in ``id``."""
        return conn.execute(
            f"""SELECT c.id FROM rm_clips c LEFT JOIN review_leases l ON l.clip_id = c.id
               WHERE c.id = ANY(%(ids)s)
                 AND (NOT c.live OR c.state NOT IN {REVIEWABLE_SQL}
                      OR (l.reviewer <> %(me)s AND l.expires_at > now()))""",
            {"ids": list(clip_ids), "me": reviewer},
        )
