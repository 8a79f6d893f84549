"""``pipeline_work``: the pipeline's outbox and the liveness of the work it sent.

One row per (aggregate, stage). The process manager writes it in the same transaction as its log
position: ``state = 'dispatched'`` with ``sent_at`` NULL means "to send" (the outbox). The sender marks
a row sent once the broker accepted the message and sets ``start_by``: a worker must claim the work by
then or it is sent again. A worker running a stage claims the row with a fresh ``run_token`` and beats
``heartbeat_at`` while it runs; a heartbeat older than the timeout means the worker is dead or frozen,
so the work is sent again and the frozen worker's token no longer counts (it must not write results).
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg_pool import ConnectionPool

from commands.service import HeatersApplication
from domain.errors import DomainError
from infra.database import DatabaseAddress, connect
from processors.queues import STAGE_QUEUES

log = logging.getLogger(__name__)

#: This process as the work table names it: which worker holds (or last held) a stage.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def work_pool(address: DatabaseAddress, max_size: int, name: str, *, open: bool = True) -> ConnectionPool:
    """A small pool whose connections are checked before use (a server restart leaves none broken);
    ``open=False``: it connects on ``open()``."""
    return ConnectionPool(
        address.conninfo(),
        min_size=1,
        max_size=max_size,
        open=open,
        check=ConnectionPool.check_connection,
        name=name,
        kwargs={"autocommit": True},
    )


@dataclass
class Claim:
    """One running attempt's hold on its work row; ``lost`` once another attempt took the work over."""

    aggregate_id: UUID
    stage: str
    token: UUID | None  # None: no work row (work sent by hand); nothing to beat
    lost: threading.Event = field(default_factory=threading.Event)
    ledger: WorkLedger | None = None

    @property
    def current(self) -> bool:
        return not self.lost.is_set()

    def verify(self) -> bool:
        """Ask the database (not the heartbeat thread, which a frozen process could not run): does
        this attempt still hold its work?"""
        if self.token is None or self.ledger is None or self.lost.is_set():
            return not self.lost.is_set()
        if not self.ledger.holds(self.token):
            self.lost.set()
        return not self.lost.is_set()


_current_claim: contextvars.ContextVar[Claim | None] = contextvars.ContextVar("heaters_claim", default=None)


def current_claim() -> Claim | None:
    """The claim of the stage running in this thread (None outside an actor)."""
    return _current_claim.get()


class SupersededAttempt(Exception):
    """This attempt lost its work to a newer one (it was frozen past the heartbeat): it must not write."""


def ensure_current(what: str) -> None:
    """Raise when this thread's attempt was superseded: called before a stage writes its outputs."""
    claim = current_claim()
    if claim is not None and not claim.verify():
        raise SupersededAttempt(
            f"{what}: this attempt was superseded by a newer one; its outputs are dropped"
        )


class WorkLedger:
    """The worker's side: claim a stage's work, beat its heartbeat while running, release it."""

    def __init__(
        self,
        address: DatabaseAddress,
        schema: str,
        *,
        heartbeat_seconds: float = 10.0,
        heartbeat_timeout_seconds: float = 60.0,
        start_timeout_seconds: float = 60.0,
        retry_wait_seconds: float = 300.0,
    ) -> None:
        self.schema = schema
        self.heartbeat_seconds = heartbeat_seconds
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
        self.start_timeout_seconds = start_timeout_seconds
        self.retry_wait_seconds = retry_wait_seconds
        self._pool = work_pool(address, 2, "heaters-work-ledger")
        self._held: dict[UUID, Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, name="heaters-heartbeat", daemon=True)
        self._thread.start()

    @property
    def _table(self) -> sql.Composed:
        return sql.SQL("{}.pipeline_work").format(sql.Identifier(self.schema))

    def _execute(self, query: sql.Composed, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def claim(self, stage: str, aggregate_id: UUID) -> Claim | None:
        """Hold the work for this attempt; None when a live attempt elsewhere already holds it."""
        token = uuid.uuid4()
        rows = self._execute(
            sql.SQL(
                "UPDATE {} SET run_token = %s, started_at = now(), heartbeat_at = now(), start_by = NULL,"
                " runs = runs + 1, worker = %s WHERE aggregate_id = %s AND stage = %s AND (heartbeat_at IS NULL"
                " OR heartbeat_at < now() - make_interval(secs => %s)) RETURNING 1"
            ).format(self._table),
            (token, WORKER_ID, aggregate_id, stage, self.heartbeat_timeout_seconds),
        )
        if not rows:
            exists = self._execute(
                sql.SQL("SELECT 1 FROM {} WHERE aggregate_id = %s AND stage = %s").format(self._table),
                (aggregate_id, stage),
            )
            if exists:
                return None
            claim = Claim(aggregate_id, stage, None)
        else:
            claim = Claim(aggregate_id, stage, token, ledger=self)
            with self._lock:
                self._held[token] = claim
        return claim

    def holds(self, token: UUID) -> bool:
        rows = self._execute(sql.SQL("SELECT 1 FROM {} WHERE run_token = %s").format(self._table), (token,))
        return bool(rows)

    def release(self, claim: Claim, error: BaseException | None) -> None:
        if claim.token is None:
            return
        with self._lock:
            self._held.pop(claim.token, None)
        # After a failure the broker retries after its backoff: give it that long before sending again.
        wait = self.start_timeout_seconds + (self.retry_wait_seconds if error is not None else 0.0)
        held = self._execute(
            sql.SQL(
                "UPDATE {} SET run_token = NULL, heartbeat_at = NULL, start_by = now() + make_interval(secs => %s),"
                " last_error = %s WHERE run_token = %s RETURNING 1"
            ).format(self._table),
            (wait, None if error is None else f"{type(error).__name__}: {error}"[:500], claim.token),
        )
        if not held:
            claim.lost.set()
            log.warning(
                "%s for %s: this attempt lost its work to a newer one while it ran (heartbeat missed)",
                claim.stage,
                claim.aggregate_id,
            )

    def hold(self, stage: str, aggregate_id: UUID) -> Claim | None:
        """Claim the work for the attempt this thread runs, as the thread's current claim; None when
        a live attempt elsewhere holds it (this delivery is then skipped)."""
        claim = self.claim(stage, aggregate_id)
        if claim is None:
            log.info("%s for %s: already running elsewhere (live heartbeat); skipped", stage, aggregate_id)
            return None
        _current_claim.set(claim)
        return claim

    def let_go(self, claim: Claim, error: BaseException | None) -> None:
        """The attempt holding ``claim`` ended (``error``: how it failed): release its work row."""
        _current_claim.set(None)
        try:
            self.release(claim, error)
        except Exception:
            log.exception("%s for %s: could not release its work row", claim.stage, claim.aggregate_id)

    @contextmanager
    def running(self, stage: str, aggregate_id: UUID) -> Iterator[Claim | None]:
        """Run a stage under a claim (yields None when another live attempt holds the work)."""
        claim = self.hold(stage, aggregate_id)
        if claim is None:
            yield None
            return
        error: BaseException | None = None
        try:
            yield claim
        except BaseException as raised:
            error = raised
            raise
        finally:
            self.let_go(claim, error)

    def beat(self) -> None:
        """Refresh the heartbeat of every held claim; a claim whose token is gone is marked lost."""
        with self._lock:
            tokens = list(self._held)
        if not tokens:
            return
        rows = self._execute(
            sql.SQL(
                "UPDATE {} SET heartbeat_at = now() WHERE run_token = ANY(%s) RETURNING run_token"
            ).format(self._table),
            (tokens,),
        )
        alive = {row[0] for row in rows}
        with self._lock:
            for token in tokens:
                claim = self._held.get(token)
                if claim is not None and token not in alive:
                    log.warning(
                        "%s for %s: this attempt lost its work to a newer one (heartbeat missed)",
                        claim.stage,
                        claim.aggregate_id,
                    )
                    claim.lost.set()
                    self._held.pop(token, None)

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.beat()
            except Exception as error:
                log.warning("heartbeat failed (will try again): %s", error)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.close()


# -- what operators see and do -------------------------------------------------------------------


@dataclass(frozen=True)
class WaitingWork:
    """Work waiting longer than expected, and on what."""

    aggregate_id: UUID
    stage: str
    queue: str
    waiting_seconds: float
    waiting_on: str
    resends: int


def _work_rows(
    address: DatabaseAddress, schema: str, statement: str, params: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    """Run one statement on ``pipeline_work`` (``{}`` in it); no rows while the table does not exist."""
    with connect(address, autocommit=True) as conn:
        if (conn.execute("SELECT to_regclass(%s)", (f"{schema}.pipeline_work",)).fetchone() or (None,))[0]:
            table = sql.Identifier(schema, "pipeline_work")
            return conn.execute(sql.SQL(statement).format(table), params).fetchall()
    return []


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def waiting_work(
    address: DatabaseAddress,
    schema: str,
    *,
    start_timeout_seconds: float = 60.0,
    heartbeat_timeout_seconds: float = 60.0,
    outbox_grace_seconds: float = 10.0,
) -> list[WaitingWork]:
    """Open work that is late: unsent (the broker refuses), sent but not started (no worker on its
    queue, or a deep queue), or running without a heartbeat (its worker died or froze)."""
    rows = _work_rows(
        address,
        schema,
        "SELECT aggregate_id, stage, resends, sent_at IS NULL, heartbeat_at IS NOT NULL,"
        " extract(epoch FROM now() - due_at), extract(epoch FROM now() - sent_at),"
        " extract(epoch FROM now() - heartbeat_at), last_error, worker,"
        " started_at IS NOT NULL AND started_at >= sent_at"
        " FROM {} WHERE state = 'dispatched' AND due_at <= now() ORDER BY due_at",
    )
    out: list[WaitingWork] = []
    for (
        aggregate_id,
        stage,
        resends,
        unsent,
        running,
        due_age,
        sent_age,
        beat_age,
        last_error,
        worker,
        ran,
    ) in rows:
        queue = STAGE_QUEUES.get(stage, "?")
        if unsent and float(due_age) > outbox_grace_seconds:
            age, on = float(due_age), f"the broker: not accepted for {_age(float(due_age))}"
        elif running and float(beat_age) > heartbeat_timeout_seconds:
            age, on = float(beat_age), f"its worker {worker}: no heartbeat for {_age(float(beat_age))}"
        elif (
            not (unsent or running or ran) and last_error is None and float(sent_age) > start_timeout_seconds
        ):
            age = float(sent_age)
            on = f"a worker on queue {queue}: sent {_age(age)} ago, not started"
        else:
            continue
        if resends:
            on += f" (sent {int(resends) + 1} times)"
        out.append(WaitingWork(aggregate_id, str(stage), queue, age, on, int(resends)))
    return out


def redispatch(
    address: DatabaseAddress, schema: str, aggregate_id: UUID, stage: str | None = None
) -> list[str]:
    """An operator's retry of stuck work: its open rows go back to the outbox (sent at once)."""
    rows = _work_rows(
        address,
        schema,
        "UPDATE {} SET sent_at = NULL, due_at = least(due_at, now()), resends = resends + 1,"
        " run_token = NULL, heartbeat_at = NULL, last_error = NULL WHERE aggregate_id = %s"
        " AND state = 'dispatched' AND (%s::text IS NULL OR stage = %s) RETURNING stage",
        (aggregate_id, stage, stage),
    )
    stages = sorted(str(r[0]) for r in rows)
    if stages:
        log.warning("%s: %s sent again on an operator's request", aggregate_id, ", ".join(stages))
    return stages


def retry_work(
    app: HeatersApplication, address: DatabaseAddress, schema: str, ident: object, actor: str
) -> str:
    """``heaters retry`` and the ops page's button: re-open a failed stage, or else send stuck work
    again. Returns what was done, in words; raises ``DomainError`` when there is neither."""
    aggregate = app.get_any(ident)
    try:
        stage = app.request_retry(aggregate.id, actor)
    except DomainError as refused:
        stages = redispatch(address, schema, aggregate.id)
        if not stages:
            raise DomainError(f"{refused}; and it has no work waiting to be sent again") from None
        return f"{', '.join(stages)} sent again"
    return f"{stage} will be retried"


def outbox_size(address: DatabaseAddress, schema: str) -> int:
    """Due work the broker has not accepted yet."""
    rows = _work_rows(
        address,
        schema,
        "SELECT count(*) FROM {} WHERE state = 'dispatched' AND sent_at IS NULL AND due_at <= now()",
    )
    return int(rows[0][0]) if rows else 0
