"""The process manager and a Redis of its own: a stopped or paused broker loses no dispatch, even when
the process manager is killed during the outage."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from tests.integration.fleet import HEATERS, fleet_env
from tests.integration.pipeline_support import wait_until
from tests.integration.redis_server import OwnRedis

pytestmark = pytest.mark.integration

NAMESPACE = "heaters-outbox"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class ProcessManagers:
    """``heaters process-manager`` processes on the test's database and Redis, all logging to ``log``."""

    def __init__(self, redis: OwnRedis, address: DatabaseAddress, schema: str, tmp_path: Path) -> None:
        self.env = fleet_env(address, schema, redis.url, tmp_path, redis_namespace=NAMESPACE)
        self.log = tmp_path / "pm.log"
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as handle:
            pm = subprocess.Popen(
                [HEATERS, "-v", "process-manager"], env=self.env, stdout=handle, stderr=handle
            )
        self.started.append(pm)
        return pm

    def stop(self) -> None:
        """SIGTERM to those still running."""
        for pm in self.started:
            if pm.poll() is None:
                pm.send_signal(signal.SIGTERM)
                pm.wait(20)


@pytest.fixture
def process_managers(
    own_redis: OwnRedis, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> Iterator[ProcessManagers]:
    managers = ProcessManagers(own_redis, pg_address, pg_schema, tmp_path)
    yield managers
    managers.stop()


def queued(server: OwnRedis, queue: str) -> int:
    try:
        return int(server.client().llen(f"{NAMESPACE}:{queue}"))
    except Exception:
        return -1


def test_downloads_submitted_while_redis_is_down_are_sent_when_it_is_back(
    own_redis: OwnRedis, pg_app: HeatersApplication, process_managers: ProcessManagers
) -> None:
    process_managers.start()
    first = pg_app.submit("/videos/warm.mp4", "user:alice")
    wait_until(lambda: queued(own_redis, "ingest") == 1, timeout=30)
    own_redis.stop()  # Redis dies (and loses what it held: the first message too)
    ids = [pg_app.submit(f"/videos/{n}.mp4", "user:alice") for n in range(3)]
    time.sleep(2.0)
    own_redis.start()
    # The three downloads submitted during the outage are sent once Redis is back ...
    wait_until(lambda: queued(own_redis, "ingest") == 3, timeout=20)
    assert first not in ids
    process_managers.stop()
    log = process_managers.log.read_text()
    assert "refused" in log or "ConnectionError" in log, log[-2000:]


def test_a_process_manager_killed_while_redis_is_paused_sends_after_restart(
    own_redis: OwnRedis, pg_app: HeatersApplication, process_managers: ProcessManagers
) -> None:
    pm = process_managers.start()
    wait_until(lambda: "process manager running" in process_managers.log.read_text(), timeout=30)
    time.sleep(0.5)
    own_redis.client().execute_command("CLIENT", "PAUSE", "30000", "ALL")
    video_id = pg_app.submit("/videos/paused.mp4", "user:alice")
    time.sleep(1.5)  # the process manager has recorded the work and hangs on the paused broker
    pm.send_signal(signal.SIGKILL)
    pm.wait(10)
    own_redis.client().execute_command("CLIENT", "UNPAUSE")
    assert queued(own_redis, "ingest") == 0
    process_managers.start()
    wait_until(lambda: queued(own_redis, "ingest") == 1, timeout=30)
    message = own_redis.client().hvals(f"{NAMESPACE}:ingest.msgs")
    assert str(video_id).encode() in message[0]
