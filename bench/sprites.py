"""Sprite sheets: bytes per source minute and the review page's first-frame time, before and after #11.

    python -m bench.sprites [--seconds 30] [--mbit 25] [--rtt-ms 40] [--out bench/results/sprites.json]

Renders sprite sheets of the 720p pipeline-benchmark video (``bench/pipeline.py``'s corpus, generated
when missing) in two configurations, the one before issue #11 (480 px JPEG tiles at qscale 3, shown
upscaled 2x by the player) and the current default (``HEATERS_SPRITE_*``: 640 px WebP tiles, shown at
their size), each through ``make_sprites`` on its own (render seconds are for that decode alone; the
pipeline renders them in the proxy's decode pass). Then, for each, the real review page (embedded
PostgreSQL, the web app under uvicorn, the projection daemon) is opened in Debian's chromium on a
throttled link (``--mbit`` down, ``--rtt-ms`` round trip, via the DevTools protocol), logged in, and the
first-frame time is read from Resource Timing: milliseconds from the navigation's start until the sheet
holding the clip's first frame has arrived (``responseEnd``), best and median of ``--loads`` cold loads
(the browser cache is cleared before each).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import arguments, load_average, serve, write_report
from bench.pipeline import SOURCES, ensure_video
from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress, embedded_postgres, eventsourcing_env
from infra.media.ffmpeg import probe
from infra.media.sprites import SpriteFormat, make_sprites
from infra.object_storage import LocalObjectStorage
from infra.schema import prepare_schema
from projections.runner import ProjectionDaemon
from web.app import create_app
from web.auth import add_user

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
SCHEMA = "bench_sprites"
ACTOR = "system:bench"


@dataclass(frozen=True)
class Config:
    name: str
    tile_width: int
    image_format: SpriteFormat
    quality: int


CONFIGS = (
    Config("before #11: JPEG q3, 480 px tiles (shown 2x)", 480, "jpeg", 3),
    Config(
        "now: WebP q60, 640 px tiles (shown 1x)", Settings().sprite_tile_width, Settings().sprite_format, 60
    ),
)


@dataclass
class Result:
    config: str
    render_seconds: float
    sheets: int
    bytes_total: int
    bytes_per_source_minute: float
    first_sheet_bytes: int
    first_frame_ms_best: float
    first_frame_ms_median: float
    first_frame_ms_all: list[float]


@contextmanager
def _review_site(tmp: Path) -> Iterator[tuple[str, HeatersApplication, DatabaseAddress, LocalObjectStorage]]:
    with embedded_postgres(tmp / "pg") as address:
        prepare_schema(address, SCHEMA)
        app = HeatersApplication(env=eventsourcing_env(address, SCHEMA, pool_size=5))
        storage = LocalObjectStorage(tmp / "media")
        settings = Settings(database_schema=SCHEMA, home=tmp, media_dir=tmp / "media", redis_url=None)
        add_user(address, SCHEMA, "rita", "reviewer", PASSWORD)
        daemon = ProjectionDaemon(app, address)
        daemon.start()
        try:
            with serve(create_app(settings, app, address, storage)) as base:
                yield base, app, address, storage
        finally:
            daemon.stop()
            app.close()


def _publish(app: HeatersApplication, video: Path, manifest_key: str, frames: int, fps: float) -> None:
    """A video whose sprites are ``manifest_key``, clipped so that one clip starts at frame 0."""
    video_id = app.submit(str(video), ACTOR)
    attempt = app.start_video_stage(video_id, "download", ACTOR)
    app.record_downloaded(
        video_id, attempt, ACTOR, media_key=f"videos/{video_id}/source.mp4", title="bench", original_url=None,
        checksum="0" * 64, duration=frames / fps, fps=fps, frame_count=frames, width=1280, height=720,
        codec="h264",
    )  # fmt: skip
    attempt = app.start_video_stage(video_id, "proxy", ACTOR)
    app.record_proxy(video_id, attempt, f"videos/{video_id}/proxy.mp4", 1280, 720, ACTOR)
    attempt = app.start_video_stage(video_id, "sprites", ACTOR)
    app.record_sprites(video_id, attempt, manifest_key, ACTOR)
    attempt = app.start_video_stage(video_id, "shots", ACTOR)
    app.record_shots(video_id, attempt, [frames // 2], "bench", {}, ACTOR)


def _first_frame_times(base: str, loads: int, mbit: float, rtt_ms: float) -> list[float]:
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            page.goto(f"{base}/login?next=%2Freview")
            page.fill("input[name=name]", "rita")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/review")
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            throughput = mbit * 1e6 / 8
            cdp.send(
                "Network.emulateNetworkConditions",
                {
                    "offline": False,
                    "latency": rtt_ms,
                    "downloadThroughput": throughput,
                    "uploadThroughput": throughput,
                },
            )
            probe_js = (
                "() => { const e = performance.getEntriesByType('resource')"
                ".find(r => r.name.includes('sheet_00000') && r.responseEnd > 0); return e ? e.responseEnd : 0; }"
            )
            for _ in range(loads):
                cdp.send("Network.clearBrowserCache")  # a cold load, but one sheet request is shared
                page.goto(f"{base}/review")
                page.wait_for_function(probe_js, timeout=60_000)
                times.append(round(float(page.evaluate(probe_js)), 1))
        finally:
            browser.close()
    return times


def run(seconds: float, loads: int, mbit: float, rtt_ms: float, corpus: Path) -> dict[str, Any]:
    video, truth = ensure_video(SOURCES[0], seconds, corpus)
    info = probe(video)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="heaters-sprites-") as name:
        tmp = Path(name)
        for index, config in enumerate(CONFIGS):
            with _review_site(tmp / f"site{index}") as (base, app, _address, storage):
                prefix = f"videos/bench{index}/sprites"
                started = time.perf_counter()
                manifest = make_sprites(
                    video, storage.root / prefix, Settings().sprite_fps, config.tile_width, 5, 5,
                    image_format=config.image_format, quality=config.quality,
                )  # fmt: skip
                render = time.perf_counter() - started
                sheets = [storage.root / prefix / s for s in manifest.sheets]
                total = sum(p.stat().st_size for p in sheets)
                _publish(app, video, f"{prefix}/manifest.json", info.frame_count, info.fps)
                time.sleep(1.0)  # the projection daemon puts the clips in the review queue
                times = _first_frame_times(base, loads, mbit, rtt_ms)
                results.append(
                    Result(
                        config=config.name,
                        render_seconds=round(render, 2),
                        sheets=len(sheets),
                        bytes_total=total,
                        bytes_per_source_minute=round(total * 60 / (truth.frame_count / truth.fps)),
                        first_sheet_bytes=sheets[0].stat().st_size,
                        first_frame_ms_best=min(times),
                        first_frame_ms_median=statistics.median(times),
                        first_frame_ms_all=times,
                    )
                )
                print(f"{config.name}: {results[-1]}", flush=True)
    return {
        "benchmark": "sprites",
        "video": str(video),
        "source_seconds": truth.frame_count / truth.fps,
        "link": {"mbit_per_s": mbit, "rtt_ms": rtt_ms, "cache": "cleared before each load"},
        "loads": loads,
        "load_average": load_average(),
        "cpus": os.cpu_count(),
        "results": [asdict(r) for r in results],
    }


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="source length (the pipeline corpus's)")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--mbit", type=float, default=25.0, help="throttled download rate, Mbit/s")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--corpus", type=Path, default=Path("bench/results/pipeline-corpus"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/sprites.json"))
    args = parser.parse_args(argv)
    report = run(args.seconds, max(1, args.loads), args.mbit, args.rtt_ms, args.corpus)
    print(
        f"\n{'config':<46} {'render s':>8} {'MB/min':>7} {'sheet KB':>8} {'1st frame ms':>12} {'median':>7}"
    )
    for r in report["results"]:
        print(
            f"{r['config']:<46} {r['render_seconds']:8.2f} {r['bytes_per_source_minute'] / 1e6:7.2f} "
            f"{r['first_sheet_bytes'] / 1e3:8.0f} {r['first_frame_ms_best']:12.0f} {r['first_frame_ms_median']:7.0f}"
        )
    print(f"link {args.mbit} Mbit/s, RTT {args.rtt_ms} ms; load average {report['load_average']}")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
