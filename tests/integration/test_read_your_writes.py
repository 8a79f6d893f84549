"""On real PostgreSQL: read-your-writes in a process without a projection daemon (a web process, the
production shape) is woken by the daemon's NOTIFY, not by polling, and survives its listener's
connection being killed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from uuid import UUID

import pytest
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from projections import read_your_writes
from projections.read_your_writes import LISTENER_APPLICATION_NAME, local_positions
from projections.runner import catch_up, wait_for
from tests.helpers import clipped_video
from tests.projection_helpers import REVIEWER

pytestmark = pytest.mark.integration

#: A projection daemon in a process of its own, until its stdin closes.
DAEMON = """
import sys
from commands.service import HeatersApplication
from infra.database import DatabaseAddress, eventsourcing_env
from projections.runner import ProjectionDaemon

address = DatabaseAddress(*sys.argv[1:6])
address = DatabaseAddress(address.host, int(address.port), address.dbname, address.user, address.password)
app = HeatersApplication(env=eventsourcing_env(address, sys.argv[6]))
with ProjectionDaemon(app, address, poll_interval=0.05):
    sys.stdin.read()
app.close()
"""


@pytest.fixture
def daemon_process(pg_address: DatabaseAddress, pg_schema: str) -> Iterator[subprocess.Popen[bytes]]:
    fields = [str(v) for v in asdict(pg_address).values()]
    process = subprocess.Popen([sys.executable, "-c", DAEMON, *fields, pg_schema], stdin=subprocess.PIPE)
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(30)


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions reads the waits of this process make (each one statement), by position; a
    live listener's wait does not recheck within the test."""
    made: list[int] = []
    poll: Callable[..., bool] = read_your_writes._poll

    def counted(
        address: DatabaseAddress, schema: str, wanted: list[str], position: int, deadline: float
    ) -> bool:
        made.append(position)
        return poll(address, schema, wanted, position, deadline)

    monkeypatch.setattr(read_your_writes, "_poll", counted)
    monkeypatch.setattr(read_your_writes, "RECHECK_SECONDS", 60.0)
    return made


def _until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.02)


def _listener_pids(address: DatabaseAddress, schema: str) -> list[int]:
    with connect(address, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
            (LISTENER_APPLICATION_NAME, f"%{schema}%"),
        ).fetchall()
    return [int(r[0]) for r in rows]


def _head(app: HeatersApplication) -> int:
    return int(app.recorder.max_notification_id() or 0)


@dataclass
class Listening:
    """A clipped video's clips, and this process listening to the daemon in another process."""

    app: HeatersApplication
    address: DatabaseAddress
    schema: str
    clips: list[UUID]
    polls: list[int]

    def wait(self, names: list[str] | None = None) -> bool:
        return wait_for(self.address, self.schema, _head(self.app), names=names, timeout=30)


@pytest.fixture
def listening(
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    daemon_process: subprocess.Popen[bytes],
    polls: list[int],
) -> Listening:
    _, clips = clipped_video(pg_app)
    local = local_positions(pg_address, pg_schema)
    assert local.daemons == 0
    # The first wait starts the listener; until it listens, the wait reads the positions itself.
    assert wait_for(pg_address, pg_schema, _head(pg_app), timeout=30)
    _until(lambda: local.listening, 10, "listening")
    assert len(_listener_pids(pg_address, pg_schema)) == 1
    assert daemon_process.poll() is None
    polls.clear()
    return Listening(pg_app, pg_address, pg_schema, clips, polls)


def test_a_daemon_in_another_process_wakes_the_wait_without_polling(listening: Listening) -> None:
    for clip_id in listening.clips:
        listening.app.approve(clip_id, REVIEWER)
        assert listening.wait(["clips", "history"])
    assert listening.polls == []  # every wait was woken by the daemon's announcement
    with connect(listening.address, autocommit=True) as conn:
        states = conn.execute(
            sql.SQL("SELECT DISTINCT state FROM {}").format(sql.Identifier(listening.schema, "rm_clips"))
        ).fetchall()
    assert states == [("approved",)]


def test_killing_the_listeners_connection_loses_no_wait(listening: Listening) -> None:
    app, address, schema, (a, b, c) = listening.app, listening.address, listening.schema, listening.clips
    local = local_positions(address, schema)
    (first,) = _listener_pids(address, schema)
    with connect(address, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))
    # Written while the listener is dead or reconnecting: its announcement may be lost, the wait not.
    app.approve(a, REVIEWER)
    assert listening.wait(["clips"])
    # The listener came back on a new connection, and wakes waits again without polling.
    _until(
        lambda: local.listening and _listener_pids(address, schema) not in ([], [first]), 10, "new listener"
    )
    listening.polls.clear()
    app.skip(b, REVIEWER)
    assert listening.wait(["clips"])
    assert listening.polls == []
    # Killed while a wait blocks on it: the wait still completes.
    (second,) = _listener_pids(address, schema)
    reached: list[bool] = []
    target = _head(app) + 1
    waiter = threading.Thread(target=lambda: reached.append(wait_for(address, schema, target, timeout=30)))
    waiter.start()
    time.sleep(0.2)
    with connect(address, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (second,))
    app.archive(c, REVIEWER)
    waiter.join(40)
    assert reached == [True]


def test_without_a_daemon_anywhere_a_wait_times_out(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    clipped_video(pg_app)
    local = local_positions(pg_address, pg_schema)
    for _ in range(2):  # polling while the listener connects, then on the listener
        started = time.monotonic()
        assert not wait_for(pg_address, pg_schema, _head(pg_app), timeout=1.5)
        assert time.monotonic() - started >= 1.5
        _until(lambda: local.listening, 10, "listening")


def test_positions_moved_without_an_announcement_are_read_at_the_recheck(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """A daemon of an older release (or a hand) moves positions without a NOTIFY: a wait on
    a live listener still sees them, by reading them once a second."""
    clipped_video(pg_app)
    head = catch_up(pg_app, pg_address)
    local = local_positions(pg_address, pg_schema)
    assert wait_for(pg_address, pg_schema, head, timeout=30)
    _until(lambda: local.listening, 10, "listening")
    with connect(pg_address, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET position = position + 1000").format(
                sql.Identifier(pg_schema, "projection_positions")
            )
        )
    assert wait_for(pg_address, pg_schema, head + 1000, timeout=30)
