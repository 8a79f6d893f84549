"""The process manager dispatches each event's work once across restarts, through an outbox that
survives a broker outage, and sends again work no worker started or whose worker stopped beating."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from processors.process_manager import PipelineProcessManager
from processors.work_ledger import WorkLedger
from tests.helpers import clipped_video
from tests.integration.pipeline_support import wait_until

pytestmark = pytest.mark.integration


class Recorder:
    """A broker: records what it accepted; refuses while ``down``."""

    def __init__(self, down: bool = False) -> None:
        self.sent: list[tuple[str, UUID, int | None]] = []
        self.down = down

    def __call__(self, stage: str, aggregate_id: UUID, delay_ms: int | None) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append((stage, aggregate_id, delay_ms))


Managers = Callable[..., PipelineProcessManager]


@pytest.fixture
def manager(pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str) -> Iterator[Managers]:
    """Makes process managers on the test's database sending to a ``Recorder`` (start and heartbeat
    timeouts in seconds, 60 by default); each is stopped at the end of the test."""
    started: list[PipelineProcessManager] = []

    def make(
        sent: Recorder, start_timeout: float = 60.0, heartbeat_timeout: float = 60.0
    ) -> PipelineProcessManager:
        pm = PipelineProcessManager(
            pg_app,
            pg_address,
            pg_schema,
            sent,
            archive_grace_seconds=3600,
            batch_size=3,
            start_timeout_seconds=start_timeout,
            heartbeat_timeout_seconds=heartbeat_timeout,
        )
        started.append(pm)
        return pm

    yield make
    while started:
        started.pop().stop()


def test_each_event_dispatches_once_across_restarts(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, manager: Managers
) -> None:
    sent = Recorder()
    video_id = pg_app.submit("/videos/a.mp4", "user:alice")
    manager(sent).catch_up()
    assert sent.sent == [("download", video_id, None)]

    restarted = manager(sent)
    assert restarted.catch_up() == 0
    assert len(sent.sent) == 1

    _, (a, b, _) = clipped_video(pg_app)
    pg_app.approve(a, "user:alice")
    pg_app.archive(b, "user:alice")
    restarted.catch_up()
    assert ("keyframes", a, None) in sent.sent
    assert "purge" not in [s for s, _, _ in sent.sent]  # archived media is purged after the grace period
    with connect(pg_address) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET due_at = now() WHERE stage = 'purge'").format(
                sql.Identifier(pg_schema, "pipeline_work")
            )
        )
    restarted.catch_up()
    assert ("purge", b, None) in sent.sent  # held in the outbox until due, then sent
    stages = [s for s, _, _ in sent.sent]
    # the second video's stages were done before they were sent: the outbox sends only open work
    assert stages == ["download", "keyframes", "purge"]


def test_work_refused_by_the_broker_stays_in_the_outbox_and_is_sent_after_a_restart(
    pg_app: HeatersApplication, manager: Managers
) -> None:
    broker = Recorder(down=True)
    first = manager(broker)
    ids = [pg_app.submit(f"/videos/{n}.mp4", "user:alice") for n in range(5)]
    with pytest.raises(ConnectionError):
        first.catch_up()  # the position moves on (the work is recorded), the broker refuses
    assert first.position() > 0 and broker.sent == []
    first.stop()  # the process manager dies while the broker is down

    broker.down = False
    restarted = manager(broker)
    assert restarted.catch_up() == 0  # no event to read again ...
    assert sorted(i for _, i, _ in broker.sent) == sorted(ids)  # ... yet every download is sent
    restarted.catch_up()
    assert len(broker.sent) == 5  # and sent once


def test_a_running_manager_keeps_sending_until_the_broker_accepts(
    pg_app: HeatersApplication, manager: Managers
) -> None:
    broker = Recorder(down=True)
    pm = manager(broker)
    pm.start(poll_seconds=0.05)
    video_id = pg_app.submit("/videos/a.mp4", "user:alice")
    time.sleep(1.0)
    assert broker.sent == []
    broker.down = False
    wait_until(lambda: broker.sent == [("download", video_id, None)], timeout=10)


def test_work_not_started_in_time_is_sent_again(pg_app: HeatersApplication, manager: Managers) -> None:
    lost = Recorder()
    video_id = pg_app.submit("/videos/a.mp4", "user:alice")
    pm = manager(lost, start_timeout=0.5)
    pm.catch_up()  # "sent", but say Redis restarted and the message is gone
    assert pm.reconcile() == []  # not stuck yet: within the start timeout
    time.sleep(0.7)
    assert pm.reconcile() == [("download", video_id, "no worker started it")]
    assert lost.sent == [("download", video_id, None)] * 2


def test_a_running_stage_proves_liveness_by_heartbeat(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, manager: Managers
) -> None:
    sent = Recorder()
    video_id = pg_app.submit("/videos/a.mp4", "user:alice")
    pm = manager(sent, start_timeout=0.3, heartbeat_timeout=1.0)
    pm.catch_up()
    ledger = WorkLedger(pg_address, pg_schema, heartbeat_seconds=0.2, heartbeat_timeout_seconds=1.0)
    try:
        claim = ledger.claim("download", video_id)
        assert claim is not None and claim.token is not None
        assert ledger.claim("download", video_id) is None  # a second delivery skips live work
        time.sleep(1.5)  # longer than the start and heartbeat timeouts, but it beats
        assert pm.reconcile() == []
        assert len(sent.sent) == 1

        ledger._stop.set()  # the worker freezes (SIGSTOP): no more heartbeats
        ledger._thread.join()
        time.sleep(1.2)
        assert pm.reconcile() == [("download", video_id, "its worker stopped beating")]
        assert len(sent.sent) == 2
        other = WorkLedger(pg_address, pg_schema, heartbeat_seconds=0.2, heartbeat_timeout_seconds=1.0)
        try:
            assert other.claim("download", video_id) is not None  # the new delivery takes it over
        finally:
            other.close()
        ledger.beat()  # the frozen worker wakes up: its attempt no longer counts
        assert not claim.current
    finally:
        ledger.close()


def test_finished_and_failed_work_is_not_reconciled(pg_app: HeatersApplication, manager: Managers) -> None:
    sent = Recorder()
    pm = manager(sent, start_timeout=0.1)
    video_id, _ = clipped_video(pg_app)
    failing = pg_app.submit("/videos/b.mp4", "user:alice")
    attempt = pg_app.start_video_stage(failing, "download", "stage:download")
    pg_app.record_video_failure(failing, "download", attempt, "HTTP 404 from https://x", "stage:download")
    pm.catch_up()
    time.sleep(0.3)
    assert pm.reconcile() == []
    pg_app.request_retry(failing, "user:ops")
    pm.catch_up()
    assert sent.sent[-1] == ("download", failing, None)
    time.sleep(0.3)
    assert video_id not in {i for _, i, _ in pm.reconcile()}
