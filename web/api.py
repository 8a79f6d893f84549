"""The JSON API under ``/api``: review queue and actions, retries and rebuilds (OpenAPI at ``/schema``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.params import Body, FromPath, FromQuery, JSONBody, QueryParameter

from commands.errors import parse_id
from web import ops
from web.auth import User, require
from web.dto import (
    ActionResult,
    ClipView,
    DecisionBody,
    HeartbeatBody,
    LeaseRelease,
    LeaseRenewal,
    NextClips,
    Pending,
    RebuildResult,
    RetryResult,
    Siblings,
    SkippedClip,
    SplitBody,
    TargetBody,
)
from web.media import Manifests
from web.readmodels import ReadModels
from web.review import Projections, Review
from web.search import search_page

REVIEW = require("reviewer")


#: Answer header of every review action: "false" when the read models had not applied it in time.
CAUGHT_UP_HEADER = "X-Heaters-Caught-Up"


async def _caught_up_header(response: Response[Any]) -> Response[Any]:
    # async: Litestar runs a sync hook in a worker thread, a hop per answer for a dictionary update
    if isinstance(response.content, ActionResult):
        response.headers[CAUGHT_UP_HEADER] = "true" if response.content.caught_up else "false"
    return response


def _decision_route(action: str, doc: str, handler: Callable[..., ActionResult]) -> HTTPRouteHandler:
    handler.__name__ = handler.__qualname__ = action  # the operation's summary in the OpenAPI schema
    handler.__doc__ = doc
    return post(f"/clips/{{clip_id:str}}/{action}", guards=[REVIEW], status_code=200, sync_to_thread=True)(
        handler
    )


def _decision(action: str, doc: str) -> HTTPRouteHandler:
    """``POST /api/clips/{clip_id}/{action}``: a decision on the clip alone (a ``DecisionBody``)."""

    def decide(
        self: Controller,
        review: NamedDependency[Review],
        user: NamedDependency[User],
        clip_id: FromPath[str],
        data: JSONBody[DecisionBody | None] = None,
    ) -> ActionResult:
        return review.act(user, clip_id, action, seen=data.seen if data else None)

    return _decision_route(action, doc, decide)


def _decision_with(action: str, doc: str) -> HTTPRouteHandler:
    """``POST /api/clips/{clip_id}/{action}``: a decision on the clip and another (a ``TargetBody``)."""

    def decide(
        self: Controller,
        review: NamedDependency[Review],
        user: NamedDependency[User],
        clip_id: FromPath[str],
        data: JSONBody[TargetBody | None] = None,
    ) -> ActionResult:
        target = data or TargetBody()
        return review.act(user, clip_id, action, with_clip_id=target.with_clip_id, seen=target.seen)

    return _decision_route(action, doc, decide)


@dataclass
class ReleaseForm:
    """What ``navigator.sendBeacon`` posts when the review page goes away."""

    clips: str = ""


class ReviewApi(Controller):
    path = "/api"
    tags = ["review"]
    after_request = staticmethod(_caught_up_header)

    @get("/review/next", guards=[REVIEW], sync_to_thread=True)
    def next_clips(
        self,
        review: NamedDependency[Review],
        user: NamedDependency[User],
        count: Annotated[int, QueryParameter(ge=1, le=10)] = 4,
        exclude: Annotated[
            str | None, QueryParameter(description="comma-separated ids of the clips the page holds")
        ] = None,
        after: Annotated[
            str | None, QueryParameter(description="continue after this clip, in its video")
        ] = None,
    ) -> NextClips:
        """The next clips to review, leased to the caller (up to ``count``, in review order; at most
        10 leased in all). Of the ``exclude``d clips, ``gone`` lists those no longer awaiting review."""
        skip = [parse_id(part, "excluded clip id") for part in (exclude or "").split(",") if part.strip()]
        start = parse_id(after, "after clip id") if after else None
        return review.next(user, count, skip, start)

    @get("/review/pending", guards=[require()], sync_to_thread=True)
    def pending(self, rm: NamedDependency[ReadModels]) -> Pending:
        """How many clips wait for review."""
        return Pending(pending=rm.pending_count())

    @get("/review/skipped", guards=[REVIEW], sync_to_thread=True)
    def skipped(self, review: NamedDependency[Review]) -> list[SkippedClip]:
        """Skipped clips, oldest first: they come back in the queue after the clips pending review."""
        return [
            SkippedClip(
                id=str(r["id"]), video_id=str(r["video_id"]), video_title=r["video_title"],
                start_frame=int(r["start_frame"]), end_frame=int(r["end_frame"]),
            )
            for r in review.skipped()
        ]  # fmt: skip

    @post("/review/leases/renew", guards=[REVIEW], status_code=200, sync_to_thread=True)
    def renew(
        self,
        review: NamedDependency[Review],
        user: NamedDependency[User],
        data: JSONBody[HeartbeatBody | None] = None,
    ) -> LeaseRenewal:
        """The page's heartbeat: keep the caller's clip leases (``lease_seconds`` from now); ``shown`` is
        the clip on screen."""
        shown = parse_id(data.shown, "shown clip id") if data and data.shown else None
        return LeaseRenewal(renewed=review.heartbeat(user, shown))

    @post("/review/leases/release", guards=[REVIEW], status_code=200, sync_to_thread=True)
    def release(
        self,
        review: NamedDependency[Review],
        user: NamedDependency[User],
        data: Annotated[ReleaseForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> LeaseRelease:
        """The page is going away (``navigator.sendBeacon`` on ``pagehide``, a form with the CSRF token):
        release the leases of the comma-separated ``clips`` at once."""
        ids = [parse_id(part, "clip id") for part in data.clips.split(",") if part.strip()]
        return LeaseRelease(released=review.release(user, ids) if ids else 0)

    @post("/review/undo", guards=[REVIEW], status_code=200, sync_to_thread=True)
    def undo_last(self, review: NamedDependency[Review], user: NamedDependency[User]) -> ActionResult:
        """Undo the caller's last decision that still stands (their undo stack lives on the server, so
        every tab and session of theirs undoes the same history)."""
        return review.undo_last(user)

    @get("/clips/{clip_id:str}", guards=[require("reviewer", "auditor")], sync_to_thread=True)
    def clip(
        self, review: NamedDependency[Review], user: NamedDependency[User], clip_id: FromPath[str]
    ) -> ClipView:
        """One clip with what the player needs (leased to a reviewer when pending and free)."""
        if user.may("reviewer"):
            return review.open(clip_id, user)
        return review.view(parse_id(clip_id, "clip id"))

    @get("/clips/{clip_id:str}/siblings", guards=[REVIEW], sync_to_thread=True)
    def siblings(self, review: NamedDependency[Review], clip_id: FromPath[str]) -> Siblings:
        """The live clips of the clip's video, in frame order, with sprite thumbnails (ID mode)."""
        return review.siblings(clip_id)

    approve = _decision(
        "approve", "Approve the clip (``seen``: the version on screen; a clip changed since is refused)."
    )
    skip = _decision("skip", "Skip the clip: it comes back after the clips pending review.")
    archive = _decision("archive", "Archive the clip: it leaves the review queue for good.")

    @post("/clips/{clip_id:str}/undo", guards=[REVIEW], status_code=200, sync_to_thread=True)
    def undo(
        self, review: NamedDependency[Review], user: NamedDependency[User], clip_id: FromPath[str]
    ) -> ActionResult:
        """Undo the last decision on the clip (split and merge included): a reviewer only their own,
        ops anyone's (the event names who undid it)."""
        return review.act(user, clip_id, "undo")

    @post("/clips/{clip_id:str}/split", guards=[REVIEW], status_code=200, sync_to_thread=True)
    def split(
        self,
        review: NamedDependency[Review],
        user: NamedDependency[User],
        clip_id: FromPath[str],
        data: JSONBody[SplitBody],
    ) -> ActionResult:
        """Split at ``frame``: the first source frame of the right-hand clip."""
        return review.act(user, clip_id, "split", frame=data.frame, seen=data.seen)

    merge = _decision_with(
        "merge", "Merge with an adjacent clip (by default the previous one); both must await review."
    )
    group = _decision_with(
        "group",
        "Approve as grouped with another clip of the same video (by default the previous one), pending "
        "review or approved.",
    )


class SearchApi(Controller):
    path = "/api"
    tags = ["search"]

    @get("/search", guards=[require("reviewer", "auditor")], sync_to_thread=True)
    def search(
        self,
        rm: NamedDependency[ReadModels],
        manifests: NamedDependency[Manifests],
        clip: Annotated[
            str | None, QueryParameter(description="clip id; empty or 'random' picks one")
        ] = None,
        model: FromQuery[str | None] = None,
        strategy: FromQuery[str | None] = None,
        video: FromQuery[str | None] = None,
        sort: Annotated[
            str | None, QueryParameter(description="desc: most similar first (default); asc: least similar")
        ] = None,
        page_number: Annotated[int, QueryParameter(name="page", ge=1, le=10_000)] = 1,
    ) -> dict[str, Any]:
        """The similarity search page's data: the main clip and a page of 12 results with scores (%);
        ``why_none`` says why the clip has no embedding to search from (404 for an unknown clip)."""
        found = search_page(
            rm, manifests, clip, model or None, strategy or None, video or None, page_number, sort or None
        )
        keys = (
            "clip", "model", "strategy", "video", "sort", "page_number", "has_more", "main", "results",
            "why_none",
        )  # fmt: skip
        return {key: found[key] for key in keys}


class OpsApi(Controller):
    path = "/api"
    tags = ["ops"]
    guards = [require("ops")]

    @post("/retry/{ident:str}", status_code=200, sync_to_thread=True)
    def retry(
        self, projections: NamedDependency[Projections], user: NamedDependency[User], ident: FromPath[str]
    ) -> RetryResult:
        """Re-open the failed stage of a video or clip, or else send its stuck work again."""
        done, caught_up = ops.retry(projections, parse_id(ident, "id"), user)
        return RetryResult(id=ident, stage=done.split(" ")[0], message=done, caught_up=caught_up)

    @get("/projections", sync_to_thread=True)
    def projections_status(self, projections: NamedDependency[Projections]) -> list[dict[str, Any]]:
        """Every projection: position, lag, state and last error."""
        return projections.status()

    @post("/projections/{name:str}/rebuild", status_code=200, sync_to_thread=True)
    def rebuild(
        self, projections: NamedDependency[Projections], user: NamedDependency[User], name: FromPath[str]
    ) -> RebuildResult:
        """Rebuild one projection's read models from the whole log (swapped in when caught up)."""
        detail = ops.rebuild(projections, user, name)
        return RebuildResult(name=name, message=f"projection {name} rebuilt", detail=detail)
