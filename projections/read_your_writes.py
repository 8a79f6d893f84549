"""Read-your-writes: waiting until the projections have applied the log up to a position.

The projection runner announces its positions with a NOTIFY on the schema's positions channel
(:func:`positions_channel`) in the transaction that advances them, so the announcement arrives exactly
when they commit. Waits block on one in-process condition per (database, schema),
:class:`LocalPositions`, which two sources feed:

- a projection daemon running in this process publishes what each of its batches reached;
- otherwise (a web process beside the daemons' own, the production shape) ONE listener thread per
  (database, schema) LISTENs on the channel and publishes each announcement. It reads the positions
  once after each (re)connect, after its LISTEN, so nothing committed before it listened is missed;
  while it is not connected (starting, or its connection died) waits poll ``projection_positions``
  on a pooled connection, and a wait that a live listener has not satisfied within
  :data:`RECHECK_SECONDS` polls once too (announcements that never came: a daemon of an older
  release, a position changed by hand). A rebuild's swap and ``resume`` announce theirs too. A listener unused for :data:`LISTENER_IDLE_SECONDS` closes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from infra.database import DatabaseAddress, check_idle_connection
from infra.log_follower import describe

log = logging.getLogger(__name__)

#: The runner's tracking table (one row per projection, and per rebuild).
POSITIONS_TABLE = "projection_positions"
#: A wait that a live listener has not satisfied in this long checks the table once.
RECHECK_SECONDS = 1.0
#: A listener no wait used for this long closes its connection (the next wait starts another).
LISTENER_IDLE_SECONDS = 60.0
#: The listener's connection says what it is in ``pg_stat_activity``.
LISTENER_APPLICATION_NAME = "heaters-positions-listener"


def positions_channel(schema: str) -> str:
    """The NOTIFY channel of ``schema``'s projection positions (PostgreSQL's 63-byte limit kept)."""
    channel = f"heaters_positions_{schema}"
    if len(channel.encode()) <= 63:
        return channel
    return "heaters_positions_" + hashlib.sha256(schema.encode()).hexdigest()[:40]


@functools.lru_cache(maxsize=64)
def _notify_statement(schema: str) -> str:
    """:func:`notify_positions`' statement, rendered once per schema (a daemon sends it every batch)."""
    return (
        sql.SQL(
            "SELECT p, pg_notify(%s, p) FROM (SELECT coalesce(json_object_agg(name, position), '{{}}')::text AS p"
            " FROM {}) AS s"
        )
        .format(sql.Identifier(schema, POSITIONS_TABLE))
        .as_string(None)
    )


def notify_positions(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """Announce every position of ``schema`` as this transaction leaves it (delivered when it commits;
    one statement); returns them."""
    row = conn.execute(_notify_statement(schema), (positions_channel(schema),)).fetchone()
    return {str(name): int(position) for name, position in json.loads(row[0] if row else "{}").items()}


class LocalPositions:
    """The positions known in this process for one (database, schema), and the condition waits block
    on; fed by the daemons running here (``daemons``) or by the listener while it is connected
    (``listening``). A publication wakes only the waits it satisfies (each waits on a condition of
    its own over the shared lock): waking every wait on every batch made each of twenty waiting
    request threads take the lock and the interpreter's lock again to find itself not served yet."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.condition = threading.Condition(self._lock)
        self.positions: dict[str, int] = {}
        self.daemons = 0
        self.listening = False
        #: the waits blocked now: what each wants, and its own condition (over ``condition``'s lock)
        self._waits: list[tuple[Sequence[str], int, threading.Condition]] = []

    def _reached(self, wanted: Sequence[str], position: int) -> bool:
        return all(self.positions.get(n, -1) >= position for n in wanted)

    def _wake(self) -> None:
        """Wake the waits that are served now (all of them when no source feeds the positions any
        more), and the pauses; the caller holds the lock."""
        live = self.live
        for wanted, position, condition in self._waits:
            if not live or self._reached(wanted, position):
                condition.notify()
        self.condition.notify_all()

    def publish(self, positions: Mapping[str, int]) -> None:
        with self.condition:
            self.positions.update(positions)
            self._wake()

    def set_listening(self, listening: bool, positions: Mapping[str, int] | None = None) -> None:
        with self.condition:
            self.listening = listening
            if positions is not None:
                self.positions.update(positions)
            self._wake()

    @property
    def live(self) -> bool:
        return self.daemons > 0 or self.listening

    def wait(
        self, wanted: Sequence[str], position: int, deadline: float, recheck: float | None = None
    ) -> bool | None:
        """True once every ``wanted`` projection reached ``position``; False at the deadline; None
        when no source feeds the positions (then the caller polls) or at ``recheck``."""
        with self.condition:
            mine = (wanted, position, threading.Condition(self._lock))
            self._waits.append(mine)
            try:
                while True:
                    if self._reached(wanted, position):
                        return True
                    now = time.monotonic()
                    if now >= deadline:
                        return False
                    if not self.live or (recheck is not None and now >= recheck):
                        return None
                    until = deadline if recheck is None else min(deadline, recheck)
                    mine[2].wait(min(until - now, 0.25))
            finally:
                self._waits.remove(mine)

    def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, woken early by a publication (or the listener connecting)."""
        with self.condition:
            self.condition.wait(seconds)


#: By (database, schema): the address itself is the key (its conninfo string costs a parse per call).
_locals: dict[tuple[DatabaseAddress, str], LocalPositions] = {}
_listeners: dict[tuple[DatabaseAddress, str], _Listener] = {}
_lock = threading.Lock()


def local_positions(address: DatabaseAddress, schema: str) -> LocalPositions:
    key = (address, schema)
    with _lock:
        return _locals.setdefault(key, LocalPositions())


class _Listener:
    """The thread that LISTENs to one schema's positions channel and publishes into its
    :class:`LocalPositions`."""

    def __init__(self, address: DatabaseAddress, schema: str, local: LocalPositions) -> None:
        self.key = (address, schema)
        self.address = address
        self.schema = schema
        self.local = local
        self.used = time.monotonic()
        self.done = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"positions-listener-{schema}", daemon=True)

    def _idle(self) -> bool:
        return self.stopping.is_set() or time.monotonic() - self.used > LISTENER_IDLE_SECONDS

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with _lock:
                if self._idle():
                    self.done = True
                    _listeners.pop(self.key, None)
                    return
            try:
                with psycopg.connect(
                    self.address.conninfo(), autocommit=True, application_name=LISTENER_APPLICATION_NAME
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(positions_channel(self.schema))))
                    # after LISTEN: what committed before is read here, what commits after is announced
                    self.local.set_listening(True, _positions(conn, self.schema))
                    backoff = 0.05
                    while not self._idle():
                        for notify in conn.notifies(timeout=1.0):
                            self.local.publish(json.loads(notify.payload))
            except Exception as error:  # the connection died (or a stray payload): listen again
                log.warning(
                    "read-your-writes listener of schema %s failed (%s); reconnecting",
                    self.schema,
                    describe(error).splitlines()[0],
                    exc_info=not isinstance(error, psycopg.Error),
                )
            finally:
                self.local.set_listening(False)
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 2.0)


def close_listeners() -> None:
    """Stop this process's listeners (each within a second); the next wait starts its own again."""
    with _lock:
        listeners = list(_listeners.values())
    for listener in listeners:
        listener.stopping.set()
    for listener in listeners:
        listener.thread.join(5)


def _listen(address: DatabaseAddress, schema: str, local: LocalPositions) -> None:
    """Make sure this process listens to ``schema``'s positions (starts the listener once)."""
    key = (address, schema)
    with _lock:
        listener = _listeners.get(key)
        if listener is None or listener.done or not listener.thread.is_alive():
            listener = _listeners[key] = _Listener(address, schema, local)
            listener.thread.start()
        listener.used = time.monotonic()


def wait(address: DatabaseAddress, schema: str, position: int, wanted: Sequence[str], timeout: float) -> bool:
    """Block until every ``wanted`` projection applied the log up to ``position``; False on timeout."""
    deadline = time.monotonic() + timeout
    local = local_positions(address, schema)
    if local.daemons == 0:
        _listen(address, schema, local)
    delay = 0.002
    while True:
        if local.live:
            recheck = None if local.daemons > 0 else time.monotonic() + RECHECK_SECONDS
            reached = local.wait(wanted, position, deadline, recheck)
            if reached is not None and (reached or local.daemons > 0):
                return reached
        # No source feeds the positions yet (the listener connecting or reconnecting), or the
        # listener's announcements did not satisfy the wait in time: read them once.
        if _poll(address, schema, wanted, position, deadline):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if not local.live:
            local.pause(min(delay, remaining))
            delay = min(delay * 1.5, 0.02)


def _positions(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """Every position of ``schema`` as committed now (none before the runner made its table)."""
    query = sql.SQL("SELECT name, position FROM {}").format(sql.Identifier(schema, POSITIONS_TABLE))
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    return {str(name): int(p) for name, p in rows}


def _poll(
    address: DatabaseAddress, schema: str, wanted: Sequence[str], position: int, deadline: float
) -> bool:
    try:
        with _wait_pool(address).connection(timeout=max(0.1, deadline - time.monotonic())) as conn:
            reached = _positions(conn, schema)
    except PoolTimeout:  # every pooled connection busy with other waits until the deadline
        return False
    return all(reached.get(n, -1) >= position for n in wanted)


_wait_pools: dict[DatabaseAddress, ConnectionPool[psycopg.Connection[Any]]] = {}


def _wait_pool(address: DatabaseAddress) -> ConnectionPool[psycopg.Connection[Any]]:
    """The connections waits poll on, one pool per database in this process (none kept open when
    idle)."""
    with _lock:
        pool = _wait_pools.get(address)
        if pool is None:
            pool = ConnectionPool(
                address.conninfo(),
                min_size=0,
                max_size=8,
                kwargs={"autocommit": True},
                name="heaters-read-your-writes",
                check=check_idle_connection,
                open=True,
            )
            _wait_pools[address] = pool
        return pool
