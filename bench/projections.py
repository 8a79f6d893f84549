"""Projection catch-up and rebuild speed of all five read models, against the same code at a baseline
commit timed in the same run (so both meet the same machine load), and against eventsourcing's own
``ProjectionRunner`` (one transaction per event) with an equivalent history projection. Each run
generates its log in an embedded PostgreSQL in a temporary directory.

    python -m bench.projections [--events 20000] [--es-events 2000] [--baseline REF] [--out FILE]

Prints a table and writes JSON. Rates are wall-clock events/s; ``cpu_bound_rate`` divides the events
by the CPU seconds the client and the server used (what the rate would be on an otherwise idle
machine, client and server not overlapping): on this shared machine wall-clock figures swing twofold.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from bench.harness import arguments, write_report
from commands.service import HeatersApplication
from domain.clip import Clip
from infra.database import embedded_postgres, eventsourcing_env
from infra.schema import prepare_schema
from projections.base import json_safe
from projections.history import ENVELOPE

log = logging.getLogger("bench.projections")

ACTOR = "stage:bench"
SCHEMA = "bench"
#: The commit before the read side was made faster (issue 13): the baseline timed in the same run.
BASELINE_REF = "9397ba6"


def generate(app: HeatersApplication, events: int, rng: random.Random) -> int:
    """Videos with ~150 clips each, reviewed and (approved ones) through keyframes, embedding and
    export; many aggregates per save. Returns the head position."""
    head = 0
    while head < events:
        video_id = app.submit(f"/bench/{uuid4()}.mp4", "user:bench")
        frames = 1500
        attempt = app.start_video_stage(video_id, "download", ACTOR)
        app.record_downloaded(
            video_id, attempt, ACTOR, media_key=f"v/{video_id}", title="bench", original_url=None,
            checksum="0" * 64, duration=60.0, fps=25.0, frame_count=frames, width=640, height=360, codec="h264",
        )  # fmt: skip
        attempt = app.start_video_stage(video_id, "proxy", ACTOR)
        app.record_proxy(video_id, attempt, f"v/{video_id}/proxy", 640, 360, ACTOR)
        attempt = app.start_video_stage(video_id, "sprites", ACTOR)
        app.record_sprites(video_id, attempt, f"v/{video_id}/sprites", ACTOR)
        attempt = app.start_video_stage(video_id, "shots", ACTOR)
        clip_ids = app.record_shots(video_id, attempt, list(range(10, frames, 10)), "bench", {}, ACTOR)
        clips = [app.get_clip(c) for c in clip_ids]
        approved: list[Clip] = []
        for clip in clips:
            roll = rng.random()
            if roll < 0.6:
                clip.approve("user:bench")
                approved.append(clip)
            elif roll < 0.85:
                clip.skip("user:bench")
            else:
                clip.archive("user:bench")
        app.save(*clips)
        for clip in approved:
            clip.record_keyframes("multi", [f"k/{clip.id}"], [clip.start], ACTOR)
            vector = [rng.gauss(0, 1) for _ in range(64)]
            norm = sum(x * x for x in vector) ** 0.5
            clip.record_embedding(
                "ViT-B-32", "openai", "keyframe_multi_avg", [[x / norm for x in vector]], ACTOR
            )
            clip.record_export(f"e/{clip.id}", ACTOR)
        app.save(*approved)
        head = app.recorder.max_notification_id() or 0
    return head


class HistoryView(PostgresTrackingRecorder):
    """The equivalent of Heaters' history read model for eventsourcing's runner: one row per event."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.table = Identifier(self.datastore.schema, "es_history")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (aggregate_id uuid, version integer, event text, actor text, "
                "at timestamptz, payload jsonb, position bigint, PRIMARY KEY (aggregate_id, version))"
            ).format(self.table)
        )

    def record(self, row: tuple[Any, ...], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)").format(self.table),
                row,
                prepare=True,
            )
            self._insert_tracking(curs, tracking)


class HistoryProjection(Projection[HistoryView]):
    name = "es_history"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        payload = {k: json_safe(v) for k, v in vars(domain_event).items() if k not in ENVELOPE}
        self.view.record(
            (
                domain_event.originator_id,
                domain_event.originator_version,
                type(domain_event).__name__,
                getattr(domain_event, "actor", "unknown"),
                domain_event.timestamp,
                Jsonb(payload),
                tracking.notification_id,
            ),
            tracking,
        )


def measure_eventsourcing(events: int, es_events: int) -> dict[str, Any]:
    """eventsourcing's own ``ProjectionRunner`` with the history projection above, on ``es_events``
    of a generated log (its rate is steady, and a whole log would take minutes)."""
    rng = random.Random(42)
    with (
        tempfile.TemporaryDirectory(prefix="heaters-bench-") as home,
        embedded_postgres(Path(home)) as address,
    ):
        prepare_schema(address, SCHEMA)
        env = eventsourcing_env(address, SCHEMA)
        app = HeatersApplication(env=env)
        head = generate(app, es_events, rng)
        app.close()
        target = min(es_events, head)
        started = time.perf_counter()
        with ProjectionRunner(
            application_class=HeatersApplication,
            projection_class=HistoryProjection,
            view_class=HistoryView,
            env=env,
        ) as runner:
            runner.wait(target, timeout=600)
        seconds = time.perf_counter() - started
    return {"events": target, "seconds": seconds, "rate": target / seconds}


def measure_tree(tree: Path, events: int) -> dict[str, Any]:
    """Time the projections of the code in ``tree``: ``bench/projection_timing.py`` in a subprocess
    with that tree first on the path (the code at hand and a baseline are measured the same way)."""
    timing = Path(__file__).resolve().parent / "projection_timing.py"
    code = f"import runpy, sys; runpy.run_path({str(timing)!r}, run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", code, str(events)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_baseline(ref: str, events: int) -> dict[str, Any]:
    """The same timings for the code of commit ``ref`` (``git archive`` into a temporary directory)."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="heaters-baseline-") as tree:
        archive = subprocess.run(["git", "-C", str(root), "archive", ref], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        result = measure_tree(Path(tree), events)
    result["ref"] = ref
    return result


RUNS = ("catch_up_all_five", "rebuild_all_five", "rebuild_history")
TARGET = 10_000


def report(now: dict[str, Any], baseline: dict[str, Any] | None, es: dict[str, Any] | None) -> str:
    lines = [
        f"{now['events']} events ({now['embedded_events']} Embedded, {now['bytes_per_embedded_event']} bytes "
        f"each stored; baseline: {baseline['bytes_per_embedded_event'] if baseline else '-'})",
        "CPU µs/event: client + server (PostgreSQL); load: 1-minute load average when the run started",
        "",
        f"{'run':<20} {'baseline/s':>11} {'now/s':>8} {'speed-up':>9} {'now cpu-bound/s':>16} "
        f"{'base µs/ev':>11} {'now µs/ev':>11} {'load':>11} {'x eventsourcing':>16} {'>= 10k/s':>9}",
    ]
    for run in RUNS:
        value = now[run]
        base = baseline[run]["rate"] if baseline else None
        cpu = value.get("cpu_bound_rate")
        load = f"{baseline[run].get('load_1min', 0) if baseline else 0:.1f}/{value.get('load_1min', 0):.1f}"
        lines.append(
            f"{run:<20} {base or 0:>11.0f} {value['rate']:>8.0f} {value['rate'] / base if base else 0:>8.1f}x "
            f"{cpu or 0:>16.0f} {_per_event(baseline[run]) if baseline else '-':>11} {_per_event(value):>11} "
            f"{load:>11} {value['rate'] / es['rate'] if es else 0:>16.1f} "
            f"{'yes' if value['rate'] >= TARGET else 'no':>9}"
        )
    if es:
        lines.append(f"{'eventsourcing runner (history)':<20} {es['rate']:.0f}/s on {es['events']} events")
    return "\n".join(lines)


def _per_event(run: dict[str, Any]) -> str:
    """CPU microseconds per event, client + server."""
    server = run.get("server_cpu_seconds")
    if server is None:
        return "-"
    return f"{1e6 * run['client_cpu_seconds'] / run['events']:.0f}+{1e6 * server / run['events']:.0f}"


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--es-events", type=int, default=2_000, help="0: skip eventsourcing's runner")
    parser.add_argument(
        "--baseline",
        default=BASELINE_REF,
        help="commit whose projections are timed in the same run for comparison ('' to skip)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/projections.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    baseline = measure_baseline(args.baseline, args.events) if args.baseline else None
    now = measure_tree(Path(__file__).resolve().parent.parent, args.events)
    es = measure_eventsourcing(args.events, args.es_events) if args.es_events else None
    results = {"now": now, "baseline": baseline, "eventsourcing_runner_history": es, "target_rate": TARGET}
    print(report(now, baseline, es))
    write_report(args.out, results)


if __name__ == "__main__":
    main()
