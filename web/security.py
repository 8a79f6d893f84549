"""Request and response hardening shared by every route of the web app.

- :func:`check_request` (a ``before_request`` hook): NUL bytes in the URL are a 400, and a logged-in
  session's state changes need the CSRF token bound to that session (not just any token that matches
  the CSRF cookie).
- :func:`add_security_headers` (a ``before_send`` hook, so error and 404 responses get them too): a
  Content-Security-Policy without inline script, ``frame-ancestors 'none'``, a Referrer-Policy,
  ``nosniff``; pages are ``no-store`` (nothing a session saw stays in the browser's cache past
  logout); HSTS when the site is served over TLS.
- :func:`short` caps what an error message echoes of the input.
- :class:`LocalSwaggerPlugin`: ``/schema`` renders Swagger UI from assets served by the app itself
  (the ``litestar-offline-docs`` package), no CDN, no inline script.
- :func:`server_options`: uvicorn believes forwarded headers only from ``HEATERS_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import litestar_offline_docs
from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.types import Message, Scope
from litestar.utils.scope.state import ScopeState

from infra.config import Settings
from web.auth import session_csrf_token, session_user

#: Swagger UI's files (JS, CSS), served under :data:`SWAGGER_ASSETS_PATH`.
SWAGGER_ASSETS_DIR = Path(litestar_offline_docs.__file__).resolve().parent / "static"
SWAGGER_ASSETS_PATH = "/static/swagger"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
MAX_ECHO = 200

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # style attributes (sprite thumbnails' positions)
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def short(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters (an error message must not echo megabytes of input)."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


#: Scope state key: the session's CSRF token, to be set again as the CSRF cookie on this response.
RESYNC_KEY = "heaters_csrf_resync"


async def check_request(request: Request[Any, Any, Any]) -> None:
    """Refuse NUL bytes in the URL (400) and, for a logged-in session, a state change whose CSRF token
    is not the session's own (403). A page read by a session whose CSRF cookie went missing or stale
    renders the session's token and sets the cookie back, so a reload always recovers."""
    query = request.scope.get("query_string", b"")
    if "\x00" in request.scope["path"] or b"%00" in query or b"\x00" in query:
        raise ValidationException("the URL contains a NUL character")
    if session_user(request) is None:
        return
    expected = session_csrf_token(request)
    state = ScopeState.from_scope(request.scope)
    if request.method in SAFE_METHODS:
        if expected and state.csrf_token != expected:
            state.csrf_token = expected
            request.scope["state"][RESYNC_KEY] = expected
        return
    submitted = state.csrf_token
    if not expected or not isinstance(submitted, str) or not hmac.compare_digest(expected, submitted):
        raise PermissionDeniedException("the CSRF token does not belong to this session: reload the page")


def security_headers(tls: bool, csrf: CSRFConfig) -> Callable[[Message, Scope], Awaitable[None]]:
    """A ``before_send`` hook adding the security headers to every response (and the session's CSRF
    cookie where :func:`check_request` found it missing or stale)."""
    fixed = {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-frame-options": "DENY",
        "referrer-policy": "same-origin",
        "x-content-type-options": "nosniff",
        "cross-origin-opener-policy": "same-origin",
    }
    if tls:
        fixed["strict-transport-security"] = "max-age=31536000"

    async def add_security_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        for name, value in fixed.items():
            if name not in headers:
                headers[name] = value
        if "cache-control" not in headers and not str(scope.get("path", "")).startswith("/static/"):
            headers["cache-control"] = "no-store"
        resync = scope.get("state", {}).get(RESYNC_KEY)
        if isinstance(resync, str):  # after Litestar's own Set-Cookie, so this one wins
            cookie = Cookie(
                key=csrf.cookie_name, value=resync, path=csrf.cookie_path, secure=csrf.cookie_secure,
                httponly=csrf.cookie_httponly, samesite=csrf.cookie_samesite, domain=csrf.cookie_domain,
            )  # fmt: skip
            headers.add("set-cookie", cookie.to_header(header=""))

    return add_security_headers


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options: forwarded headers believed only from the configured proxies, and each
    response written in one write (:mod:`web.serving`)."""
    from web.serving import CoalescingHttpToolsProtocol

    proxies = settings.trusted_proxy_list
    if not proxies:
        return {"proxy_headers": False, "http": CoalescingHttpToolsProtocol}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies, "http": CoalescingHttpToolsProtocol}


class LocalSwaggerPlugin(OpenAPIRenderPlugin):
    """Swagger UI at ``/schema`` with its JS and CSS from the app and its start-up in a static file
    (``/static/schema.js``), so the page works offline and under the CSP."""

    def __init__(self, asset_version: str = "") -> None:
        self.asset_version = asset_version
        super().__init__(path="/swagger")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        from html import escape

        title = escape(str(openapi_schema.get("info", {}).get("title", "API")))
        v = escape(self.asset_version)
        return f"""<!DOCTYPE html>
<html>
<head>
  <title>{title}</title>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link href="{SWAGGER_ASSETS_PATH}/swagger-ui.css" rel="stylesheet">
  <script src="{SWAGGER_ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="{SWAGGER_ASSETS_PATH}/swagger-ui-standalone-preset.js"></script>
  <script src="/static/schema.js?v={v}" defer></script>
</head>
<body>
  <div id="swagger-container" data-spec-url="/schema/openapi.json"></div>
</body>
</html>""".encode()
