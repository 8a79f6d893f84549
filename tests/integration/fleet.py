"""Heaters services run as separate processes, the way production runs them (the Procfile): one
``heaters`` command each, on one PostgreSQL and a Redis of the test's own, each logging to a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from psycopg import sql

from infra.database import DatabaseAddress, connect

HEATERS = str(Path(sys.executable).with_name("heaters"))


def fleet_env(
    address: DatabaseAddress, schema: str, redis_url: str, tmp_path: Path, **settings: str
) -> dict[str, str]:
    """The environment of every process of a fleet: this test's database schema and Redis, media in
    ``tmp_path``, no HEATERS_* setting of the caller's; ``settings`` adds ``HEATERS_<NAME>`` values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    env |= {
        "HEATERS_HOME": str(tmp_path / "home"),
        "HEATERS_MEDIA_DIR": str(tmp_path / "media"),
        "HEATERS_DATABASE_URL": f"postgresql://{address.user}:@/{address.dbname}?host={address.host}",
        "HEATERS_DATABASE_SCHEMA": schema,
        "HEATERS_REDIS_URL": redis_url,
        "HEATERS_METRICS_PORT": "0",
    }
    env |= {f"HEATERS_{name.upper()}": value for name, value in settings.items()}
    return env


class Fleet:
    """The Heaters services as processes, by name; each logs to its own file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.commands: dict[str, list[str]] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.commands[name] = list(args)
        handle = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen([HEATERS, *args], env=self.env, stdout=handle, stderr=handle)
        self.processes[name] = process
        return process

    def restart(self, name: str) -> None:
        self.start(name, *self.commands[name])

    def kill9(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def signal(self, name: str, signum: int) -> None:
        self.processes[name].send_signal(signum)

    def by_pid(self, pid: int) -> str:
        return next(n for n, p in self.processes.items() if p.pid == pid)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:] for p in sorted(self.logs.glob("*.log"))
        )


def wait_for(condition: Callable[[], bool], timeout: float, what: str, fleet: Fleet) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout:.0f} s\n{fleet.tails()}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def live_daemons(address: DatabaseAddress, schema: str) -> list[tuple[str, bool]]:
    """The projection daemons that beat within the last 5 seconds: their ids (``host:pid``) and
    whether each leads, by id."""
    with connect(address, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT id, leader FROM {} WHERE heartbeat_at > now() - interval '5 seconds' ORDER BY id"
            ).format(sql.Identifier(schema, "projection_daemons"))
        ).fetchall()
    return [(str(r[0]), bool(r[1])) for r in rows]
