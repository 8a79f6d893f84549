"""The process manager and a Redis of its own: a stopped or paused broker loses no dispatch, even when
the process manager is killed during the outage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
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


def start_process_manager(
    redis_url: str, address: DatabaseAddress, schema: str, home: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    env |= {
        "HEATERS_HOME": str(home),
        "HEATERS_DATABASE_URL": f"postgresql://{address.user}:@/{address.dbname}?host={address.host}",
        "HEATERS_DATABASE_SCHEMA": schema,
        "HEATERS_REDIS_URL": redis_url,
        "HEATERS_REDIS_NAMESPACE": NAMESPACE,
    }
    heaters = str(Path(sys.executable).with_name("heaters"))
    handle = log.open("ab")
    return subprocess.Popen([heaters, "-v", "process-manager"], env=env, stdout=handle, stderr=handle)


def queued(server: OwnRedis, queue: str) -> int:
    try:
        return int(server.client().llen(f"{NAMESPACE}:{queue}"))
    except Exception:
        return -1


def test_downloads_submitted_while_redis_is_down_are_sent_when_it_is_back(
    own_redis: OwnRedis,
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "pm.log"
    pm = start_process_manager(own_redis.url, pg_address, pg_schema, tmp_path / "home", log)
    try:
        first = pg_app.submit("/videos/warm.mp4", "user:alice")
        wait_until(lambda: queued(own_redis, "ingest") == 1, timeout=30)
        own_redis.stop()  # Redis dies (and loses what it held: the first message too)
        ids = [pg_app.submit(f"/videos/{n}.mp4", "user:alice") for n in range(3)]
        time.sleep(2.0)
        own_redis.start()
        # The three downloads submitted during the outage are sent once Redis is back ...
        wait_until(lambda: queued(own_redis, "ingest") == 3, timeout=20)
        assert first not in ids
    finally:
        pm.send_signal(signal.SIGTERM)
        pm.wait(20)
    assert "refused" in log.read_text() or "ConnectionError" in log.read_text(), log.read_text()[-2000:]


def test_a_process_manager_killed_while_redis_is_paused_sends_after_restart(
    own_redis: OwnRedis,
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "pm.log"
    pm = start_process_manager(own_redis.url, pg_address, pg_schema, tmp_path / "home", log)
    try:
        wait_until(lambda: "process manager running" in log.read_text(), timeout=30)
        time.sleep(0.5)
        own_redis.client().execute_command("CLIENT", "PAUSE", "30000", "ALL")
        video_id = pg_app.submit("/videos/paused.mp4", "user:alice")
        time.sleep(1.5)  # the process manager has recorded the work and hangs on the paused broker
        pm.send_signal(signal.SIGKILL)
        pm.wait(10)
        own_redis.client().execute_command("CLIENT", "UNPAUSE")
        assert queued(own_redis, "ingest") == 0
        pm = start_process_manager(own_redis.url, pg_address, pg_schema, tmp_path / "home", log)
        wait_until(lambda: queued(own_redis, "ingest") == 1, timeout=30)
        message = own_redis.client().hvals(f"{NAMESPACE}:ingest.msgs")
        assert str(video_id).encode() in message[0]
    finally:
        pm.send_signal(signal.SIGTERM)
        pm.wait(20)
