"""The review service behind the review page and its JSON API: the queue with leases, the actions,
and read-your-writes (an action answers only once the projections have applied its events)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from commands.errors import NotFound, parse_id
from commands.service import HeatersApplication
from domain.clip import REVIEWABLE
from domain.errors import DomainError, short_id
from infra.database import DatabaseAddress, retry_once_on_lost_connection
from infra.metrics import READ_YOUR_WRITES_TIMEOUTS, REVIEW_ACTIONS
from projections import views
from web.auth import User
from web.dto import ActionResult, ClipView, NextClips, Sibling, Siblings, SpritePlayer
from web.leases import Leases
from web.media import Manifests
from web.readmodels import ReadModels, Row

log = logging.getLogger(__name__)

#: Appended to an action's message when the read models had not applied it in time.
LATE_NOTE = " (saved; the review pages are still catching up and may show it late)"

#: Read models the review and audit pages read: an action waits until these have applied it.
REVIEW_PROJECTIONS: tuple[str, ...] = ("clips", "videos", "history")


#: The most clips a reviewer holds leased at once (the page prefetches at most this many).
MAX_LEASES = 10
#: How many of a reviewer's decisions their undo stack keeps.
UNDO_DEPTH = 200


@dataclass(frozen=True)
class Decision:
    """What a reviewer asked of a clip: the clip, the other clip (merge, group), the frame (split) and
    the version they saw."""

    clip_id: UUID
    other: UUID | None
    actor: str
    frame: int | None
    seen: int | None


@dataclass(frozen=True)
class Decided:
    """What a decision did: the reviewer's message and the clips it made, removed or grouped with."""

    message: str
    new_ids: list[UUID] = field(default_factory=list)
    removed: list[UUID] = field(default_factory=list)
    other_id: UUID | None = None


class LeaseHeld(Exception):
    """Another reviewer has the clip on screen."""

    def __init__(self, clip_id: UUID, reviewer: str) -> None:
        super().__init__(
            f"clip {short_id(clip_id)} is open on {reviewer}'s screen right now; nothing was saved, "
            "pick another clip"
        )
        self.clip_id = clip_id
        self.reviewer = reviewer


class Projections:
    """The web app's view of the projection runner (``projections.runner`` and friends)."""

    def __init__(
        self,
        app: HeatersApplication,
        address: DatabaseAddress,
        schema: str,
        timeout: float = 5.0,
    ) -> None:
        self.app = app
        self.address = address
        self.schema = schema
        self.timeout = timeout

    def settle(self, names: Sequence[str] | None = REVIEW_PROJECTIONS, position: int | None = None) -> bool:
        """Wait until ``names`` have applied the log up to ``position`` (read-your-writes; a command's
        own position is enough, since events are numbered in commit order), by default every event
        stored so far."""
        from projections.runner import wait_for

        if position is None:
            position = int(self.app.recorder.max_notification_id() or 0)
        wanted = list(names) if names else None
        caught_up = bool(wait_for(self.address, self.schema, position, names=wanted, timeout=self.timeout))
        if not caught_up:
            READ_YOUR_WRITES_TIMEOUTS.inc()
            log.warning(
                "projections %s did not reach position %d within %.1fs", names, position, self.timeout
            )
        return caught_up

    def status(self) -> list[dict[str, Any]]:
        from projections.status import projection_status

        return [asdict(item) for item in projection_status(self.app, self.address)]

    def daemons(self) -> list[dict[str, Any]]:
        from projections.status import daemon_status

        return [asdict(item) for item in daemon_status(self.address, self.schema)]

    def rebuild(self, name: str) -> Any:
        from projections.rebuild import rebuild

        return rebuild(self.app, self.address, name)


class Review:
    """The review queue and actions for one web app."""

    def __init__(
        self,
        heaters: HeatersApplication,
        rm: ReadModels,
        manifests: Manifests,
        projections: Projections,
        lease_ttl: float = 45.0,
        max_leases: int = MAX_LEASES,
    ) -> None:
        self.heaters = heaters
        self.rm = rm
        self.leases = Leases(rm)
        self.manifests = manifests
        self.projections = projections
        self.lease_ttl = lease_ttl
        self.max_leases = max(1, min(max_leases, MAX_LEASES))

    # -- reading -----------------------------------------------------------------------------------

    def view(self, clip_id: UUID, reviewer: str | None = None, row: Row | None = None) -> ClipView:
        """The clip view of ``clip_id``; ``row``: its :func:`views.clip_with_siblings` row, when the
        caller read it already."""
        row = row or self.rm.read(views.clip_with_siblings, clip_id)
        if row is None:
            raise NotFound("clip", clip_id)
        count = int(row["sibling_count"])  # its place among its video's live clips, computed in SQL
        index = int(row["sibling_index"]) if row["live"] else -1
        previous, following = (row["previous_id"], row["next_id"]) if index >= 0 else (None, None)
        manifest_key = row.get("sprite_manifest") or (row.get("video_media") or {}).get("sprites")
        player = self.manifests.player(manifest_key)
        return ClipView(
            id=str(row["id"]),
            video_id=str(row["video_id"]),
            video_title=row.get("video_title"),
            state=str(row["state"]),
            live=bool(row["live"]),
            start_frame=int(row["start_frame"]),
            end_frame=int(row["end_frame"]),
            fps=row.get("fps"),
            index=index,
            clip_count=count,
            previous_clip_id=str(previous) if previous is not None else None,
            next_clip_id=str(following) if following is not None else None,
            grouped_with=[str(g) for g in row.get("grouped_with") or []],
            sprite=SpritePlayer(**player) if player else None,
            leased_by=self.leases.lease_holder(row["id"], reviewer) if reviewer else None,
            version=int(row["version"]),
        )

    def next(
        self, user: User, count: int = 4, exclude: Sequence[UUID] = (), after: UUID | None = None
    ) -> NextClips:
        """The reviewer's next clips (leased to them), in review order; ``exclude``: the clips the page
        already holds (those no longer awaiting review come back in ``gone``); ``after``: continue after
        this clip, in its video."""
        count = max(1, min(count, self.max_leases))
        held: int | None = self.leases.renew_leases(user.name, self.lease_ttl)
        start: tuple[UUID, int] | None = None
        if after is not None:
            row = self.rm.clip(after)
            if row is not None:
                start = (row["video_id"], int(row["end_frame"]))
        kept: list[UUID] = []
        skip = list(exclude)
        for _ in range(5):  # read models behind the log: leave out what the log already decided
            ids = self.leases.claim_next(
                user.name, count - len(kept), skip, self.lease_ttl, self.max_leases, start, held
            )
            held = None  # counted again after releases
            if not ids:
                break
            decided = [clip_id for clip_id in ids if not self._pending_in_log(clip_id)]
            if decided:
                self.leases.release(decided, user.name)
            skip += ids
            kept += [clip_id for clip_id in ids if clip_id not in decided]
            if len(kept) >= count:
                break
        rows, pending, gone = self._read_next(user, kept, exclude)
        shown = [self.view(clip_id, row=row) for clip_id, row in zip(kept, rows, strict=True) if row]
        return NextClips(clips=shown, pending=pending, gone=[str(c) for c in gone])

    def _read_next(
        self, user: User, clip_ids: Sequence[UUID], exclude: Sequence[UUID]
    ) -> tuple[list[Row | None], int, list[UUID]]:
        """For :meth:`next`, in one round trip: the clip views' rows of ``clip_ids`` (None where the
        read models have none), the clips pending review, and which of ``exclude`` are gone."""

        def read() -> tuple[list[Row | None], int, list[UUID]]:
            with self.rm.connection() as conn:
                with conn.pipeline():
                    clips = [views.send_clip_with_siblings(conn, clip_id) for clip_id in clip_ids]
                    gone = Leases.send_unavailable(conn, exclude, user.name) if exclude else None
                    pending = views.pending_count(conn)  # its fetch sends all three at once
                rows = [cur.fetchone() for cur in clips]
                gone_ids = [r["id"] for r in gone.fetchall()] if gone is not None else []
            return rows, pending, gone_ids

        return retry_once_on_lost_connection("read model query", read)

    def _pending_in_log(self, clip_id: UUID) -> bool:
        """The event store's word (not the read models'): is the clip still waiting for review
        (pending, or skipped and so coming back)?"""
        try:
            return self.heaters.clip_state(clip_id) in REVIEWABLE
        except NotFound:
            return False

    def open(self, clip_id: object, user: User) -> ClipView:
        """A bookmarked clip: leased to the reviewer (as on screen) when it awaits review and is not on
        another reviewer's screen."""
        cid = parse_id(clip_id, "clip id")
        row = self.rm.read(views.clip_with_siblings, cid)
        if row is None:
            raise NotFound("clip", cid)
        holder = None
        if row["state"] in REVIEWABLE and row["live"]:
            holder = self.leases.take_lease(cid, user.name, self.lease_ttl, opened=True)
        view = self.view(cid, row=row)
        view.leased_by = holder
        return view

    def heartbeat(self, user: User, shown: UUID | None) -> int:
        """The page is open: keep its leases; ``shown`` is the clip on screen."""
        return self.leases.renew_leases(user.name, self.lease_ttl, shown)

    def release(self, user: User, clip_ids: Sequence[UUID] | None) -> int:
        """The page closed (or the reviewer logged out): its clips go back to the queue at once."""
        released = self.leases.release(clip_ids, user.name)
        log.info("%s released %d leases", user.name, released)
        return released

    def siblings(self, clip_id: object) -> Siblings:
        cid = parse_id(clip_id, "clip id")
        row = self.rm.clip(cid)
        if row is None:
            raise NotFound("clip", cid)
        clips = []
        for index, s in enumerate(self.rm.live_clips(row["video_id"])):
            thumb = self.manifests.thumb(s["sprite_manifest"], (s["start_frame"] + s["end_frame"]) // 2)
            clips.append(
                Sibling(
                    id=str(s["id"]),
                    start_frame=s["start_frame"],
                    end_frame=s["end_frame"],
                    state=s["state"],
                    index=index,
                    thumb_style=thumb.style if thumb else None,
                )
            )
        return Siblings(video_id=str(row["video_id"]), clips=clips)

    # -- acting ------------------------------------------------------------------------------------

    def _previous(self, clip_id: UUID) -> UUID | None:
        clip = self.rm.clip(clip_id)
        if clip is None:
            return None
        earlier = [c for c in self.rm.live_clips(clip["video_id"]) if c["end_frame"] <= clip["start_frame"]]
        return earlier[-1]["id"] if earlier else None

    def act(
        self,
        user: User,
        clip_id: object,
        action: str,
        *,
        frame: int | None = None,
        with_clip_id: str | None = None,
        seen: int | None = None,
    ) -> ActionResult:
        """One decision on the clip the reviewer has on screen (``seen``: the version they saw)."""
        cid = parse_id(clip_id, "clip id")
        other = parse_id(with_clip_id, "other clip id") if with_clip_id else None
        holder = self.leases.lease_holder(cid, user.name)
        if holder is not None:
            raise LeaseHeld(cid, holder)
        if action in ("merge", "group"):  # the other clip must not be on another reviewer's screen
            partner = other or self._previous(cid)
            partner_holder = (
                self.leases.lease_holder(partner, user.name, opened_only=True) if partner else None
            )
            if partner is not None and partner_holder is not None:
                raise LeaseHeld(partner, partner_holder)
        if action == "undo":
            return self._undo(user, cid)
        decide = DECISIONS.get(action)
        if decide is None:
            raise ValueError(f"unknown action {action!r}")
        done = decide(self, Decision(cid, other, user.actor, frame, seen))
        message = done.message
        position = self.heaters.saved_position()
        if done.new_ids:  # the reviewer reviews what they just made: leased before the read models show it
            with self.rm.connection() as conn, conn.pipeline():  # one round trip
                for new_id in done.new_ids:
                    Leases.send_take_lease(conn, new_id, user.name, self.lease_ttl)
        # Release the lease only once the read models show the decision: released earlier, another
        # reviewer's next-clip query could still see the clip as pending and take it.
        caught_up = self.projections.settle(position=position)
        pending = self._release_and_count(user, [cid], push=action)
        if not caught_up:
            message += LATE_NOTE
        log.info("%s: %s on clip %s", user.name, action, cid)
        REVIEW_ACTIONS.labels(action).inc()
        return ActionResult(
            action=action,
            clip_id=str(cid),
            message=message,
            pending=pending,
            caught_up=caught_up,
            new_clip_ids=[str(i) for i in done.new_ids],
            other_clip_id=str(done.other_id) if done.other_id else None,
            removed_clip_ids=[str(c) for c in done.removed],
        )

    # -- the decisions, one handler each (``DECISIONS``) ---------------------------------------------

    def _approve(self, d: Decision) -> Decided:
        self.heaters.approve(d.clip_id, d.actor, seen=d.seen)
        return Decided(f"Approved clip {short_id(d.clip_id)}")

    def _skip(self, d: Decision) -> Decided:
        self.heaters.skip(d.clip_id, d.actor, seen=d.seen)
        return Decided(f"Skipped clip {short_id(d.clip_id)}")

    def _archive(self, d: Decision) -> Decided:
        self.heaters.archive(d.clip_id, d.actor, seen=d.seen)
        return Decided(f"Archived clip {short_id(d.clip_id)}")

    def _split(self, d: Decision) -> Decided:
        if d.frame is None:
            raise ValueError("split needs a frame")
        new_ids = list(self.heaters.split(d.clip_id, d.frame, d.actor, seen=d.seen))
        return Decided(f"Split clip {short_id(d.clip_id)} at frame {d.frame}", new_ids=new_ids)

    def _merge(self, d: Decision) -> Decided:
        merged_id, other_id = self.heaters.merge_pair(d.clip_id, d.other, d.actor, seen=d.seen)
        partner = f"clip {short_id(d.other)}" if d.other else "the previous clip"
        return Decided(
            f"Merged clip {short_id(d.clip_id)} with {partner} into clip {short_id(merged_id)}",
            new_ids=[merged_id],
            removed=[other_id],
        )

    def _group(self, d: Decision) -> Decided:
        other_id = self.heaters.group(d.clip_id, d.other, d.actor, seen=d.seen)
        return Decided(
            f"Grouped clip {short_id(d.clip_id)} with clip {short_id(other_id)}", other_id=other_id
        )

    # -- undo: each reviewer's own decisions, newest first -----------------------------------------

    @staticmethod
    def _push(conn: psycopg.Connection[Row], user: User, clip_id: UUID, action: str) -> None:
        """Put a decision on the reviewer's undo stack (the newest ``UNDO_DEPTH`` are kept), in one
        statement: the DELETE does not see the row the INSERT adds, so it keeps ``UNDO_DEPTH - 1``."""
        conn.execute(
            """WITH pushed AS (
                   INSERT INTO review_undo (reviewer, clip_id, action) VALUES (%(me)s, %(clip)s, %(action)s))
               DELETE FROM review_undo WHERE reviewer = %(me)s AND id <= (
                   SELECT id FROM review_undo WHERE reviewer = %(me)s ORDER BY id DESC
                   OFFSET %(depth)s LIMIT 1)""",
            {"me": user.name, "clip": clip_id, "action": action, "depth": UNDO_DEPTH - 1},
        )

    def _release_and_count(self, user: User, clip_ids: Sequence[UUID], push: str | None = None) -> int:
        """Release the reviewer's leases on ``clip_ids`` and count the clips pending review; with
        ``push``, first put that decision on ``clip_ids[0]`` on the reviewer's undo stack. One round
        trip, the writes in one transaction (one commit to flush, not one per statement)."""
        with self.rm.connection() as conn, conn.pipeline():
            with conn.transaction():
                if push is not None:
                    self._push(conn, user, clip_ids[0], push)
                Leases.send_release(conn, clip_ids, user.name)
            return views.pending_count(conn)  # its fetch sends the transaction with it

    def undo_last(self, user: User) -> ActionResult:
        """Undo the reviewer's last decision that still stands (from any tab or session): their undo
        stack is kept on the server. Entries someone (ops) undid meanwhile are dropped on the way."""
        while True:
            top = self.rm.one(
                "SELECT id, clip_id, action FROM review_undo WHERE reviewer = %s ORDER BY id DESC LIMIT 1",
                (user.name,),
            )
            if top is None:
                raise DomainError("nothing to undo: none of your decisions is left to undo")
            try:
                last = self.heaters.get_clip(top["clip_id"]).last_decision
            except NotFound:
                last = None
            if last is not None and last.get("by") == user.actor and last["kind"] == top["action"]:
                return self._undo(user, top["clip_id"], entry=int(top["id"]))
            self._drop(int(top["id"]))

    def _drop(self, entry: int) -> None:
        with self.rm.connection() as conn:
            conn.execute("DELETE FROM review_undo WHERE id = %s", (entry,))

    def _undo(self, user: User, cid: UUID, entry: int | None = None) -> ActionResult:
        """Undo the last decision on ``cid``: the reviewer's own; ops may undo anyone's."""
        done = self.heaters.undo_decision(cid, user.actor, any_author=user.role == "ops")
        undone, decision, target_id = done.kind, done.decision, done.clip_id
        position = self.heaters.saved_position()
        with self.rm.connection() as conn, conn.pipeline():  # one round trip
            if entry is not None:
                conn.execute("DELETE FROM review_undo WHERE id = %s", (entry,))
            # the clip the undone decision was made on: the page shows it again
            Leases.send_take_lease(conn, target_id, user.name, self.lease_ttl)
        back = [target_id]
        removed = list(decision.get("into") or []) if undone == "split" else []
        if undone == "merge":
            removed = [decision["into"]]
        caught_up = self.projections.settle(position=position)
        author = str(decision.get("by") or "")
        whose = "" if author == user.actor else f" (made by {author.removeprefix('user:')})"
        log.info("%s: undo of %s on clip %s%s", user.name, undone, target_id, whose)
        REVIEW_ACTIONS.labels("undo").inc()
        message = f"Undid the {undone} of clip {short_id(target_id)}{whose}"
        if not caught_up:
            message += LATE_NOTE
        return ActionResult(
            action="undo",
            clip_id=str(target_id),
            message=message,
            pending=self.rm.pending_count(),
            caught_up=caught_up,
            new_clip_ids=[str(c) for c in back],
            undone=undone,
            removed_clip_ids=[str(c) for c in removed],
        )

    def skipped(self) -> list[Row]:
        return self.rm.skipped()


#: The review actions besides undo, each with its handler.
DECISIONS: dict[str, Callable[[Review, Decision], Decided]] = {
    "approve": Review._approve,
    "skip": Review._skip,
    "archive": Review._archive,
    "split": Review._split,
    "merge": Review._merge,
    "group": Review._group,
}
