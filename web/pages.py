"""The HTML pages: login, review, search, audit (history) and ops."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.params import Body, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect, Response, Template

from commands.audit import jsonable, parse_time, state_of
from commands.errors import NotFound, parse_id
from commands.service import HeatersApplication
from domain.errors import DomainError
from infra.config import Settings
from infra.database import DatabaseAddress
from web import ops
from web.auth import LoginLimiter, User, authenticate, require, session_user, start_session
from web.media import Manifests
from web.readmodels import ReadModels
from web.review import Projections, Review
from web.search import search_page

log = logging.getLogger(__name__)


def page(request: Request[Any, Any, Any], rm: ReadModels | None, template: str, **context: Any) -> Template:
    """A page with what the layout needs: the user, the pending badge and a one-shot flash message."""
    user = session_user(request)
    flash = request.session.pop("flash", None) if "session" in request.scope else None
    pending: int | None = None
    if user is not None and rm is not None:
        try:
            pending = rm.pending_count()
        except Exception:  # the read models may not exist yet; the badge is not worth a 500
            log.warning("pending count unavailable", exc_info=True)
    return Template(
        template_name=template,
        context={"user": user, "pending": pending, "flash": flash, **context},
        status_code=int(context.pop("status_code", 200)) if "status_code" in context else 200,
    )


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _flash(request: Request[Any, Any, Any], message: str) -> None:
    request.session["flash"] = message


@dataclass
class CancelForm:
    reason: str = ""


@dataclass
class LoginForm:
    name: str
    password: str
    next: str = "/"


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


class AuthPages(Controller):
    @get("/login", sync_to_thread=False)
    def login_form(
        self,
        request: Request[Any, Any, Any],
        next_url: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Template:
        return page(request, None, "login.html", next=_safe_next(next_url), error=None)

    @post("/login", status_code=200, sync_to_thread=True)
    def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
        limiter: NamedDependency[LoginLimiter],
        address: NamedDependency[DatabaseAddress],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        client, name = _client(request), data.name.strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\x00" in data.password:
            raise ValidationException("a user name or password cannot contain control characters")
        wait = limiter.retry_after(client, name)
        if wait:
            log.warning("login of %r from %s refused: too many failures", name, client)
            response = page(
                request, None, "login.html", next=_safe_next(data.next),
                error=f"Too many failed logins. Try again in {wait} seconds.",
            )  # fmt: skip
            response.status_code = 429
            response.headers["Retry-After"] = str(wait)
            return response
        user = authenticate(address, settings.database_schema, name, data.password)
        if user is None:
            limiter.failed(client, name)
            log.info("failed login for %r from %s", name, client)
            response = page(
                request, None, "login.html", next=_safe_next(data.next), error="Wrong name or password."
            )
            response.status_code = 401
            return response
        limiter.succeeded(client, name)
        token = start_session(request, user, settings.session_lifetime_seconds)
        log.info("%s (%s) logged in from %s", user.name, user.role, client)
        redirect = Redirect(_safe_next(data.next), status_code=303)
        csrf = request.app.csrf_config
        if csrf is not None:  # the session's own CSRF token replaces the one from before login
            redirect.cookies.append(
                Cookie(
                    key=csrf.cookie_name,
                    value=token,
                    path=csrf.cookie_path,
                    secure=csrf.cookie_secure,
                    httponly=csrf.cookie_httponly,
                    samesite=csrf.cookie_samesite,
                    domain=csrf.cookie_domain,
                )
            )
        return redirect

    @post("/logout", status_code=303, sync_to_thread=True)
    def logout(self, request: Request[Any, Any, Any], review: NamedDependency[Review]) -> Redirect:
        user = session_user(request)
        if user is not None:  # the reviewer's clips go back to the queue at once
            review.release(user, None)
        request.clear_session()
        # media the session saw must not outlive it in the browser's cache
        return Redirect("/login", status_code=303, headers={"Clear-Site-Data": '"cache"'})

    @get("/", guards=[require()], sync_to_thread=False)
    def home(self, user: NamedDependency[User]) -> Redirect:
        target = {"reviewer": "/review", "auditor": "/videos", "ops": "/ops"}[user.role]
        return Redirect(target, status_code=303)


#: Clips the review page holds ahead (leased to its reviewer); at most ``web.review.MAX_LEASES``.
PREFETCH = 6


class ReviewPages(Controller):
    @get("/review", guards=[require("reviewer")], sync_to_thread=True)
    def review_page(
        self,
        request: Request[Any, Any, Any],
        review: NamedDependency[Review],
        rm: NamedDependency[ReadModels],
        user: NamedDependency[User],
        clip: Annotated[str | None, QueryParameter(name="clip")] = None,
    ) -> Template:
        """The review page; ``?clip=ID`` opens that clip first (bookmarkable), and the clips after it in
        its video come next."""
        focus = review.open(clip, user) if clip else None
        after = parse_id(focus.id, "clip id") if focus else None
        queue = review.next(user, PREFETCH, [after] if after else [], after)
        clips = list(queue.clips)
        if focus:
            clips = [focus, *[c for c in clips if c.id != focus.id]]
        initial = {"clips": clips, "pending": queue.pending, "focus": focus.id if focus else None}
        return page(
            request, rm, "review.html",
            current=clips[0] if clips else None,
            initial=msgspec.to_builtins(initial),
            lease_seconds=int(review.lease_ttl), prefetch=PREFETCH,
        )  # fmt: skip

    @get("/review/skipped", guards=[require("reviewer")], sync_to_thread=True)
    def skipped_page(
        self,
        request: Request[Any, Any, Any],
        review: NamedDependency[Review],
        rm: NamedDependency[ReadModels],
    ) -> Template:
        """Skipped clips: they come back in the queue after the clips pending review."""
        return page(request, rm, "skipped.html", clips=review.skipped())


class SearchPages(Controller):
    @get("/search", guards=[require("reviewer", "auditor")], sync_to_thread=True)
    def search(
        self,
        request: Request[Any, Any, Any],
        rm: NamedDependency[ReadModels],
        manifests: NamedDependency[Manifests],
        clip: FromQuery[str | None] = None,
        model: FromQuery[str | None] = None,
        strategy: FromQuery[str | None] = None,
        video: FromQuery[str | None] = None,
        sort: FromQuery[str | None] = None,
        page_number: Annotated[int, QueryParameter(name="page", ge=1, le=10_000)] = 1,
    ) -> Template:
        """Clips similar to one clip (or a random one), by cosine distance of their embeddings;
        ``sort=desc`` (default) shows the most similar first, ``sort=asc`` the least similar."""
        context = search_page(
            rm, manifests, clip, model or None, strategy or None, video or None, page_number, sort or None
        )
        return page(request, rm, "search.html", **context)


def _state_rows(aggregate: object) -> list[tuple[str, str]]:
    return [(k, _show(v)) for k, v in sorted(state_of(aggregate).items())]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=jsonable, sort_keys=True)


def _time_default(events: list[dict[str, Any]]) -> str:
    """The form's default: the time of the latest event (or now), in UTC, to the second."""
    at = events[-1]["at"] if events and isinstance(events[-1].get("at"), datetime) else datetime.now(UTC)
    return str(at.astimezone(UTC).replace(microsecond=0).isoformat())


def _history_page(
    request: Request[Any, Any, Any],
    rm: ReadModels,
    heaters: HeatersApplication,
    kind: str,
    ident_text: str,
    as_of: int | None,
    as_of_time: str | None,
) -> Template:
    """Every event of the video or clip, and its state as of a version or a time when one is asked."""
    ident = parse_id(ident_text, f"{kind} id")
    row = rm.video(ident) if kind == "video" else rm.clip(ident)
    if row is None:
        raise NotFound(kind, ident)
    events = [
        {**e, "payload_text": json.dumps(e["payload"], indent=1, sort_keys=True, default=jsonable)}
        for e in rm.history(ident)
    ]
    when: datetime | None = None
    if as_of_time and as_of_time.strip():
        if as_of is not None:
            raise ValueError("give as_of (a version) or as_of_time (a time), not both")
        try:
            when = parse_time(as_of_time)
        except ValueError as error:
            raise ValueError(f"as_of_time: {error}") from None
        try:
            as_of = heaters.version_at(ident, when)
        except DomainError as error:  # before the aggregate existed: a bad time for it
            raise ValueError(f"bad as_of_time: {error}") from None
    state_rows = _state_rows(heaters.state_at(ident, as_of)) if as_of is not None else None
    return page(
        request, rm, "history.html",
        kind=kind, ident=str(ident), row=row, events=events, as_of=as_of, state_rows=state_rows,
        as_of_time=when.isoformat() if when else None,
        time_value=when.isoformat() if when else _time_default(events),
        clips=rm.live_clips(ident) if kind == "video" else [],
    )  # fmt: skip


class AuditPages(Controller):
    """History pages: auditors (and ops) read everything; reviewers read the history of clips. Each
    shows every event; ``?as_of=VERSION`` or ``?as_of_time=ISO-8601`` also shows the state then."""

    @get("/videos", guards=[require("auditor")], sync_to_thread=True)
    def videos(self, request: Request[Any, Any, Any], rm: NamedDependency[ReadModels]) -> Template:
        return page(request, rm, "videos.html", videos=rm.videos())

    @get("/videos/{video_id:str}/history", guards=[require("auditor")], sync_to_thread=True)
    def video_history(
        self,
        request: Request[Any, Any, Any],
        rm: NamedDependency[ReadModels],
        heaters: NamedDependency[HeatersApplication],
        video_id: FromPath[str],
        as_of: FromQuery[int | None] = None,
        as_of_time: FromQuery[str | None] = None,
    ) -> Template:
        return _history_page(request, rm, heaters, "video", video_id, as_of, as_of_time)

    @get("/clips/{clip_id:str}/history", guards=[require("auditor", "reviewer")], sync_to_thread=True)
    def clip_history(
        self,
        request: Request[Any, Any, Any],
        rm: NamedDependency[ReadModels],
        heaters: NamedDependency[HeatersApplication],
        clip_id: FromPath[str],
        as_of: FromQuery[int | None] = None,
        as_of_time: FromQuery[str | None] = None,
    ) -> Template:
        return _history_page(request, rm, heaters, "clip", clip_id, as_of, as_of_time)


class OpsPages(Controller):
    guards = [require("ops")]

    @get("/ops", sync_to_thread=True)
    def ops(
        self,
        request: Request[Any, Any, Any],
        rm: NamedDependency[ReadModels],
        projections: NamedDependency[Projections],
        queue_depths: NamedDependency[dict[str, int] | None],
        settings: NamedDependency[Settings],
        address: NamedDependency[DatabaseAddress],
    ) -> Template:
        from processors.work_ledger import waiting_work

        try:
            status = projections.status()
            daemons = projections.daemons()
            status_error = None
        except Exception as error:  # shown on the page: ops must see a broken runner, not a 500
            log.exception("projection status unavailable")
            status, daemons, status_error = [], [], str(error)
        waiting = waiting_work(
            address,
            settings.database_schema,
            start_timeout_seconds=settings.dispatch_start_timeout_seconds,
            heartbeat_timeout_seconds=settings.stage_heartbeat_timeout_seconds,
        )
        return page(
            request, rm, "ops.html",
            stats=rm.stage_stats(), failed_videos=rm.failed_videos(), failed_clips=rm.failed_clips(),
            downloads=rm.waiting_downloads(),
            projections=status, status_error=status_error, queue_depths=queue_depths,
            daemons=daemons, waiting=waiting,
        )  # fmt: skip

    @post("/ops/retry/{ident:str}", status_code=303, sync_to_thread=True)
    def retry(
        self,
        request: Request[Any, Any, Any],
        projections: NamedDependency[Projections],
        user: NamedDependency[User],
        ident: FromPath[str],
    ) -> Redirect:
        done, _ = ops.retry(projections, parse_id(ident, "video or clip id"), user)
        _flash(request, f"{ident}: {done}")
        return Redirect("/ops", status_code=303)

    @post("/ops/drop-abandoned", status_code=303, sync_to_thread=True)
    def drop_abandoned(
        self,
        request: Request[Any, Any, Any],
        heaters: NamedDependency[HeatersApplication],
        address: NamedDependency[DatabaseAddress],
        user: NamedDependency[User],
    ) -> Redirect:
        from projections.status import drop_abandoned_rebuilds

        dropped = drop_abandoned_rebuilds(heaters, address)
        log.info("%s dropped abandoned rebuilds: %s", user.name, ", ".join(dropped) or "none")
        _flash(request, f"dropped {', '.join(dropped)}" if dropped else "no abandoned rebuild to drop")
        return Redirect("/ops", status_code=303)

    @post("/ops/cancel/{ident:str}", status_code=303, sync_to_thread=True)
    def cancel(
        self,
        request: Request[Any, Any, Any],
        heaters: NamedDependency[HeatersApplication],
        projections: NamedDependency[Projections],
        user: NamedDependency[User],
        ident: FromPath[str],
        data: Annotated[CancelForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect:
        text = heaters.cancel_download(parse_id(ident, "video id"), user.actor, data.reason or None)
        projections.settle(None)
        _flash(request, f"{ident}: download {text}")
        return Redirect("/ops", status_code=303)

    @post("/ops/rebuild/{name:str}", status_code=303, sync_to_thread=True)
    def rebuild(
        self,
        request: Request[Any, Any, Any],
        projections: NamedDependency[Projections],
        user: NamedDependency[User],
        name: FromPath[str],
    ) -> Redirect:
        ops.rebuild(projections, user, name)
        _flash(request, f"projection {name} rebuilt")
        return Redirect("/ops", status_code=303)


def error_page(request: Request[Any, Any, Any], status: int, message: str) -> Response[Any]:
    response = page(request, None, "error.html", status=status, message=message)
    response.status_code = status
    return response
