"""Review under load: concurrent reviewers (HTTP clients on loopback) against the real web app.

    python -m bench.review_load [--reviewers 20] [--seconds 60] [--out bench/results/review_load.json]

Starts an embedded PostgreSQL, the web app under uvicorn and the projection daemon, fills the review
queue with clips, then lets each reviewer log in and loop: fetch the next clip (the page's JSON call),
and approve / skip / archive / split / merge / undo it. Prints p50/p95/p99 per action and for the next
clip, counts conflicts (expected when two reviewers race) and other errors (must be zero), and checks
afterwards that the event store holds exactly the events the successful actions imply. The baseline is
the same action through the application service directly (no HTTP, no read models), in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.queues
import random
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress, embedded_postgres, eventsourcing_env
from infra.object_storage import LocalObjectStorage
from infra.schema import prepare_schema
from projections.runner import ProjectionDaemon, catch_up
from web.app import create_app
from web.auth import add_user

SCHEMA = "bench"
PASSWORD = "review-load-password"
#: Events a successful action stores (undo varies: at least one).
EVENTS_PER_ACTION = {"approve": 1, "skip": 1, "archive": 1, "split": 6, "merge": 5}


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latencies": dict(self.latencies),
            "outcomes": [[a, o, n] for (a, o), n in self.outcomes.items()],
            "errors": self.errors,
            "refusals": self.refusals,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        tally = cls()
        tally.latencies.update(data["latencies"])
        tally.outcomes.update({(a, o): n for a, o, n in data["outcomes"]})
        tally.errors, tally.refusals = list(data["errors"]), list(data["refusals"])
        return tally

    def record(self, action: str, seconds: float, outcome: str, detail: str = "") -> None:
        with self.lock:
            self.latencies[action].append(seconds)
            self.outcomes[(action, outcome)] += 1
            if outcome == "error":
                self.errors.append(f"{action}: {detail}")
            elif outcome in ("conflict", "refused") and len(self.refusals) < 200:
                self.refusals.append(f"{action} {outcome}: {detail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill_queue(app: HeatersApplication, videos: int, clips_per_video: int) -> None:
    """Videos whose shots are detected (no media work): many clips pending review."""
    actor = "stage:bench"
    for _ in range(videos):
        frames = clips_per_video * 100
        video_id = app.submit("/bench/video.mp4", "user:bench")
        attempt = app.start_video_stage(video_id, "download", actor)
        app.record_downloaded(
            video_id, attempt, actor, media_key="bench/source.mp4", title="load test", original_url=None,
            checksum="0" * 64, duration=frames / 25, fps=25.0, frame_count=frames, width=640, height=360,
            codec="h264",
        )  # fmt: skip
        app.record_proxy(
            video_id, app.start_video_stage(video_id, "proxy", actor), "bench/p.mp4", 640, 360, actor
        )
        app.record_sprites(video_id, app.start_video_stage(video_id, "sprites", actor), "bench/m.json", actor)
        cuts = list(range(100, frames, 100))
        app.record_shots(video_id, app.start_video_stage(video_id, "shots", actor), cuts, "bench", {}, actor)


def _reviewers(base: str, names: list[str], seconds: float, results: Any) -> None:
    """The client process: one thread per reviewer; sends the tally back when time is up."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_reviewer, args=(base, name, deadline, tally, i))
        for i, name in enumerate(names)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(tally.as_dict())


def _reviewer(base: str, name: str, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=30.0, follow_redirects=False) as client:
        client.get("/login")
        token = client.cookies.get("csrftoken", "")
        login = client.post(
            "/login", data={"name": name, "password": PASSWORD, "next": "/review", "_csrf_token": token}
        )
        if login.status_code != 303:
            tally.record("login", 0.0, "error", f"{name}: HTTP {login.status_code}")
            return
        headers = {"x-csrftoken": client.cookies.get("csrftoken") or ""}
        done: list[str] = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.get("/api/review/next", params={"count": 1})
            tally.record("next clip", time.perf_counter() - started, "ok" if response.is_success else "error")
            clips = response.json().get("clips", []) if response.is_success else []
            if not clips:
                time.sleep(0.05)
                continue
            clip = clips[0]
            action = rng.choices(
                ["approve", "skip", "archive", "split", "merge", "undo"], weights=[5, 2, 2, 2, 1, 1]
            )[0]
            target, body = clip["id"], None
            if action == "split":
                body = {"frame": (clip["start_frame"] + clip["end_frame"]) // 2}
            if action == "undo" and done:
                target = done[-1]
            started = time.perf_counter()
            response = client.post(f"/api/clips/{target}/{action}", json=body, headers=headers)
            seconds = time.perf_counter() - started
            if response.is_success:
                tally.record(action, seconds, "ok")
                if action == "undo":
                    done.pop()
                else:
                    done.append(target)
            elif response.status_code == 409:
                tally.record(action, seconds, "conflict", response.json().get("error", ""))
            elif response.status_code == 422:  # a rule said no (e.g. merge of a first clip)
                tally.record(action, seconds, "refused", response.json().get("error", ""))
            else:
                tally.record(action, seconds, "error", f"HTTP {response.status_code}: {response.text[:200]}")


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] * 1000 if values else 0.0
        return v, v, v
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000


def _baseline(app: HeatersApplication, rounds: int) -> list[float]:
    """Approve latency through the application service alone."""
    _fill_queue(app, 1, rounds)
    clips = [c.id for c in app.clips_of(app.video_ids()[-1])]
    latencies = []
    for clip_id in clips:
        started = time.perf_counter()
        app.approve(clip_id, "user:baseline")
        latencies.append(time.perf_counter() - started)
    return latencies


def run(reviewers: int, seconds: float, out: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, embedded_postgres(Path(tmp)) as address:
        prepare_schema(address, SCHEMA)
        return _run(address, Path(tmp), reviewers, seconds, out)


def _run(address: DatabaseAddress, tmp: Path, reviewers: int, seconds: float, out: Path) -> dict[str, Any]:
    settings = Settings(home=tmp / "home", database_schema=SCHEMA)
    app = HeatersApplication(env=eventsourcing_env(address, SCHEMA, pool_size=reviewers + 5))
    _fill_queue(app, videos=reviewers, clips_per_video=150)
    baseline = _baseline(app, 200)
    names = [f"reviewer{i}" for i in range(reviewers)]
    web = create_app(settings, app, address, LocalObjectStorage(tmp / "media"))
    for name in names:
        add_user(address, SCHEMA, name, "reviewer", PASSWORD)
    catch_up(address, SCHEMA)
    daemon = ProjectionDaemon(address, SCHEMA)
    daemon.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    events_before = app.recorder.max_notification_id() or 0
    # The reviewers run in another process, so that they do not share the server's interpreter lock.
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    clients = context.Process(target=_reviewers, args=(f"http://127.0.0.1:{port}", names, seconds, results))
    clients.start()
    tally = Tally.from_dict(results.get(timeout=seconds + 120))
    clients.join(30)
    server.should_exit = True
    thread.join(10)
    daemon.stop()

    stored: Counter[str] = Counter()
    for event in app.iter_events(start=events_before + 1):
        stored[getattr(event, "actor", "")] += 1
    ok = Counter({a: n for (a, o), n in tally.outcomes.items() if o == "ok"})
    expected_min = sum(EVENTS_PER_ACTION.get(a, 1) * n for a, n in ok.items() if a != "next clip")
    expected_exact = sum(EVENTS_PER_ACTION[a] * n for a, n in ok.items() if a in EVENTS_PER_ACTION)
    user_events = sum(n for actor, n in stored.items() if actor.startswith("user:reviewer"))
    undo_events = user_events - expected_exact
    consistent = user_events >= expected_min and undo_events >= ok["undo"]
    app.close()

    rows: list[dict[str, Any]] = []
    print(f"\nreview under load: {reviewers} reviewers for {seconds:.0f} s on loopback\n")
    print(
        f"{'action':<11}{'ok':>7}{'conflict':>10}{'refused':>9}{'error':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    )
    for action in ["next clip", "approve", "skip", "archive", "split", "merge", "undo"]:
        p50, p95, p99 = _percentiles(tally.latencies.get(action, []))
        counts = {o: tally.outcomes[(action, o)] for o in ("ok", "conflict", "refused", "error")}
        rows.append({"action": action, **counts, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99})
        print(
            f"{action:<11}{counts['ok']:>7}{counts['conflict']:>10}{counts['refused']:>9}{counts['error']:>7}"
            f"{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}"
        )
    b50, b95, b99 = _percentiles(baseline)
    approve_p50 = float(next(r["p50_ms"] for r in rows if r["action"] == "approve"))
    print(f"{'baseline':<11}{len(baseline):>7}{'':>10}{'':>9}{'':>7}{b50:>9.1f}{b95:>9.1f}{b99:>9.1f}")
    print(
        f"\napprove p50 over HTTP (with read-your-writes) / application service alone: "
        f"{approve_p50 / b50:.1f}x"
    )
    print(f"errors other than conflicts: {len(tally.errors)}")
    print(f"events stored by reviewers: {user_events}; implied by successful actions: >= {expected_min}")
    print(f"event count consistent: {consistent}")
    report = {
        "reviewers": reviewers,
        "seconds": seconds,
        "rows": rows,
        "baseline_approve_ms": {"p50": b50, "p95": b95, "p99": b99},
        "errors": tally.errors[:50],
        "conflicts_and_refusals": tally.refusals,
        "events_stored_by_reviewers": user_events,
        "events_implied_min": expected_min,
        "event_count_consistent": consistent,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/review_load.json"))
    args = parser.parse_args(argv)
    run(args.reviewers, args.seconds, args.out)


if __name__ == "__main__":
    main()
