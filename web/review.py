"""The review service behind the review page and its JSON API: the queue with leases, the actions,
and read-your-writes (an action answers only once the projections have applied its events)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any
from uuid import UUID

from commands.errors import NotFound, parse_id
from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from infra.metrics import READ_YOUR_WRITES_TIMEOUTS, REVIEW_ACTIONS
from web.auth import User
from web.dto import ActionResult, ClipView, NextClips, Sibling, Siblings, SpritePlayer
from web.readmodels import Manifests, ReadModels, Row

log = logging.getLogger(__name__)

#: Read models the review and audit pages read: an action waits until these have applied it.
REVIEW_PROJECTIONS: tuple[str, ...] = ("clips", "videos", "history")


class LeaseHeld(Exception):
    """Another reviewer holds the lease on the clip."""

    def __init__(self, clip_id: UUID, reviewer: str) -> None:
        super().__init__(f"clip {clip_id} is being reviewed by {reviewer} right now; pick another clip")
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

    def settle(self, names: Sequence[str] | None = REVIEW_PROJECTIONS) -> bool:
        """Wait until ``names`` have applied every event stored so far (read-your-writes)."""
        from projections.runner import wait_for

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

        return [asdict(item) for item in projection_status(self.address, self.schema)]

    def daemons(self) -> list[dict[str, Any]]:
        from projections.status import daemon_status

        return [asdict(item) for item in daemon_status(self.address, self.schema)]

    def rebuild(self, name: str) -> Any:
        from projections.rebuild import rebuild

        return rebuild(self.address, self.schema, name)


class Review:
    """The review queue and actions for one web app."""

    def __init__(
        self,
        heaters: HeatersApplication,
        rm: ReadModels,
        manifests: Manifests,
        projections: Projections,
        lease_ttl: float = 300.0,
    ) -> None:
        self.heaters = heaters
        self.rm = rm
        self.manifests = manifests
        self.projections = projections
        self.lease_ttl = lease_ttl

    # -- reading -----------------------------------------------------------------------------------

    def view(self, clip_id: UUID, reviewer: str | None = None, row: Row | None = None) -> ClipView:
        row = row or self.rm.clip(clip_id)
        if row is None:
            raise NotFound("clip", clip_id)
        siblings = self.rm.live_clips(row["video_id"])
        ids = [s["id"] for s in siblings]
        index = ids.index(row["id"]) if row["id"] in ids else -1
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
            clip_count=len(ids),
            previous_clip_id=str(ids[index - 1]) if index > 0 else None,
            next_clip_id=str(ids[index + 1]) if 0 <= index < len(ids) - 1 else None,
            grouped_with=[str(g) for g in row.get("grouped_with") or []],
            sprite=SpritePlayer(**player) if player else None,
            leased_by=self.rm.lease_holder(row["id"], reviewer) if reviewer else None,
            version=int(row["version"]),
        )

    def next(self, user: User, count: int = 4, exclude: Sequence[UUID] = ()) -> NextClips:
        """The reviewer's next clips (leased to them), in review order."""
        count = max(1, min(count, 10))
        self.rm.renew_leases(user.name, self.lease_ttl)
        views: list[ClipView] = []
        skip = list(exclude)
        for _ in range(5):  # read models behind the log: leave out what the log already decided
            ids = self.rm.claim_next(user.name, count - len(views), skip, self.lease_ttl)
            if not ids:
                break
            decided = [clip_id for clip_id in ids if not self._pending_in_log(clip_id)]
            if decided:
                self.rm.release(decided, user.name)
                skip += decided
            skip += [clip_id for clip_id in ids if clip_id not in decided]
            for clip_id in ids:
                if clip_id in decided:
                    continue
                try:
                    views.append(self.view(clip_id))
                except NotFound:
                    continue
            if len(views) >= count:
                break
        return NextClips(clips=views, pending=self.rm.pending_count())

    def _pending_in_log(self, clip_id: UUID) -> bool:
        """The event store's word (not the read models'): is the clip still waiting for review?"""
        try:
            return self.heaters.get_clip(clip_id).state == "pending_review"
        except NotFound:
            return False

    def open(self, clip_id: object, user: User) -> ClipView:
        """A bookmarked clip: leased to the reviewer when it is pending and free."""
        cid = parse_id(clip_id, "clip id")
        row = self.rm.clip(cid)
        if row is None:
            raise NotFound("clip", cid)
        holder = None
        if row["state"] == "pending_review" and row["live"]:
            holder = self.rm.take_lease(cid, user.name, self.lease_ttl)
        view = self.view(cid, row=row)
        view.leased_by = holder
        return view

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
    ) -> ActionResult:
        cid = parse_id(clip_id, "clip id")
        other = parse_id(with_clip_id, "other clip id") if with_clip_id else None
        holder = self.rm.lease_holder(cid, user.name)
        if holder is not None:
            raise LeaseHeld(cid, holder)
        if action in ("merge", "group"):  # the other clip must not be in another reviewer's hands
            partner = other or self._previous(cid)
            partner_holder = self.rm.lease_holder(partner, user.name) if partner else None
            if partner is not None and partner_holder is not None:
                raise LeaseHeld(partner, partner_holder)
        actor = user.actor
        new_ids: list[UUID] = []
        other_id: UUID | None = None
        undone: str | None = None
        simple: dict[str, tuple[Callable[[UUID, str], None], str]] = {
            "approve": (self.heaters.approve, "Approved"),
            "skip": (self.heaters.skip, "Skipped"),
            "archive": (self.heaters.archive, "Archived"),
        }
        if action in simple:
            command, message = simple[action]
            command(cid, actor)
        elif action == "split":
            if frame is None:
                raise ValueError("split needs a frame")
            new_ids = list(self.heaters.split(cid, frame, actor))
            message = f"Split at frame {frame}"
        elif action == "merge":
            new_ids = [self.heaters.merge(cid, other, actor)]
            message = f"Merged with clip {other}" if other else "Merged with the previous clip"
        elif action == "group":
            other_id = self.heaters.group(cid, other, actor)
            message = f"Grouped with clip {other_id}" if other else "Grouped with the previous clip"
        elif action == "undo":
            undone = self.heaters.undo(cid, actor)
            message = f"Undid {undone}"
        else:
            raise ValueError(f"unknown action {action!r}")
        for new_id in new_ids:  # the reviewer reviews what they just made
            self.rm.take_lease(new_id, user.name, self.lease_ttl)
        # Release the lease only once the read models show the decision: released earlier, another
        # reviewer's next-clip query could still see the clip as pending and take it.
        caught_up = self.projections.settle()
        if action == "undo":
            self.rm.take_lease(cid, user.name, self.lease_ttl)
        else:
            self.rm.release([cid], user.name)
        if not caught_up:
            message += " (saved; the review pages are still catching up and may show it late)"
        log.info("%s: %s on clip %s", user.name, action, cid)
        REVIEW_ACTIONS.labels(action).inc()
        return ActionResult(
            action=action,
            clip_id=str(cid),
            message=message,
            pending=self.rm.pending_count(),
            caught_up=caught_up,
            new_clip_ids=[str(i) for i in new_ids],
            other_clip_id=str(other_id) if other_id else None,
            undone=undone,
        )
