"""Faults injected into the production shape, run as separate processes: a Redis of its own,
PostgreSQL (the embedded server), a web process, two projection daemons, the process manager and two
workers. After every fault each video reaches ``clipped`` within a bound, no result event is stored
twice, and the read models equal a rebuild from the log."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from psycopg import sql

from bench.harness import free_port
from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from projections.rebuild import rebuild
from projections.runner import catch_up
from tests.integration.fleet import Fleet, answers, fleet_env, live_daemons, wait_for
from tests.integration.pipeline_support import known_cuts_video
from tests.integration.redis_server import OwnRedis
from tests.projection_helpers import checksums

pytestmark = pytest.mark.integration

RESULTS = ("Downloaded", "ProxyCreated", "SpritesCreated", "ShotsDetected")
#: Every video in flight during a fault reaches `clipped` within this many seconds.
BOUND = 90.0
HEARTBEAT_TIMEOUT = 3.0


@pytest.fixture
def shape(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[tuple[Fleet, OwnRedis, int]]:
    redis = OwnRedis(tmp_path / "redis")
    redis.start()
    port = free_port()
    env = fleet_env(
        pg_address, pg_schema, redis.url, tmp_path,
        redis_namespace="faults", redis_heartbeat_timeout_ms="3000", stage_heartbeat_seconds="0.5",
        stage_heartbeat_timeout_seconds=str(HEARTBEAT_TIMEOUT), dispatch_start_timeout_seconds="5",
        max_attempts="6",
    )  # fmt: skip
    logs = tmp_path / "logs"
    fleet = Fleet(env, logs)
    catch_up(pg_app, pg_address)  # the read-model tables exist before the daemons race to them
    fleet.start("web", "up", "--host", "127.0.0.1", "--port", str(port), "--no-pipeline", "--no-worker",
                "--no-projections")  # fmt: skip
    fleet.start("daemon-1", "up", "--no-web", "--no-pipeline", "--no-worker")
    fleet.start("daemon-2", "up", "--no-web", "--no-pipeline", "--no-worker")
    fleet.start("process-manager", "process-manager")
    for n in (1, 2):
        fleet.start(f"worker-{n}", "worker", "--queue", "ingest", "--queue", "media", "--threads", "2")
    try:
        yield fleet, redis, port
    finally:
        fleet.stop()
        redis.stop()


def clipped(app: HeatersApplication, ids: list[UUID]) -> bool:
    return all(app.get_video(v).state == "clipped" for v in ids)


def running(app: HeatersApplication, ids: list[UUID]) -> bool:
    return any(p.status == "running" for v in ids for p in app.get_video(v).stages.values())


def running_workers(address: DatabaseAddress, schema: str) -> list[int]:
    """Pids of the workers running a stage now (their claims in pipeline_work)."""
    with connect(address, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT worker FROM {} WHERE heartbeat_at IS NOT NULL AND worker IS NOT NULL").format(
                sql.Identifier(schema, "pipeline_work")
            )
        ).fetchall()
    return [int(str(r[0]).rsplit(":", 1)[1]) for r in rows]


def freeze_a_running_worker(fleet: Fleet, address: DatabaseAddress, schema: str) -> str:
    """SIGSTOP a worker that holds a stage's claim once it is stopped (a stage may end between the
    query and the signal; then the worker is let go and another tried)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in running_workers(address, schema):
            name = fleet.by_pid(pid)
            fleet.signal(name, signal.SIGSTOP)
            if pid in running_workers(address, schema):
                return name
            fleet.signal(name, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no worker held a stage for 60 s\n{fleet.tails()}")


def leader_pid(address: DatabaseAddress, schema: str) -> int | None:
    leaders = [daemon for daemon, leads in live_daemons(address, schema) if leads]
    return int(leaders[0].split(":")[1]) if leaders else None


def test_every_video_is_clipped_once_whatever_fails(
    shape: tuple[Fleet, OwnRedis, int],
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    tmp_path: Path,
) -> None:
    fleet, redis, port = shape
    sources = [known_cuts_video(tmp_path / f"v{n}.mp4") for n in range(2)]
    videos: list[UUID] = []

    def submit() -> list[UUID]:
        batch = [pg_app.submit(str(s), "user:ops") for s in sources]
        videos.extend(batch)
        return batch

    web = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(web + "/healthz"), 60, "the web app", fleet)

    def verify() -> None:
        """After each fault: no result stored twice, the layout the shots give, read models = rebuild."""
        for video_id in videos:
            kinds = [e.event for e in pg_app.history(video_id)]
            for result in RESULTS:
                assert kinds.count(result) == 1, (video_id, kinds)
            assert [(c.start, c.end) for c in pg_app.clips_of(video_id)] == [(0, 40), (40, 85), (85, 120)]
        head = int(pg_app.recorder.max_notification_id() or 0)
        wait_for(lambda: _caught_up(pg_app, pg_address, head), 30, "the projections at the head", fleet)
        live = checksums(pg_address, pg_schema)
        rebuild(pg_app, pg_address)
        assert checksums(pg_address, pg_schema) == live

    # 1. kill -9 of a worker mid-stage and of the process manager
    batch = submit()
    wait_for(lambda: running(pg_app, batch), 60, "a stage running", fleet)
    fleet.kill9("worker-1")
    fleet.kill9("process-manager")
    fleet.restart("process-manager")
    fleet.restart("worker-1")
    wait_for(lambda: clipped(pg_app, batch), BOUND, "round 1 (worker, process manager killed)", fleet)
    verify()

    # 2. kill -9 of the leading projection daemon and of the web; Redis stopped for 3 s
    batch = submit()
    pid = leader_pid(pg_address, pg_schema)
    assert pid is not None
    leader = fleet.by_pid(pid)
    fleet.kill9(leader)
    fleet.kill9("web")
    redis.stop()
    time.sleep(3)
    redis.start()
    fleet.restart("web")
    wait_for(lambda: clipped(pg_app, batch), BOUND, "round 2 (daemon, web, Redis)", fleet)
    fleet.restart(leader)
    verify()

    # 3. Redis paused, every database connection terminated, a worker frozen past its heartbeat
    batch = submit()
    frozen = freeze_a_running_worker(fleet, pg_address, pg_schema)
    redis.client().execute_command("CLIENT", "PAUSE", "3000", "ALL")
    with connect(pg_address, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    time.sleep(HEARTBEAT_TIMEOUT + 7)  # past the heartbeat timeout and the process manager's next check
    fleet.signal(frozen, signal.SIGCONT)
    wait_for(lambda: clipped(pg_app, batch), BOUND, "round 3 (Redis paused, connections cut, SIGSTOP)", fleet)
    # the frozen worker learnt that its attempt was superseded (and so wrote nothing late)
    frozen_log = (fleet.logs / f"{frozen}.log").read_text()
    assert "lost its work to a newer one" in frozen_log or "superseded" in frozen_log, fleet.tails()

    verify()
    assert httpx.get(web + "/readyz", timeout=10).status_code == 200


def _caught_up(app: HeatersApplication, address: DatabaseAddress, head: int) -> bool:
    from projections.status import projection_status

    return all(p.position >= head for p in projection_status(app, address) if "__" not in p.name)
