"""Server-side sessions in PostgreSQL: Litestar's :class:`~litestar.stores.base.Store` over the
``web_sessions`` table of the Heaters schema.

Every web process on the schema sees the same sessions, and a restart keeps reviewers logged in. Keys
are stored as SHA-256 digests, so someone who can read the table cannot replay a session cookie.
Expired rows are never returned and are purged at startup and, at most once a minute, when sessions
are written. Reading a session renews it (``renew_on_access``), but writes the new expiry only when the
stored one has fallen :data:`RENEW_SLACK` behind, so most requests only read. Each row also names the
logged-in user (``user_name``), so :func:`end_sessions` can log a user out everywhere when their role
or password changes or the account is disabled or removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
import msgspec
import psycopg
from litestar.stores.base import Store
from psycopg import sql
from psycopg_pool import ConnectionPool

from infra.database import (
    DatabaseAddress,
    check_idle_connection,
    connect,
    lost_connection,
    retry_once_on_lost_connection,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TABLE = "web_sessions"
#: A renewing read moves a session's expiry only once it has fallen this many seconds (at most a
#: hundredth of the renewal) behind ``now + renew_for``: a session used on every request is renewed
#: about once a minute rather than written on every request (``bench/review_load.py``: the UPDATE with
#: its commit was two of the ~21 statements of each review action with its next-clip fetch).
RENEW_SLACK = 60.0


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _seconds(value: int | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return seconds if seconds > 0 else None


def _session_user(data: bytes) -> str | None:
    """The ``user`` a serialized session names (Litestar stores the session dict as JSON)."""
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    name = decoded.get("user") if isinstance(decoded, dict) else None
    return name if isinstance(name, str) else None


def end_sessions(address: DatabaseAddress, schema: str, name: str) -> int:
    """Log ``name`` out everywhere: delete every session of that user; the number ended."""
    with connect(address, autocommit=True) as conn:
        cur = conn.execute(
            sql.SQL("DELETE FROM {} WHERE user_name = %s").format(sql.Identifier(schema, TABLE)), (name,)
        )
        ended = int(cur.rowcount)
    if ended:
        log.info("ended %d web session(s) of user %s", ended, name)
    return ended


def _finish(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close an async connection without awaiting (from a sync shutdown, or one left in doubt)."""
    conn.pgconn.finish()


class _LoopConnections:
    """The async connections of one event loop that read sessions: at most ``size`` open, idle ones
    in a LIFO list, a request that finds none idle and the limit reached waits for one."""

    __slots__ = ("idle", "open", "size", "waiting")

    def __init__(self, size: int) -> None:
        self.size = size
        self.open = 0
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.waiting: deque[asyncio.Future[None]] = deque()

    def wake(self) -> None:
        """Let the first request waiting for a connection try again."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def finish_all(self) -> None:
        idle, self.idle = self.idle, []
        self.open -= len(idle)
        for conn in idle:
            _finish(conn)


def _finish_idle(connections: _LoopConnections) -> None:
    connections.finish_all()


class PostgresSessionStore(Store):
    """A thread- and process-safe key/value store in ``<schema>.web_sessions``.

    Reading a session, which every request does, runs on async connections of the request's own event
    loop (a few per loop, one loop per web process; each Litestar ``TestClient`` has its own): no hop
    to a worker thread and back, which cost about as much of the web process's time as the query
    (``bench/review_load.py``). Writes, deletes and the rest run their (short) queries on a small pool
    of synchronous connections in worker threads.
    """

    __slots__ = (
        "_by_loop",
        "_get",
        "_get_renewing",
        "_lock",
        "_next_purge",
        "_pool",
        "_set",
        "_t",
        "address",
        "max_size",
        "purge_every",
        "schema",
    )

    def __init__(
        self, address: DatabaseAddress, schema: str, *, max_size: int = 4, purge_every: float = 60.0
    ) -> None:
        self.address = address
        self.schema = schema
        self.max_size = max_size
        self.purge_every = purge_every
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._next_purge = 0.0
        self._t = sql.Identifier(schema, TABLE)
        # the statements rendered once (psycopg renders a composed one again on every execute, and
        # a session is read on every request)
        self._get = self._render(
            "SELECT data FROM {} WHERE key_digest = %s AND (expires_at IS NULL OR expires_at > now())"
        )
        # Renewal writes only when the expiry has fallen ``RENEW_SLACK`` behind: a session read on
        # every request is then a read (no row version, no WAL, no commit to flush) but the first
        # in a while. The SELECT sees the row as the statement began (the CTE's update is not visible
        # to it), which is the session's data either way.
        self._get_renewing = self._render(
            "WITH renewed AS (UPDATE {t} SET expires_at = now() + make_interval(secs => %(s)s) "
            "WHERE key_digest = %(k)s AND expires_at > now() "
            "AND expires_at < now() + make_interval(secs => %(s)s - %(slack)s)) "
            "SELECT data FROM {t} WHERE key_digest = %(k)s AND (expires_at IS NULL OR expires_at > now())"
        )
        self._set = self._render(
            "INSERT INTO {} (key_digest, data, expires_at, updated_at, user_name) "
            "VALUES (%(k)s, %(d)s, now() + make_interval(secs => %(s)s), now(), %(u)s) "
            "ON CONFLICT (key_digest) DO UPDATE SET data = EXCLUDED.data, "
            "expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at, "
            "user_name = EXCLUDED.user_name"
        )

    def _render(self, statement: str) -> str:
        return sql.SQL(statement).format(self._t, t=self._t).as_string(None)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Purge expired sessions and open the pool (idempotent); ``infra.schema`` made the table."""
        self._get_pool()
        self.purge()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            loops = list(self._by_loop.values())
        if pool is not None:
            pool.close()
        for connections in loops:  # connections busy now are closed when given back
            connections.finish_all()

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.address.conninfo(),
                    min_size=1,
                    max_size=self.max_size,
                    kwargs={"autocommit": True},
                    open=False,
                    name="heaters-web-sessions",
                    check=check_idle_connection,  # a connection the server closed is replaced
                )
                self._pool.open(wait=False)
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._get_pool().connection(timeout=10.0) as conn:
            yield conn

    async def _run(self, function: Callable[[], T]) -> T:
        # Every session operation is idempotent: one lost connection (a database restart) is retried.
        return await anyio.to_thread.run_sync(partial(retry_once_on_lost_connection, "web session", function))

    # -- the read on the event loop ----------------------------------------------------------------

    def _loop_connections(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        with self._lock:
            connections = self._by_loop.get(loop)
            if connections is None:
                connections = self._by_loop[loop] = _LoopConnections(self.max_size)
                # a loop that ends (a test client's) closes its idle connections
                weakref.finalize(loop, _finish_idle, connections)
            return connections

    async def _acquire(self, connections: _LoopConnections) -> psycopg.AsyncConnection[Any]:
        while True:
            if connections.idle:
                return connections.idle.pop()
            if connections.open < connections.size:
                connections.open += 1
                try:
                    return await psycopg.AsyncConnection.connect(self.address.conninfo(), autocommit=True)
                except BaseException:
                    connections.open -= 1
                    connections.wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            connections.waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    connections.wake()  # woken, then cancelled: pass the turn on
                raise

    def _release(
        self, connections: _LoopConnections, conn: psycopg.AsyncConnection[Any], *, sound: bool
    ) -> None:
        if sound and self._pool is not None and conn.pgconn.status == psycopg.pq.ConnStatus.OK:
            connections.idle.append(conn)
        else:  # in doubt (cancelled mid-query, lost) or the store closed: not reused
            connections.open -= 1
            _finish(conn)
        connections.wake()

    def _reading(self, key: str, renew_for: int | timedelta | None) -> tuple[str, Any]:
        """The statement that reads the session ``key`` (renewing it by ``renew_for``) and its
        parameters: the same for the read on the event loop and :meth:`get_sync`."""
        renew = _seconds(renew_for)
        if renew is None:
            return self._get, (_digest(key),)
        # only sessions set with an expiry are renewed (the Store protocol)
        slack = min(RENEW_SLACK, renew / 100)
        return self._get_renewing, {"k": _digest(key), "s": renew, "slack": slack}

    async def _read(self, key: str, renew_for: int | timedelta | None) -> bytes | None:
        statement, params = self._reading(key, renew_for)
        if self._pool is None:  # open (the store's lifecycle), as the other operations do
            self._get_pool()
        connections = self._loop_connections()
        for attempt in (1, 2):
            conn = await self._acquire(connections)
            try:
                cursor = await conn.execute(statement, params)
                row = await cursor.fetchone()
            except psycopg.OperationalError as error:
                self._release(connections, conn, sound=False)
                if attempt == 2 or not lost_connection(error):
                    raise
                # the server dropped it (a restart): the idle ones went with it; one more try, fresh
                log.warning("web session: the database connection was lost (%s); trying once more", error)
                connections.finish_all()
                continue
            except BaseException:
                self._release(connections, conn, sound=False)
                raise
            self._release(connections, conn, sound=True)
            return bytes(row[0]) if row else None
        raise AssertionError("unreachable")

    # -- synchronous operations --------------------------------------------------------------------

    def purge(self) -> int:
        """Delete expired sessions; the number deleted."""
        self._next_purge = time.monotonic() + self.purge_every
        with self._connection() as conn:
            cur = conn.execute(
                sql.SQL("DELETE FROM {} WHERE expires_at <= now()").format(self._t)  # type: ignore[arg-type]
            )
            if cur.rowcount:
                log.info("purged %d expired web sessions", cur.rowcount)
            return int(cur.rowcount)

    def set_sync(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        with self._connection() as conn:
            conn.execute(
                self._set,
                {"k": _digest(key), "d": data, "s": _seconds(expires_in), "u": _session_user(data)},
            )
        if time.monotonic() >= self._next_purge:
            try:
                self.purge()
            except psycopg.Error:
                log.warning("purging expired web sessions failed", exc_info=True)

    def get_sync(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        statement, params = self._reading(key, renew_for)
        with self._connection() as conn:
            row = conn.execute(statement, params).fetchone()
        return bytes(row[0]) if row else None

    def delete_sync(self, key: str) -> None:
        with self._connection() as conn:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE key_digest = %s").format(self._t),  # type: ignore[arg-type]
                (_digest(key),),
            )

    def delete_all_sync(self) -> None:
        with self._connection() as conn:
            conn.execute(sql.SQL("DELETE FROM {}").format(self._t))  # type: ignore[arg-type]

    def expires_in_sync(self, key: str) -> int | None:
        with self._connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT floor(extract(epoch FROM expires_at - now()))::bigint FROM {} "
                    "WHERE key_digest = %s AND expires_at > now()"
                ).format(self._t),  # type: ignore[arg-type]
                (_digest(key),),
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def count(self) -> int:
        """Live sessions (for tests and ops)."""
        with self._connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE expires_at IS NULL OR expires_at > now()").format(
                    self._t  # type: ignore[arg-type]
                )
            ).fetchone()
        return int(row[0]) if row else 0

    # -- the Store protocol ------------------------------------------------------------------------

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await self._run(partial(self.set_sync, key, value, expires_in))

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        return await self._read(key, renew_for)

    async def delete(self, key: str) -> None:
        await self._run(partial(self.delete_sync, key))

    async def delete_all(self) -> None:
        await self._run(self.delete_all_sync)

    async def exists(self, key: str) -> bool:
        return await self._read(key, None) is not None

    async def expires_in(self, key: str) -> int | None:
        return await self._run(partial(self.expires_in_sync, key))
