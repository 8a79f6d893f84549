"""The Litestar web app of Heaters: review, similarity search, audit and ops pages plus a JSON API.

:func:`create_app` wires everything by dependency injection (no globals): the settings, the
application service (commands), the database address (read models, users, leases) and the object
storage (media). Sessions are server-side in the ``web_sessions`` table (shared by every web process
on the schema, kept across restarts), every state-changing request needs the CSRF token of its
session, and every route checks the user's role. Bad input of any kind is a 4xx with a short message
(:mod:`web.security` has the hardening shared by all routes).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from litestar import Litestar, Request, Response, get
from litestar.config.csrf import CSRFConfig
from litestar.di import NamedDependency, Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi.config import OpenAPIConfig
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import File, Redirect
from litestar.response.file import create_etag_for_file
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from commands.errors import Conflict, NotFound
from commands.service import HeatersApplication
from domain.errors import DomainError
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import ObjectNotFoundError, ObjectStorage, validate_key
from projections.rebuild import RebuildRunning
from web.api import OpsApi, ReviewApi, SearchApi
from web.auth import LoginLimiter, RotatingSessionConfig, current_user, require
from web.health import Health
from web.media import Manifests
from web.pages import AuditPages, AuthPages, OpsPages, ReviewPages, SearchPages, error_page
from web.readmodels import ReadModels
from web.review import LeaseHeld, Projections, Review
from web.security import (
    SWAGGER_ASSETS_DIR,
    SWAGGER_ASSETS_PATH,
    LocalSwaggerPlugin,
    check_request,
    security_headers,
    short,
)
from web.sessions import PostgresSessionStore

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent


@get("/media/{key:path}", guards=[require()], sync_to_thread=True, include_in_schema=False)
def media(
    request: Request[Any, Any, Any], key: FromPath[str], storage: NamedDependency[ObjectStorage]
) -> Response[Any]:
    """An object from media storage (sprite sheets, keyframes, exports). Keys are validated: no
    absolute paths, ``..``, backslashes or control characters (400); a missing object is a 404.
    Browsers keep media only privately and revalidate it on every use (``no-cache`` with an ETag: a
    cheap 304 while logged in, a login redirect after logout)."""
    key = key[1:] if key.startswith("/") else key
    try:
        validate_key(key)
    except ValueError as error:
        raise ValidationException(f"bad media key: {error}") from None
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    try:
        local = storage.local_path(key)
        if local is not None:
            if not local.is_file():
                raise ObjectNotFoundError(key)
            stat = local.stat()
            etag = create_etag_for_file(local, stat.st_mtime, stat.st_size)
            if etag in request.headers.get("if-none-match", ""):
                return Response(b"", status_code=304, headers={**headers, "ETag": etag})
            return File(local, media_type=media_type, content_disposition_type="inline", headers=headers)
        return Response(storage.get_bytes(key), media_type=media_type, headers=headers)
    except ValueError as error:
        raise ValidationException(f"bad media key: {error}") from None
    except ObjectNotFoundError:
        raise NotFoundException(f"no media object {key}") from None


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/api/") or request.url.path.startswith("/schema")


def _error(
    request: Request[Any, Any, Any], status: int, kind: str, message: str, **extra: Any
) -> Response[Any]:
    message = short(message)
    if _wants_json(request):
        return Response({"error": message, "status": status, "kind": kind, **extra}, status_code=status)
    return error_page(request, status, message)


def _not_authorized(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if _wants_json(request):
        return _error(request, 401, "unauthorized", "log in first")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    from urllib.parse import urlencode

    return Redirect(f"/login?{urlencode({'next': target})}", status_code=303)


def _forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    detail = getattr(exc, "detail", "") or "forbidden"
    return _error(request, 403, "forbidden", str(detail))


def _conflict(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, Conflict):
        return _error(
            request, 409, "conflict", str(exc), clip_id=str(exc.clip_id), state=exc.state,
            decided_by=exc.decided_by, decided_at=exc.decided_at.isoformat() if exc.decided_at else None,
        )  # fmt: skip
    if isinstance(exc, LeaseHeld):
        return _error(request, 409, "conflict", str(exc), clip_id=str(exc.clip_id), state="leased")
    return _error(request, 409, "conflict", str(exc))


def _domain(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(request, 422, "domain", str(exc))


def _not_found(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    message = getattr(exc, "detail", None) if isinstance(exc, HTTPException) else str(exc)
    return _error(request, 404, "not_found", str(message or "not found"))


def _bad_request(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    message = str(exc)
    if isinstance(exc, ValidationException):
        message = str(exc.detail)
        extra = getattr(exc, "extra", None)
        if extra:
            message += ": " + "; ".join(
                str(e.get("message", e))
                + (f" ({e.get('key')})" if isinstance(e, dict) and e.get("key") else "")
                if isinstance(e, dict)
                else str(e)
                for e in (extra if isinstance(extra, list) else [extra])
            )
    return _error(request, 400, "bad_request", message)


def _bad_data(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Input PostgreSQL cannot store (NUL characters, bad encodings, numbers out of range)."""
    log.info("bad input on %s: %s", request.url.path, short(str(exc)))
    return _error(request, 400, "bad_request", f"bad input: {str(exc).splitlines()[0] if str(exc) else exc}")


def _too_deep(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("recursion limit reached on %s %s (nested input?)", request.method, request.url.path)
    return _error(request, 400, "bad_request", "the request body is nested too deeply")


def _rebuild_running(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(request, 409, "conflict", str(exc))


def _http(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500:
        log.error("server error on %s: %s", request.url.path, exc.detail)
    return _error(request, exc.status_code, "error", str(exc.detail))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(request, 500, "error", "internal error; the server log has the details")


def create_app(
    settings: NamedDependency[Settings],
    app: HeatersApplication,
    address: NamedDependency[DatabaseAddress],
    storage: NamedDependency[ObjectStorage],
    *,
    queue_depths: Callable[[], dict[str, int]] | None = None,
    secret: str | None = None,
    lease_seconds: float = 45.0,
    settle_timeout: float = 5.0,
    login_limit: int | None = None,
    debug: bool = False,
) -> Litestar:
    """The web app. ``queue_depths`` reports broker queue depths for the ops page ("n/a" without it);
    ``secret`` signs CSRF tokens (random per process by default: set it when several processes serve
    one site, or a form loaded from one process is refused by another)."""
    schema = settings.database_schema
    rm = ReadModels(address, schema)
    manifests = Manifests(storage)
    projections = Projections(app, address, schema, timeout=settle_timeout)
    review = Review(app, rm, manifests, projections, lease_ttl=lease_seconds)
    limiter = LoginLimiter(address, schema, limit=login_limit or settings.login_failure_limit)
    sessions = PostgresSessionStore(address, schema)
    csrf_config = CSRFConfig(
        secret=secret or secrets.token_hex(32),
        cookie_httponly=False,
        cookie_samesite="strict",
        cookie_secure=settings.web_tls,
    )

    def startup() -> None:
        sessions.open()
        rm.open()
        log.info("web app ready on schema %s", schema)

    def shutdown() -> None:
        rm.close()
        sessions.close()

    def depths() -> dict[str, int] | None:
        if queue_depths is None:
            return None
        try:
            return dict(queue_depths())
        except Exception:
            log.warning("queue depths unavailable", exc_info=True)
            return None

    def constant(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    template_dir = WEB_DIR / "templates"
    asset_version = hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted((WEB_DIR / "static").glob("*")) if p.is_file())
    ).hexdigest()[:10]
    engine_config = TemplateConfig(directory=template_dir, engine=JinjaTemplateEngine)

    def configure_engine(engine: JinjaTemplateEngine) -> None:
        engine.engine.globals["asset_version"] = asset_version

    engine_config.engine_callback = configure_engine  # type: ignore[assignment]

    return Litestar(
        route_handlers=[
            AuthPages,
            ReviewPages,
            SearchPages,
            AuditPages,
            OpsPages,
            ReviewApi,
            SearchApi,
            OpsApi,
            Health,
            media,
            create_static_files_router(
                path=SWAGGER_ASSETS_PATH, directories=[SWAGGER_ASSETS_DIR], include_in_schema=False
            ),
            create_static_files_router(
                path="/static", directories=[WEB_DIR / "static"], include_in_schema=False
            ),
        ],
        dependencies={
            "settings": constant(settings),
            "heaters": constant(app),
            "address": constant(address),
            "storage": constant(storage),
            "rm": constant(rm),
            "manifests": constant(manifests),
            "projections": constant(projections),
            "review": constant(review),
            "limiter": constant(limiter),
            "queue_depths": Provide(depths, sync_to_thread=False),
            "user": Provide(current_user, sync_to_thread=False),
        },
        on_startup=[startup],
        on_shutdown=[shutdown],
        logging_config=None,  # the process configured logging (entrypoints.bootstrap); one format for all
        middleware=[
            RotatingSessionConfig(
                max_age=settings.session_idle_seconds,
                renew_on_access=True,
                exclude=["^/static/"],
                secure=settings.web_tls,
                samesite="lax",
            ).middleware
        ],
        stores={"sessions": sessions},
        csrf_config=csrf_config,
        before_request=check_request,
        before_send=[security_headers(settings.web_tls, csrf_config)],
        template_config=engine_config,
        openapi_config=OpenAPIConfig(
            title="Heaters", version="1.0.0", render_plugins=[LocalSwaggerPlugin(asset_version)]
        ),
        exception_handlers={
            NotAuthorizedException: _not_authorized,
            PermissionDeniedException: _forbidden,
            Conflict: _conflict,
            LeaseHeld: _conflict,
            DomainError: _domain,
            NotFound: _not_found,
            NotFoundException: _not_found,
            RebuildRunning: _rebuild_running,
            psycopg.DataError: _bad_data,
            RecursionError: _too_deep,
            ValueError: _bad_request,
            ValidationException: _bad_request,
            HTTPException: _http,
            Exception: _unexpected,
        },
        debug=debug,
    )
