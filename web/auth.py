"""Accounts, sessions, roles and the login rate limit of the web app.

Users live in the ``users`` table of the Heaters schema (created at startup). Passwords are argon2
hashes of at least 12 characters that zxcvbn (with its list of 30,000 common passwords) does not
find easy to guess. A session holds the user's name, role, the time it ends however much it is used
and its own CSRF token; guards check the role on every route. A role or password change, disabling
or removing the account ends the user's sessions. Failed logins are counted in PostgreSQL
(``login_failures``), so every web process shares one limit. Roles:

- ``reviewer``: the review page and its API, similarity search;
- ``auditor``: the history pages, similarity search;
- ``ops``: everything, including the ops page, retries and rebuilds.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection, Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items
from psycopg import sql
from zxcvbn import zxcvbn

from infra.database import DatabaseAddress, connect
from web.sessions import end_sessions

log = logging.getLogger(__name__)

Role = Literal["reviewer", "auditor", "ops"]
ROLES: tuple[str, ...] = get_args(Role)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

_hasher = PasswordHasher()
#: A hash to verify against when the user does not exist, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("not a real password")


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            "a user name is 1-64 characters: letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return name


def validate_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role  # type: ignore[return-value]


MIN_PASSWORD_LENGTH = 12
#: zxcvbn's score (0-4) a password needs: 3 = "safely unguessable", over 10^8 guesses.
MIN_PASSWORD_SCORE = 3


def check_password(password: str, *, name: str | None = None) -> None:
    """Refuse a short or common password (ValueError saying why)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if "\x00" in password:
        raise ValueError("a password cannot contain NUL characters")
    rating = zxcvbn(password[:256], user_inputs=[name] if name else [])
    if rating["score"] < MIN_PASSWORD_SCORE:
        hint = rating["feedback"].get("warning") or "it is too easy to guess"
        raise ValueError(
            f"that password is too common or too easy to guess ({hint.rstrip('.')}); choose another"
        )


def hash_password(password: str, *, name: str | None = None) -> str:
    check_password(password, name=name)
    return _hasher.hash(password)


def add_user(address: DatabaseAddress, schema: str, name: str, role: str, password: str) -> bool:
    """Create a user or replace its role and password (and enable it again); True if it was new. An
    existing user's sessions end: they were opened with the old password or role."""
    validate_name(name)
    checked = validate_role(role)
    digest = hash_password(password, name=name)
    with connect(address, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, role, password_hash) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, "
                "disabled_at = NULL RETURNING (xmax = 0)"
            ).format(sql.Identifier(schema, "users")),
            (name, checked, digest),
        ).fetchone()
    created = bool(row and row[0])
    if not created:
        end_sessions(address, schema, name)
    log.info("user %s %s with role %s", name, "added" if created else "updated", checked)
    return created


def disable_user(address: DatabaseAddress, schema: str, name: str) -> int:
    """Refuse the user's logins from now on and end their sessions; the number of sessions ended.
    ``add_user`` with a new password enables the account again. LookupError if there is no such user."""
    with connect(address, autocommit=True) as conn:
        cur = conn.execute(
            sql.SQL("UPDATE {} SET disabled_at = coalesce(disabled_at, now()) WHERE name = %s").format(
                sql.Identifier(schema, "users")
            ),
            (name,),
        )
        if not cur.rowcount:
            raise LookupError(f"no user named {name!r}")
    ended = end_sessions(address, schema, name)
    log.info("user %s disabled (%d session(s) ended)", name, ended)
    return ended


def remove_user(address: DatabaseAddress, schema: str, name: str) -> int:
    """Delete the account and end its sessions (its events keep naming it); the number of sessions
    ended. LookupError if there is no such user."""
    with connect(address, autocommit=True) as conn:
        cur = conn.execute(
            sql.SQL("DELETE FROM {} WHERE name = %s").format(sql.Identifier(schema, "users")), (name,)
        )
        if not cur.rowcount:
            raise LookupError(f"no user named {name!r}")
    ended = end_sessions(address, schema, name)
    log.info("user %s removed (%d session(s) ended)", name, ended)
    return ended


def user_count(address: DatabaseAddress, schema: str) -> int:
    with connect(address) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "users"))
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"user:{self.name}"

    def may(self, *roles: str) -> bool:
        return self.role == "ops" or self.role in roles


def authenticate(address: DatabaseAddress, schema: str, name: str, password: str) -> User | None:
    """The user if ``password`` is right, else None (constant work whether or not the user exists)."""
    with connect(address, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT role, password_hash, disabled_at IS NOT NULL FROM {} WHERE name = %s").format(
                sql.Identifier(schema, "users")
            ),
            (name,),
        ).fetchone()
    digest = str(row[1]) if row else _DUMMY_HASH
    try:
        _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row[2]:
        return None
    return User(name=name, role=validate_role(str(row[0])))


class LoginLimiter:
    """Failed logins counted in ``<schema>.login_failures``, shared by every web process.

    Within ``window`` seconds at most ``limit`` failures per (client address, user name), ``limit * 4``
    per client address whatever the names (guessing many names), and ``limit * 2`` per user name from
    all clients together (guessing one password from many addresses). The client address is the peer's,
    or the one a trusted proxy forwarded (``HEATERS_TRUSTED_PROXIES``)."""

    def __init__(self, address: DatabaseAddress, schema: str, limit: int = 5, window: float = 60.0) -> None:
        self.address = address
        self.limit = limit
        self.window = window
        self._t = sql.Identifier(schema, "login_failures")

    @staticmethod
    def _account(name: str) -> str:
        return name.lower()[:200]

    def retry_after(self, client: str, name: str) -> int:
        """Seconds until another attempt is allowed (0 = allowed now)."""
        params = {"c": client, "a": self._account(name), "w": self.window}
        mine = "client = %(c)s AND account = %(a)s"
        with connect(self.address, autocommit=True) as conn:
            row = conn.execute(
                sql.SQL(
                    f"SELECT count(*) FILTER (WHERE {mine}), min(failed_at) FILTER (WHERE {mine}), "
                    "count(*) FILTER (WHERE client = %(c)s), min(failed_at) FILTER (WHERE client = %(c)s), "
                    "count(*) FILTER (WHERE account = %(a)s), min(failed_at) FILTER (WHERE account = %(a)s), "
                    "now() FROM {} WHERE failed_at > now() - make_interval(secs => %(w)s) "
                    "AND (client = %(c)s OR account = %(a)s)"
                ).format(self._t),  # type: ignore[arg-type]
                params,
            ).fetchone()
        assert row is not None
        now = row[6]
        waits = [
            (oldest - now).total_seconds() + self.window
            for count, oldest, limit in (
                (row[0], row[1], self.limit),
                (row[2], row[3], self.limit * 4),
                (row[4], row[5], self.limit * 2),
            )
            if count >= limit and oldest is not None
        ]
        return max(1, int(max(waits)) + 1) if waits else 0

    def failed(self, client: str, name: str) -> None:
        with connect(self.address, autocommit=True) as conn:
            conn.execute(
                sql.SQL("INSERT INTO {} (client, account) VALUES (%s, %s)").format(self._t),  # type: ignore[arg-type]
                (client, self._account(name)),
            )
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE failed_at <= now() - make_interval(secs => %s)").format(
                    self._t  # type: ignore[arg-type]
                ),
                (self.window,),
            )

    def succeeded(self, client: str, name: str) -> None:
        with connect(self.address, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE client = %s AND account = %s").format(self._t),  # type: ignore[arg-type]
                (client, self._account(name)),
            )


# -- sessions ---------------------------------------------------------------------------------------

ROTATE_KEY = "heaters_new_session_id"
#: The session as loaded (serialized), to tell whether a response changed it.
LOADED_KEY = "heaters_session_loaded"


#: Session cookies kept made (see :meth:`RotatingSessionBackend.session_cookie`) before starting over.
_COOKIES_KEPT = 4096


class RotatingSessionBackend(ServerSideSessionBackend):
    """Server-side sessions whose id is replaced on login (no session fixation)."""

    def __init__(self, config: ServerSideSessionConfig) -> None:
        super().__init__(config)
        self._cookies: dict[str, str] = {}

    def session_cookie(self, session_id: str) -> str:
        """The ``Set-Cookie`` value Litestar's backend makes for ``session_id`` (its ``Max-Age`` is
        relative, so the value is always the same), made once: building it (the config's cookie
        fields, the ``Cookie``, its header) was most of the session middleware's work per request."""
        cookie = self._cookies.get(session_id)
        if cookie is None:
            params = extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys())
            cookie = Cookie(value=session_id, key=self.config.key, **dict(params)).to_header(header="")
            if len(self._cookies) >= _COOKIES_KEPT:
                self._cookies.clear()
            self._cookies[session_id] = cookie
        return cookie

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        state: dict[str, Any] = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
        if state.get(ROTATE_KEY) is True:
            state[ROTATE_KEY] = self.generate_session_id()
        new_id = state.get(ROTATE_KEY)
        if isinstance(new_id, str):
            return new_id
        return super().get_session_id(connection)

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        data = await super().load_from_connection(connection)
        if data:
            state: dict[str, Any] = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
            state[LOADED_KEY] = self.serialize_data(data, connection.scope)
        return data

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        """Like Litestar's, but an empty session of a visitor without a session cookie stores nothing
        (no row per anonymous request), an emptied session is deleted, and on login (rotation) the
        session under the old id is deleted. A session the request left as it was is not written again
        (loading it with ``renew_on_access`` renewed it already): one statement less per request."""
        old_id = connection.cookies.get(self.config.key)
        if old_id == "null":
            old_id = None
        if scope_session is None:
            return
        if scope_session is not Empty and not scope_session:
            if old_id is None:
                return
            scope_session = Empty
        state: dict[str, Any] = connection.scope.get("state", {})  # type: ignore[assignment]
        new_id = state.get(ROTATE_KEY)
        unchanged = (
            self.config.renew_on_access
            and new_id is None
            and old_id is not None
            and scope_session is not Empty
            and state.get(LOADED_KEY) == self.serialize_data(scope_session, connection.scope)
        )
        if unchanged:  # as Litestar's would, less the write (loading renewed it) and the cookie's making
            assert old_id is not None
            MutableScopeHeaders.from_message(message).add("Set-Cookie", self.session_cookie(old_id))
            return
        await super().store_in_message(scope_session, message, connection)
        new_id = state.get(ROTATE_KEY)
        if old_id and isinstance(new_id, str) and new_id != old_id:
            await self.delete(old_id, store=self.config.get_store_from_app(connection.scope["app"]))


@dataclass
class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend


def rotate_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask the session backend to store this response's session under a fresh id."""
    state: dict[str, Any] = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    state[ROTATE_KEY] = True


def start_session(connection: ASGIConnection[Any, Any, Any, Any], user: User, lifetime: float) -> str:
    """Log ``user`` in: a fresh session id, an absolute end ``lifetime`` seconds from now, and a CSRF
    token of the session's own (returned: the caller sets it as the CSRF cookie). A token an attacker
    planted in the browser before login is thereby worthless after it."""
    from litestar.middleware.csrf import generate_csrf_token

    secret = connection.app.csrf_config.secret if connection.app.csrf_config else secrets.token_hex(32)
    token = generate_csrf_token(secret=secret)
    rotate_session(connection)
    connection.set_session(
        {"user": user.name, "role": user.role, "until": time.time() + lifetime, "csrf": token}
    )
    return token


def session_user(connection: ASGIConnection[Any, Any, Any, Any]) -> User | None:
    """The logged-in user, or None. A session past its absolute end (or from before sessions had
    one) is cleared: its user must log in again."""
    if "session" not in connection.scope:
        return None
    session = connection.session
    name, role = session.get("user"), session.get("role")
    if not isinstance(name, str) or role not in ROLES:
        return None
    until, token = session.get("until"), session.get("csrf")
    if not isinstance(until, int | float) or until <= time.time() or not isinstance(token, str):
        log.info("session of %s ended (absolute lifetime reached)", name)
        connection.clear_session()
        return None
    return User(name=name, role=role)


def session_csrf_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The CSRF token bound to the logged-in session (None without one)."""
    if "session" not in connection.scope:
        return None
    token = connection.session.get("csrf")
    return token if isinstance(token, str) else None


def require(
    *roles: str,
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]:
    """A guard: a logged-in user whose role is one of ``roles`` (ops may do everything). A coroutine:
    it only reads the session the middleware loaded, and Litestar runs a sync guard in a worker
    thread (a thread hop per request)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        user = session_user(connection)
        if user is None:
            raise NotAuthorizedException("log in first")
        if roles and not user.may(*roles):
            raise PermissionDeniedException(
                f"user {user.name} ({user.role}) may not do this: it needs the role {' or '.join(roles)}"
            )

    guard.__name__ = f"require_{'_'.join(roles) or 'login'}"
    return guard


def current_user(request: Request[Any, Any, Any]) -> User:
    """Dependency: the logged-in user (guards ran before, so there is one)."""
    user = session_user(request)
    if user is None:
        raise NotAuthorizedException("log in first")
    return user
