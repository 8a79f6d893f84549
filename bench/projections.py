"""Projection catch-up and rebuild speed: Heaters' batched runner against eventsourcing's own
``ProjectionRunner`` (one transaction per event) with an equivalent history projection, on the same
events in an embedded PostgreSQL in a temporary directory.

    python -m bench.projections [--events 20000] [--es-events 4000] [--out bench/results/projections.json]

eventsourcing's runner is measured on the first ``--es-events`` events (its rate is steady, and the
whole log would take minutes at ~450 events/s).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
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

from commands.service import HeatersApplication
from domain.clip import Clip
from infra.database import embedded_postgres, eventsourcing_env
from infra.schema import prepare_schema
from projections.base import json_safe
from projections.history import ENVELOPE
from projections.rebuild import rebuild
from projections.runner import catch_up

log = logging.getLogger("bench.projections")

ACTOR = "stage:bench"
SCHEMA = "bench"


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


def measure(events: int, es_events: int) -> dict[str, Any]:
    rng = random.Random(42)
    with (
        tempfile.TemporaryDirectory(prefix="heaters-bench-") as home,
        embedded_postgres(Path(home)) as address,
    ):
        prepare_schema(address, SCHEMA)
        env = eventsourcing_env(address, SCHEMA)
        app = HeatersApplication(env=env)
        started = time.perf_counter()
        head = generate(app, events, rng)
        generated = time.perf_counter() - started
        app.close()
        log.info("generated %d events in %.1f s", head, generated)

        results: dict[str, Any] = {"events": head, "generate_seconds": round(generated, 2)}

        es_target = min(es_events, head)
        started = time.perf_counter()
        with ProjectionRunner(
            application_class=HeatersApplication,
            projection_class=HistoryProjection,
            view_class=HistoryView,
            env=env,
        ) as runner:
            runner.wait(es_target, timeout=600)
        es_seconds = time.perf_counter() - started
        results["eventsourcing_runner_history"] = {
            "events": es_target,
            "seconds": es_seconds,
            "rate": es_target / es_seconds,
        }

        def timed(label: str, count: int, action: Any) -> None:
            started = time.perf_counter()
            action()
            seconds = time.perf_counter() - started
            results[label] = {"events": count, "seconds": seconds, "rate": count / seconds}
            log.info("%s: %d events in %.2f s", label, count, seconds)

        timed("heaters_catch_up_history", head, lambda: catch_up(address, SCHEMA, ["history"]))
        timed(
            "heaters_catch_up_other_four",
            head,
            lambda: catch_up(address, SCHEMA, ["videos", "clips", "similarity", "stats"]),
        )
        timed("heaters_rebuild_history", head, lambda: rebuild(address, SCHEMA, "history"))
        timed("heaters_rebuild_all_five", head, lambda: rebuild(address, SCHEMA))
        es_rate = results["eventsourcing_runner_history"]["rate"]
        for value in results.values():
            if isinstance(value, dict):
                value["ratio_vs_eventsourcing"] = value["rate"] / es_rate
        return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--es-events", type=int, default=4_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/projections.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = measure(args.events, args.es_events)
    print(f"\n{'run':<34} {'events':>8} {'seconds':>9} {'events/s':>10} {'x eventsourcing':>16}")
    for key, value in results.items():
        if isinstance(value, dict):
            print(
                f"{key:<34} {value['events']:>8} {value['seconds']:>9.2f} {value['rate']:>10.0f} "
                f"{value['ratio_vs_eventsourcing']:>16.1f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
