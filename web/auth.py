"""Accounts, sessions, roles and the login rate limit of the web app.

Users live in the ``users`` table of the Heaters schema (created at startup). Passwords are argon2
hashes. A session holds the user's name and role; guards check the role on every route. Roles:

- ``reviewer``: the review page and its API, similarity search;
- ``auditor``: the history pages, similarity search;
- ``ops``: everything, including the ops page, retries and rebuilds.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, ScopeSession
from psycopg import sql

from infra.database import DatabaseAddress, connect

log = logging.getLogger(__name__)

Role = Literal["reviewer", "auditor", "ops"]
ROLES: tuple[str, ...] = get_args(Role)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

USERS_DDL = """
    CREATE TABLE IF NOT EXISTS {t} (
        name text PRIMARY KEY,
        role text NOT NULL CHECK (role IN ('reviewer', 'auditor', 'ops')),
        password_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )"""

#: Same DDL as ``projections.schema.RUNNER_DDL`` (idempotent): the web app may start before the runner.
LEASES_DDL = """
    CREATE TABLE IF NOT EXISTS {t} (
        clip_id uuid PRIMARY KEY,
        reviewer text NOT NULL,
        expires_at timestamptz NOT NULL
    )"""

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


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher.hash(password)


def ensure_tables(address: DatabaseAddress, schema: str) -> None:
    """Create the ``users`` and ``review_leases`` tables if missing."""
    with connect(address, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for ddl, table in ((USERS_DDL, "users"), (LEASES_DDL, "review_leases")):
            conn.execute(sql.SQL(ddl).format(t=sql.Identifier(schema, table)))  # type: ignore[arg-type]


def add_user(address: DatabaseAddress, schema: str, name: str, role: str, password: str) -> bool:
    """Create a user or replace its role and password; True if it was new."""
    validate_name(name)
    checked = validate_role(role)
    digest = hash_password(password)
    ensure_tables(address, schema)
    with connect(address, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, role, password_hash) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash "
                "RETURNING (xmax = 0)"
            ).format(sql.Identifier(schema, "users")),
            (name, checked, digest),
        ).fetchone()
    created = bool(row and row[0])
    log.info("user %s %s with role %s", name, "added" if created else "updated", checked)
    return created


def user_count(address: DatabaseAddress, schema: str) -> int:
    ensure_tables(address, schema)
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
            sql.SQL("SELECT role, password_hash FROM {} WHERE name = %s").format(
                sql.Identifier(schema, "users")
            ),
            (name,),
        ).fetchone()
    digest = str(row[1]) if row else _DUMMY_HASH
    try:
        _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    return User(name=name, role=validate_role(str(row[0])))


class LoginLimiter:
    """At most ``limit`` failed logins per (client address, user name) per ``window`` seconds; also
    ``limit * 4`` per client address whatever the names, so guessing many names is limited too."""

    def __init__(
        self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, client: str, name: str) -> int:
        """Seconds until another attempt is allowed (0 = allowed now)."""
        now = self.clock()
        with self._lock:
            waits = []
            for key, limit in (((client, name.lower()), self.limit), ((client, ""), self.limit * 4)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    waits.append(times[0] + self.window - now)
            return max(1, int(max(waits)) + 1) if waits else 0

    def failed(self, client: str, name: str) -> None:
        now = self.clock()
        with self._lock:
            for key in ((client, name.lower()), (client, "")):
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # forget idle entries
                for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
                    del self._failures[key]

    def succeeded(self, client: str, name: str) -> None:
        with self._lock:
            self._failures.pop((client, name.lower()), None)


# -- sessions ---------------------------------------------------------------------------------------

ROTATE_KEY = "heaters_new_session_id"


class RotatingSessionBackend(ServerSideSessionBackend):
    """Server-side sessions whose id is replaced on login (no session fixation)."""

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        state: dict[str, Any] = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
        if state.get(ROTATE_KEY) is True:
            state[ROTATE_KEY] = self.generate_session_id()
        new_id = state.get(ROTATE_KEY)
        if isinstance(new_id, str):
            return new_id
        return super().get_session_id(connection)

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        """Like Litestar's, but an empty session of a visitor without a session cookie stores nothing
        (no row per anonymous request), an emptied session is deleted, and on login (rotation) the
        session under the old id is deleted."""
        old_id = connection.cookies.get(self.config.key)
        if old_id == "null":
            old_id = None
        if scope_session is None:
            return
        if scope_session is not Empty and not scope_session:
            if old_id is None:
                return
            scope_session = Empty
        await super().store_in_message(scope_session, message, connection)
        state: dict[str, Any] = connection.scope.get("state", {})  # type: ignore[assignment]
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


def session_user(connection: ASGIConnection[Any, Any, Any, Any]) -> User | None:
    if "session" not in connection.scope:
        return None
    session = connection.session
    name, role = session.get("user"), session.get("role")
    if not isinstance(name, str) or role not in ROLES:
        return None
    return User(name=name, role=role)


def require(*roles: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """A guard: a logged-in user whose role is one of ``roles`` (ops may do everything)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
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
