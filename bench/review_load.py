"""Review under load: concurrent reviewers (HTTP clients on loopback) against the real web app.

    python -m bench.review_load [--reviewers 20] [--seconds 60] [--rate 1.0] [--daemon-process] [--server-cpu]
                                [--out bench/results/review_load.json]

Starts an embedded PostgreSQL, the web app under uvicorn and the projection daemon, fills the review
queue with clips, then lets each reviewer log in and loop: fetch the next clip (the page's JSON call),
and approve / skip / archive / split / merge / undo it. Closed loop (the default): each reviewer acts
again as soon as the answer comes, so the actions per second are the saturation throughput. Open loop
(``--rate R``): each reviewer acts R times a second on a fixed schedule whatever the answers, the way
people work; an action's latency then counts from its scheduled time, so a late start is not hidden.
The server side is timed too: the command (event store), the read-your-writes wait and the whole
action, per action; and profiled: per action kind and per next-clip fetch, the SQL statements sent
(counted at psycopg's cursor, pipelined ones included), their round-trip time and the serving
thread's CPU time, the statements outside the handlers (sessions) and the in-process daemon's, and
the CPU per action of each process, PostgreSQL's split by whom it served (the web process's backends,
the daemon's, the background processes; per backend from /proc/PID/schedstat) and, with
``--server-cpu``, per statement the web process sends. The reviewers are plain ``http.client``
connections (kept alive), so that the clients take little of the CPU the server under test needs.
Prints p50/p95/p99 per action and for the next clip, counts conflicts (expected when two reviewers
race) and other errors (must be zero), and checks afterwards that the event store holds exactly the events the successful actions imply. The baseline is
the same action through the application service directly (no HTTP, no read models), in the same run.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import multiprocessing.queues
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.harness import arguments, process_cpu_seconds, serve, write_report
from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress, embedded_postgres, eventsourcing_env
from infra.object_storage import LocalObjectStorage
from infra.schema import prepare_schema
from projections.read_your_writes import close_listeners
from projections.runner import ProjectionDaemon, catch_up
from web.app import create_app
from web.auth import add_user
from web.review import Projections, Review
from web.security import server_options

SCHEMA = "bench"
PASSWORD = "review-load-password"
#: Events a successful action stores (undo varies: at least one).
EVENTS_PER_ACTION = {"approve": 1, "skip": 1, "archive": 1, "split": 6, "merge": 5}
ACTIONS = ("approve", "skip", "archive", "split", "merge", "undo")


@dataclass
class ServerTimes:
    """Seconds spent in the web process per action: in the command, waiting for read-your-writes,
    and in the whole ``Review.act``."""

    parts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, part: str, seconds: float) -> None:
        with self.lock:
            self.parts[part].append(seconds)

    def timed(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - started)

        return wrapper


class Statements:
    """Every SQL statement this process sends (psycopg's ``Cursor.execute``/``executemany``), counted
    and timed (the round trip: the server's work plus the wire) by where it was sent from: inside a
    review action (``Review.act``, per action), a next-clip fetch (``Review.next``), the projection
    daemon's thread, or elsewhere in a request (sessions, middleware). Also the CPU time of the thread
    running each action or fetch (``time.thread_time``: its own work, not waiting for the lock)."""

    def __init__(self, server_cpu: bool = False) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.count: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        #: with ``server_cpu``: per statement text (a pipeline: its statements joined), how often it was
        #: sent and the CPU its backend used meanwhile (nanoseconds, from /proc/PID/schedstat)
        self.server_cpu = server_cpu
        self.by_text: Counter[str] = Counter()
        self.backend_ns: Counter[str] = Counter()
        self._undo: list[Callable[[], None]] = []

    def scope(self) -> str:
        scope = getattr(self.local, "scope", None)
        if scope is not None:
            return str(scope)
        return "daemon" if threading.current_thread().name.startswith("projections-") else "other"

    def install(self) -> None:
        import psycopg

        for name in ("execute", "executemany"):
            original = getattr(psycopg.Cursor, name)
            setattr(psycopg.Cursor, name, self._counted(original))
            self._undo.append(partial(setattr, psycopg.Cursor, name, original))
        execute = psycopg.AsyncCursor.execute  # the session store's reads, on the event loop
        psycopg.AsyncCursor.execute = self._counted_async(execute)  # type: ignore[method-assign]
        self._undo.append(partial(setattr, psycopg.AsyncCursor, "execute", execute))
        if self.server_cpu:
            pipeline = psycopg.Connection.pipeline
            psycopg.Connection.pipeline = self._timed_pipeline(pipeline)  # type: ignore[method-assign]
            self._undo.append(partial(setattr, psycopg.Connection, "pipeline", pipeline))

    def _counted(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            timed = self.server_cpu and cursor.connection._pipeline is None
            backend = _backend_ns(cursor.connection.info.backend_pid) if timed else 0
            try:
                return original(cursor, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                scope = self.scope()
                if self.server_cpu:
                    text = _statement_text(cursor.connection, args[0] if args else kwargs.get("query"))
                    if timed:
                        used = _backend_ns(cursor.connection.info.backend_pid) - backend
                        with self.lock:
                            self.by_text[text] += 1
                            self.backend_ns[text] += used
                    else:  # sent in a pipeline: its backend's CPU is counted when the pipeline ends
                        getattr(self.local, "piped", []).append(text)
                with self.lock:
                    self.count[scope] += 1
                    self.seconds[scope] += elapsed

        return counted

    def _counted_async(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(cursor, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                scope = self.scope()
                with self.lock:
                    self.count[scope] += 1
                    self.seconds[scope] += elapsed

        return counted

    def _timed_pipeline(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @contextmanager
        def pipeline(conn: Any) -> Iterator[Any]:
            outermost = conn._pipeline is None
            if outermost:
                self.local.piped = []
                backend = _backend_ns(conn.info.backend_pid)
            with original(conn) as piped:
                yield piped
            if outermost:
                used = _backend_ns(conn.info.backend_pid) - backend
                text = "pipeline: " + " + ".join(Counter(self.local.piped))
                self.local.piped = []
                with self.lock:
                    self.by_text[text] += 1
                    self.backend_ns[text] += used

        return pipeline

    def uninstall(self) -> None:
        for undo in self._undo:
            undo()

    def scoped(self, scope_of: Callable[..., str], function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` with its statements and thread CPU counted under ``scope_of(*args)``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = scope_of(*args, **kwargs)
            self.local.scope = scope
            cpu = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.local.scope = None
                with self.lock:
                    self.cpu[scope] += time.thread_time() - cpu
                    self.calls[scope] += 1

        return wrapper

    def reset(self) -> None:
        with self.lock:
            for counts in (self.count, self.seconds, self.cpu, self.calls, self.by_text, self.backend_ns):
                counts.clear()


def _backend_ns(pid: int) -> int:
    """Nanoseconds process ``pid`` (a PostgreSQL backend on this machine) has run on a CPU so far
    (the scheduler's own account, not sampled at clock ticks; 0 when it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_bytes().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _statement_text(conn: Any, query: Any) -> str:
    """A statement's first words, whitespace collapsed (a composed one rendered)."""
    if query is None:
        return "?"
    if not isinstance(query, str | bytes):
        try:
            query = query.as_string(conn)
        except Exception:
            return type(query).__name__
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    return " ".join(query.split())[:90]


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    client_cpu: float = 0.0  # CPU seconds of the reviewers' process while measured
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latencies": dict(self.latencies),
            "outcomes": [[a, o, n] for (a, o), n in self.outcomes.items()],
            "errors": self.errors,
            "refusals": self.refusals,
            "client_cpu": self.client_cpu,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        tally = cls()
        tally.latencies.update(data["latencies"])
        tally.outcomes.update({(a, o): n for a, o, n in data["outcomes"]})
        tally.errors, tally.refusals = list(data["errors"]), list(data["refusals"])
        tally.client_cpu = float(data.get("client_cpu", 0.0))
        return tally

    def record(self, action: str, seconds: float, outcome: str, detail: str = "") -> None:
        with self.lock:
            self.latencies[action].append(seconds)
            self.outcomes[(action, outcome)] += 1
            if outcome == "error":
                self.errors.append(f"{action}: {detail}")
            elif outcome in ("conflict", "refused") and len(self.refusals) < 200:
                self.refusals.append(f"{action} {outcome}: {detail}")


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


def _reviewers(base: str, names: list[str], seconds: float, rate: float | None, results: Any) -> None:
    """The client process: one thread per reviewer; sends the tally back when time is up."""
    tally = Tally()
    # every reviewer logs in (argon2: CPU-heavy) before anyone acts, and the clock starts then
    deadlines: list[float] = []
    cpu: list[float] = []

    def start() -> None:
        deadlines.append(time.monotonic() + seconds)
        cpu.append(sum(os.times()[:2]))
        results.put({"started": True})

    ready = threading.Barrier(len(names), action=start)
    threads = [
        threading.Thread(target=_reviewer, args=(base, name, ready, deadlines, tally, i, rate))
        for i, name in enumerate(names)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.client_cpu = sum(os.times()[:2]) - cpu[0] if cpu else 0.0
    results.put(tally.as_dict())


@dataclass
class Answer:
    """What :class:`Client` got back: the status and the body."""

    status_code: int
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """A reviewer's browser, as cheap as it can be: one kept-alive ``http.client`` connection with
    its cookies. httpx took about 1 ms of CPU per request here (its models, cookie jar, URL parsing), a
    third of the machine's CPU per action at saturation, taken from the server under test."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=timeout
        )
        self.cookies: dict[str, str] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            self.connection.request(method, path, body, sent)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # the server closed the kept-alive connection while it was idle (uvicorn: after 5 s), before
            # reading this request: send it again on a new one
            self.connection.close()
            self.connection.request(method, path, body, sent)
            response = self.connection.getresponse()
        content = response.read()
        for header in response.headers.get_all("set-cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] in ("0", "-1") or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return Answer(response.status, content)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post_json(self, path: str, data: Any, headers: dict[str, str]) -> Answer:
        if data is None:
            return self.request("POST", path, None, headers)
        return self.request(
            "POST", path, json.dumps(data).encode(), {**headers, "Content-Type": "application/json"}
        )

    def post_form(self, path: str, data: dict[str, str]) -> Answer:
        body = urlencode(data).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})


def _reviewer(
    base: str,
    name: str,
    ready: threading.Barrier,
    deadlines: list[float],
    tally: Tally,
    seed: int,
    rate: float | None,
) -> None:
    """One reviewer: closed loop (``rate`` None: act again at once) or open loop (``rate`` actions a
    second on a fixed schedule, latency counted from the scheduled time)."""
    rng = random.Random(seed)
    with Client(base) as client:
        client.get("/login")
        token = client.cookies.get("csrftoken", "")
        login = client.post_form(
            "/login", {"name": name, "password": PASSWORD, "next": "/review", "_csrf_token": token}
        )
        ready.wait(120)
        if login.status_code != 303:
            tally.record("login", 0.0, "error", f"{name}: HTTP {login.status_code}")
            return
        deadline = deadlines[0]
        headers = {"x-csrftoken": client.cookies.get("csrftoken") or ""}
        done: list[str] = []
        period = 1.0 / rate if rate else 0.0
        tick = time.perf_counter() + rng.random() * period  # reviewers out of phase
        while time.monotonic() < deadline:
            late = 0.0  # open loop: how long after its scheduled time this round starts
            if rate:
                wait = tick - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                else:
                    late = -wait
                    tally.record("late start", late, "ok")
                tick += period
            started = time.perf_counter()
            response = client.get("/api/review/next?count=1")
            tally.record(
                "next clip", late + time.perf_counter() - started, "ok" if response.is_success else "error"
            )
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
            response = client.post_json(f"/api/clips/{target}/{action}", body, headers)
            seconds = late + time.perf_counter() - started
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


def _postgres_cpu(datadir: Path) -> float:
    """CPU seconds used so far by the PostgreSQL processes serving ``datadir`` (the embedded server
    and its backends, read from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    postmasters = set()
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if str(datadir).encode() in cmdline:
            postmasters.add(int(entry.name))
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return sum(cpu for pid, (parent, cpu) in stats.items() if pid in postmasters or parent in postmasters)


def _postgres_ns(datadir: Path) -> dict[int, int]:
    """By PostgreSQL process serving ``datadir``: nanoseconds on a CPU so far (the postmaster as -1)."""
    parents: dict[int, int] = {}
    servers: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if str(datadir).encode() in cmdline:
            servers.add(int(entry.name))
    used = {pid: _backend_ns(pid) for pid, parent in parents.items() if parent in servers}
    used[-1] = sum(_backend_ns(pid) for pid in servers)
    return used


def _postgres_by_role(
    address: DatabaseAddress, before: dict[int, int], after: dict[int, int]
) -> dict[str, float]:
    """PostgreSQL's CPU seconds between two :func:`_postgres_ns` snapshots by what each process served:
    the web process's backends, the daemon's (``PGAPPNAME=bench-daemon``), the read-your-writes
    listener's, each background kind (WAL writer, autovacuum worker, ...), the postmaster; a process
    gone by now counts as ``exited`` (its CPU up to the last snapshot it was in is not known)."""
    from infra.database import connect

    with connect(address, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, backend_type, coalesce(application_name, '') FROM pg_stat_activity"
        ).fetchall()
    role: dict[int, str] = {-1: "postmaster"}
    for pid, kind, name in rows:
        if kind == "client backend":
            kind = {"bench-daemon": "daemon's backends", "heaters-positions-listener": "listener"}.get(
                name, "web's backends"
            )
        role[int(pid)] = str(kind)
    used: Counter[str] = Counter()
    for pid, ns in after.items():
        used[role.get(pid, "exited")] += ns - before.get(pid, 0)
    return {kind: ns / 1e9 for kind, ns in used.most_common()}


def _process_cpu(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (0 without one)."""
    return 0.0 if pid is None else process_cpu_seconds(pid)


def _scope_profile(statements: Statements, scope: str) -> dict[str, float]:
    """Per call of ``scope``: statements, their round-trip ms and the thread's CPU ms."""
    calls = max(statements.calls[scope], 1)
    return {
        "n": statements.calls[scope],
        "statements": statements.count[scope] / calls,
        "statement_ms": statements.seconds[scope] * 1000 / calls,
        "thread_cpu_ms": statements.cpu[scope] * 1000 / calls,
    }


def _print_profile(
    statements: Statements,
    tally: Tally,
    cpu: dict[str, float],
    baseline: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    """The cost of each kind of request in the web process: statements sent and their round trips,
    and the CPU of the thread serving it; then what requests cost outside the handlers (sessions,
    middleware), the projection daemon's statements, and CPU per action of each process."""
    answered = sum(n for (a, o), n in tally.outcomes.items() if a in ACTIONS and o != "error")
    fetches = sum(n for (a, o), n in tally.outcomes.items() if a == "next clip")
    requests = max(answered + fetches, 1)
    print(f"\n{'cost per request (web process)':<32}{'n':>7}{'statements':>12}{'stmt ms':>9}{'CPU ms':>8}")
    rows: dict[str, Any] = {}
    for scope in [*ACTIONS, "next clip"]:
        row = rows[scope] = _scope_profile(statements, scope)
        print(
            f"{scope:<32}{row['n']:>7}{row['statements']:>12.1f}{row['statement_ms']:>9.2f}"
            f"{row['thread_cpu_ms']:>8.2f}"
        )
    print(
        f"{'baseline approve (service)':<32}{baseline['n']:>7}{baseline['statements']:>12.1f}"
        f"{baseline['statement_ms']:>9.2f}{baseline['thread_cpu_ms']:>8.2f}"
    )
    rows["baseline approve (service)"] = baseline
    outside = rows["outside handlers, per request"] = {
        "n": requests,
        "statements": statements.count["other"] / requests,
        "statement_ms": statements.seconds["other"] * 1000 / requests,
    }
    print(
        f"{'outside handlers, per request':<32}{requests:>7}{outside['statements']:>12.1f}"
        f"{outside['statement_ms']:>9.2f}"
    )
    handled = sum(statements.count[s] for s in [*ACTIONS, "next clip"])
    web_statements = (handled + statements.count["other"]) / max(answered, 1)
    daemon = rows["daemon, per action"] = {
        "statements": statements.count["daemon"] / max(answered, 1),
        "statement_ms": statements.seconds["daemon"] * 1000 / max(answered, 1),
    }
    print(
        f"{'daemon (in this process), per action':<39}{daemon['statements']:>12.1f}{daemon['statement_ms']:>9.2f}"
    )
    per_action = {who: used * 1000 / max(answered, 1) for who, used in cpu.items()}
    rows["web statements per action with its fetch"] = web_statements
    rows["cpu_ms_per_action"] = per_action
    print(f"web statements per action with its next-clip fetch: {web_statements:.1f}")
    print(
        "CPU ms per action with its fetch: "
        + ", ".join(f"{who} {ms:.1f}" for who, ms in per_action.items())
        + f" ({answered / seconds:.1f} actions/s)"
    )
    return rows


def _print_server_cpu(statements: Statements, roles: dict[str, float], answered: int) -> list[dict[str, Any]]:
    """PostgreSQL's CPU per action by whom it served; with ``--server-cpu``, the web's statements (and
    pipelines) by their backend's CPU, most first."""
    per = max(answered, 1)
    print("\nPostgreSQL CPU ms per action, by the process it ran in:")
    for role, used in roles.items():
        print(f"  {role:<28}{used * 1000 / per:7.2f}")
    rows = []
    total = sum(statements.backend_ns.values())
    if statements.server_cpu and total:
        print(
            f"\n{'statements of the web process (backend CPU)':<92}{'per action':>11}{'us each':>9}{'share':>7}"
        )
        for text, ns in statements.backend_ns.most_common(25):
            n = statements.by_text[text]
            rows.append(
                {"statement": text, "per_action": n / per, "backend_us": ns / n / 1000, "share": ns / total}
            )
            print(f"{text[:92]:<92}{n / per:>11.2f}{ns / n / 1000:>9.0f}{100 * ns / total:>6.1f}%")
        print(f"attributed to statements: {total / 1e6 / per:.2f} ms per action")
    return rows


def _spy_summary(path: Path, top: int = 45) -> list[tuple[str, float, float]]:
    """From py-spy's raw (collapsed) stacks: the functions with the largest share of the samples,
    inclusive and self, as (function, inclusive %, self %); printed too."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                  for f in stack.split(";")]  # fmt: skip
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return []
    rows = [(f, 100 * n / total, 100 * own[f] / total) for f, n in inclusive.most_common(top)]
    print(f"\npy-spy: {total} samples of the web process (the thread holding the GIL: its CPU time)")
    for frame, incl, self_share in rows:
        print(f"{incl:6.1f}% {self_share:6.1f}%  {frame}")
    return rows


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


def run(
    reviewers: int,
    seconds: float,
    out: Path,
    rate: float | None = None,
    py_spy: str | None = None,
    daemon_process: bool = False,
    server_cpu: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, embedded_postgres(Path(tmp)) as address:
        prepare_schema(address, SCHEMA)
        try:
            return _run(address, Path(tmp), reviewers, seconds, out, rate, py_spy, daemon_process, server_cpu)
        finally:
            close_listeners()  # the read-your-writes listener, before its server stops


def _daemon_process(address: DatabaseAddress, stop: Any) -> None:
    """A projection daemon in a process of its own, until ``stop`` is set (its connections named
    ``bench-daemon``, so that PostgreSQL's CPU can be told apart by whom it served)."""
    os.environ["PGAPPNAME"] = "bench-daemon"
    app = HeatersApplication(env=eventsourcing_env(address, SCHEMA))
    daemon = ProjectionDaemon(app, address)
    daemon.start()
    stop.wait()
    daemon.stop()
    app.close()


def _time_server(app: HeatersApplication, times: ServerTimes, statements: Statements) -> Callable[[], None]:
    """Time the commands, the read-your-writes wait and ``Review.act`` in this process, and count the
    statements of each action and next-clip fetch; returns the undo."""
    settle, act, next_clips = Projections.settle, Review.act, Review.next
    Projections.settle = times.timed("read-your-writes wait", settle)  # type: ignore[method-assign]
    Review.act = statements.scoped(  # type: ignore[method-assign]
        lambda review, user, clip_id, action, **_: action, times.timed("whole action (server)", act)
    )
    Review.next = statements.scoped(lambda *_, **__: "next clip", next_clips)  # type: ignore[method-assign]
    for command in ("approve", "skip", "archive", "split", "merge_pair", "undo_decision"):
        if hasattr(app, command):  # the commands the review service calls
            setattr(app, command, times.timed("command (event store)", getattr(app, command)))

    def undo() -> None:
        Projections.settle, Review.act, Review.next = settle, act, next_clips  # type: ignore[method-assign]

    return undo


def _run(
    address: DatabaseAddress,
    tmp: Path,
    reviewers: int,
    seconds: float,
    out: Path,
    rate: float | None,
    py_spy: str | None,
    daemon_process_wanted: bool,
    server_cpu: bool,
) -> dict[str, Any]:
    settings = Settings(home=tmp / "home", database_schema=SCHEMA)
    app = HeatersApplication(env=eventsourcing_env(address, SCHEMA, pool_size=reviewers + 5))
    _fill_queue(app, videos=reviewers, clips_per_video=150)
    statements = Statements(server_cpu)
    statements.install()
    service_approve = app.approve
    app.approve = statements.scoped(lambda *_, **__: "baseline", app.approve)  # type: ignore[method-assign]
    baseline = _baseline(app, 200)
    app.approve = service_approve  # type: ignore[method-assign]
    baseline_profile = _scope_profile(statements, "baseline")
    names = [f"reviewer{i}" for i in range(reviewers)]
    times = ServerTimes()
    untime = _time_server(app, times, statements)
    web = create_app(settings, app, address, LocalObjectStorage(tmp / "media"))
    for name in names:
        add_user(address, SCHEMA, name, "reviewer", PASSWORD)
    catch_up(app, address)
    daemon = ProjectionDaemon(app, address)
    context = multiprocessing.get_context("spawn")
    stop_daemon = context.Event()
    daemon_process = None
    if daemon_process_wanted:  # the Procfile's shape: the web process has no daemon of its own
        daemon_process = context.Process(target=_daemon_process, args=(address, stop_daemon))
        daemon_process.start()
    else:
        daemon.start()
    with serve(web, **server_options(settings)) as base:  # as `heaters run web` serves it
        events_before = app.recorder.max_notification_id() or 0
        # The reviewers run in another process, so that they do not share the server's interpreter lock.
        results: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
        clients = context.Process(target=_reviewers, args=(base, names, seconds, rate, results))
        load_before = os.getloadavg()
        clients.start()
        results.get(timeout=300)  # the reviewers are logged in: the measured time starts
        statements.reset()
        daemon_pid = daemon_process.pid if daemon_process is not None else None
        cpu_before = (_postgres_cpu(tmp), sum(os.times()[:2]), _process_cpu(daemon_pid), os.times()[1])
        postgres_before = _postgres_ns(tmp)
        spy = None
        if py_spy:  # samples this process (web app and projection daemon) while the reviewers work
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(os.getpid()), "--duration", str(int(seconds)), "--rate", "250",
                 "--nonblocking", "--gil", "--format", "raw", "--output", str(out.with_suffix(".py-spy.txt"))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        tally = Tally.from_dict(results.get(timeout=seconds + 120))
        cpu = {
            "postgres": _postgres_cpu(tmp) - cpu_before[0],
            "web process": sum(os.times()[:2]) - cpu_before[1],
            "web process, in the kernel": os.times()[1] - cpu_before[3],
            "reviewers (clients)": float(tally.client_cpu),
        }
        if daemon_pid is not None:
            cpu["daemon process"] = _process_cpu(daemon_pid) - cpu_before[2]
        postgres_roles = _postgres_by_role(address, postgres_before, _postgres_ns(tmp))
        statements.uninstall()
        load_after = os.getloadavg()
        clients.join(30)
        if spy is not None:
            spy.wait(60)
        untime()
    daemon.stop()
    if daemon_process is not None:
        stop_daemon.set()
        daemon_process.join(30)

    stored: Counter[str] = Counter()
    for event in app.iter_events(start=events_before + 1):
        stored[getattr(event, "actor", "")] += 1
    ok = Counter({a: n for (a, o), n in tally.outcomes.items() if o == "ok"})
    expected_min = sum(EVENTS_PER_ACTION.get(a, 1) * n for a, n in ok.items() if a in ACTIONS)
    expected_exact = sum(EVENTS_PER_ACTION[a] * n for a, n in ok.items() if a in EVENTS_PER_ACTION)
    user_events = sum(n for actor, n in stored.items() if actor.startswith("user:reviewer"))
    undo_events = user_events - expected_exact
    consistent = user_events >= expected_min and undo_events >= ok["undo"]
    app.close()

    rows: list[dict[str, Any]] = []
    mode = f"open loop, each acting {rate:g} times a second" if rate else "closed loop"
    mode += ", projection daemon in its own process" if daemon_process_wanted else ""
    print(f"\nreview under load: {reviewers} reviewers ({mode}) for {seconds:.0f} s on loopback")
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print("clients: http.client, one kept-alive connection per reviewer (httpx cost ~3x the CPU)\n")
    print(
        f"{'action':<11}{'ok':>7}{'conflict':>10}{'refused':>9}{'error':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    )
    for action in ["next clip", *ACTIONS]:
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
    answered = sum(n for (a, o), n in tally.outcomes.items() if a in ACTIONS and o != "error")
    throughput = answered / seconds
    fetches = sum(n for (a, o), n in tally.outcomes.items() if a == "next clip") / seconds
    late = tally.latencies.get("late start", [])
    print(f"\nactions answered: {throughput:.1f}/s (plus {fetches:.1f} next-clip fetches/s)")
    if rate:
        print(f"rounds that started late (the previous one overran its period): {len(late)}")
    server_ms = {}
    print(f"\n{'in the web process':<26}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for part, values in sorted(times.parts.items()):
        p50, p95, p99 = _percentiles(values)
        server_ms[part] = {"n": len(values), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99}
        print(f"{part:<26}{len(values):>7}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}")
    action_p95 = _percentiles([v for a in ACTIONS for v in tally.latencies.get(a, [])])[1]
    if rate:
        print(f"\np95 of all actions: {action_p95:.1f} ms (target < 50 ms)")
    else:
        print(f"\nsaturation: {throughput:.1f} actions/s (target >= 250)")
    profile_rows = _print_profile(statements, tally, cpu, baseline_profile, seconds)
    server_rows = _print_server_cpu(statements, postgres_roles, answered)
    spied = out.with_suffix(".py-spy.txt")
    profile = _spy_summary(spied) if py_spy and spied.exists() else []
    print(f"\nCPU seconds in the {seconds:.0f} s measured (2 cores = {2 * seconds:.0f} CPU-seconds at most):")
    for who, used in cpu.items():
        print(f"  {who:<28}{used:7.1f}  ({used / max(answered, 1) * 1000:.1f} ms per action answered)")
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
        "mode": "open" if rate else "closed",
        "daemon_process": daemon_process_wanted,
        "rate_per_reviewer": rate,
        "actions_per_second": throughput,
        "next_clips_per_second": fetches,
        "late_starts": len(late),
        "actions_p95_ms": action_p95,
        "server_ms": server_ms,
        "load_average_1min": [load_before[0], load_after[0]],
        "py_spy_top": profile,
        "cpu_seconds": cpu,
        "profile": profile_rows,
        "postgres_cpu_by_role": postgres_roles,
        "server_cpu_by_statement": server_rows,
    }
    write_report(out, report)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/review_load.json"))
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: actions per second per reviewer (default: closed loop)",
    )
    parser.add_argument("--py-spy", default=None, help="path of a py-spy binary: sample the web process")
    parser.add_argument(
        "--daemon-process", action="store_true", help="run the projection daemon in a process of its own"
    )
    parser.add_argument(
        "--server-cpu",
        action="store_true",
        help="per statement the web process sends, its backend's CPU (reads /proc twice a statement: "
        "costs the web process some CPU)",
    )
    args = parser.parse_args(argv)
    run(args.reviewers, args.seconds, args.out, args.rate, args.py_spy, args.daemon_process, args.server_cpu)


if __name__ == "__main__":
    main()
