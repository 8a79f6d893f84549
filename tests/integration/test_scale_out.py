"""Many processes, one database: two web processes (no projection daemon of their own), two projection
daemons (one leads), the process manager and two workers serving the ingest and media queues, all
separate ``heaters`` processes on one PostgreSQL and a Redis of the test's own, the way the Procfile runs
them. Over HTTP: a session opened on one web process works on the other, failed logins on both count
against one limit, a clip leased to a reviewer through one is never served to another through the
other, and a review action answered by one is visible through the other at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness import free_port
from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from projections.runner import catch_up
from tests.integration.fleet import Fleet, answers, fleet_env, live_daemons, wait_for
from tests.integration.pipeline_support import known_cuts_video
from tests.integration.redis_server import OwnRedis
from tests.security.web_support import PASSWORD, login
from web.auth import add_user

pytestmark = pytest.mark.integration

SECRET = "one-secret-for-every-web-process"


class Site:
    """The fleet and the two web processes' addresses."""

    def __init__(self, fleet: Fleet, a: str, b: str) -> None:
        self.fleet, self.a, self.b = fleet, a, b


@pytest.fixture
def site(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[Site]:
    """All the processes started at once (the event store's tables exist: ``pg_app`` made them)."""
    redis = OwnRedis(tmp_path / "redis")
    redis.start()
    env = fleet_env(
        pg_address, pg_schema, redis.url, tmp_path / "fleet",
        redis_namespace="scale-out", web_secret=SECRET, login_failure_limit="5",
    )  # fmt: skip
    fleet = Fleet(env, tmp_path / "logs")
    catch_up(pg_app, pg_address)  # the read-model tables exist before the daemons race to them
    ports = free_port(), free_port()
    try:
        for name, port in zip(("web-a", "web-b"), ports, strict=True):
            fleet.start(name, "up", "--host", "127.0.0.1", "--port", str(port), "--no-pipeline",
                        "--no-worker", "--no-projections")  # fmt: skip
        for n in (1, 2):
            fleet.start(f"daemon-{n}", "up", "--no-web", "--no-pipeline", "--no-worker")
        fleet.start("process-manager", "process-manager")
        for n in (1, 2):
            fleet.start(f"worker-{n}", "worker", "--queue", "ingest", "--queue", "media", "--threads", "2")
        a, b = (f"http://127.0.0.1:{port}" for port in ports)
        for url in (a, b):
            wait_for(lambda url=url: answers(url + "/healthz"), 60, f"the web process at {url}", fleet)
        yield Site(fleet, a, b)
    finally:
        fleet.stop()
        redis.stop()


def _csrf(client: httpx.Client) -> dict[str, str]:
    return {"x-csrftoken": client.cookies.get("csrftoken") or ""}


def _on(base: str, like: httpx.Client) -> httpx.Client:
    """A client of the web process at ``base`` carrying ``like``'s cookies (the same browser)."""
    return httpx.Client(base_url=base, cookies=like.cookies, timeout=30)


def _next(client: httpx.Client, count: int) -> list[dict[str, Any]]:
    response = client.get("/api/review/next", params={"count": count})
    assert response.status_code == 200, response.text
    clips: list[dict[str, Any]] = response.json()["clips"]
    return clips


def _act(client: httpx.Client, clip: dict[str, Any], action: str, **body: Any) -> httpx.Response:
    return client.post(
        f"/api/clips/{clip['id']}/{action}", json={"seen": clip["version"], **body}, headers=_csrf(client)
    )


def test_many_processes_share_sessions_limits_leases_and_read_your_writes(
    site: Site, pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    fleet = site.fleet
    for name in ("rita", "ruth", "lena"):
        add_user(pg_address, pg_schema, name, "reviewer", PASSWORD)
    videos = [pg_app.submit(str(known_cuts_video(tmp_path / f"v{n}.mp4")), "user:ops") for n in range(2)]
    wait_for(
        lambda: all(pg_app.get_video(v).state == "clipped" for v in videos), 90,
        "both videos clipped by the two workers", fleet,
    )  # fmt: skip
    wait_for(lambda: [leader for _, leader in live_daemons(pg_address, pg_schema)].count(True) == 1 and
             len(live_daemons(pg_address, pg_schema)) == 2, 15, "two live daemons, one leading", fleet)  # fmt: skip
    # the work was shared: each video's stages ran on the workers' processes, no web process ran any
    assert not any("stage " in (fleet.logs / f"web-{x}.log").read_text() for x in "ab"), fleet.tails()

    with (
        httpx.Client(base_url=site.a, timeout=30) as rita_a,
        httpx.Client(base_url=site.b, timeout=30) as ruth_b,
    ):
        # A session opened on A works on B (and the CSRF token it got on A is good on B).
        assert login(rita_a, "rita").status_code == 303
        rita_b = _on(site.b, rita_a)
        assert rita_b.get("/api/review/pending").json() == {"pending": 6}
        assert httpx.get(site.b + "/api/review/pending").status_code == 401

        # Leases are shared: what A leased to rita, B never serves to ruth, nor lets her decide.
        mine = _next(rita_a, 3)
        assert len(mine) == 3
        assert login(ruth_b, "ruth").status_code == 303
        theirs = _next(ruth_b, 10)
        assert {c["id"] for c in theirs}.isdisjoint({c["id"] for c in mine})
        assert len(theirs) == 3, theirs
        refused = _act(ruth_b, mine[0], "approve")
        assert refused.status_code == 409 and "rita" in refused.json()["error"], refused.text
        ruth_a = _on(site.a, ruth_b)

        # Read-your-writes across processes: once A (or B) answers, the other shows the decision.
        for actor, other, clip, action in (
            (rita_a, ruth_b, mine[0], "approve"),
            (ruth_b, rita_a, theirs[0], "archive"),
            (rita_a, ruth_b, mine[1], "skip"),
            (ruth_a, rita_b, theirs[1], "approve"),
        ):
            answer = _act(actor, clip, action)
            assert answer.status_code == 200 and answer.json()["caught_up"] is True, answer.text
            seen = other.get(f"/api/clips/{clip['id']}").json()
            expected = {"approve": "approved", "archive": "archived", "skip": "skipped"}[action]
            assert seen["state"] == expected, (action, seen)
            assert other.get("/api/review/pending").json()["pending"] == answer.json()["pending"]
        split = _act(rita_a, mine[2], "split", frame=(mine[2]["start_frame"] + mine[2]["end_frame"]) // 2)
        assert split.status_code == 200 and split.json()["caught_up"] is True, split.text
        assert ruth_b.get(f"/api/clips/{mine[2]['id']}").json()["live"] is False
        # (rita looks through B: ruth opening a half by its link would take it, as a bookmark does)
        halves = [rita_b.get(f"/api/clips/{c}").json() for c in split.json()["new_clip_ids"]]
        assert [(h["state"], h["live"]) for h in halves] == [("pending_review", True)] * 2
        # the halves are rita's to review (leased to her by A): B does not serve them to ruth
        assert {c["id"] for c in _next(ruth_b, 10)}.isdisjoint(split.json()["new_clip_ids"])

        # Logging out on B ends the session on A too.
        assert rita_b.post("/logout", headers=_csrf(rita_b)).status_code == 303
        assert rita_a.get("/api/review/pending").status_code == 401
        rita_b.close()
        ruth_a.close()

    # The login limiter is shared: 3 failures on A and 2 on B reach the limit of 5 on either.
    started = time.monotonic()
    for base, failures in ((site.a, 3), (site.b, 2)):
        for _ in range(failures):
            with httpx.Client(base_url=base, timeout=30) as client:
                assert login(client, "lena", "wrong password, not hers").status_code == 401
    for base in (site.b, site.a):
        with httpx.Client(base_url=base, timeout=30) as client:
            refused_login = login(client, "lena")
            assert refused_login.status_code == 429, refused_login.text[:300]
    assert time.monotonic() - started < 60  # all within the limiter's window
