"""Sprite sheets: which format, and the review page's first-frame time (issue #11).

    python -m bench.sprites [--corpus bench/results/corpus] [--seconds 20] [--ssim-every 6]
                            [--loads 5] [--mbit 25] [--rtt-ms 40] [--no-page] [--out bench/results/sprites.json]

Formats at equal SSIM. On the first ``--seconds`` of each of :data:`COMPARE_VIDEOS` (edits of real
footage in ``bench/corpus.py``'s corpus, built there when missing) the sheets
are rendered the pipeline's way (its filters: sprite rate, area scaling to the 640 px tiles the player
shows, 5x5 tiles; two encoders) in every variant of :data:`VARIANTS`: WebP by quality and method
(``-compression_level``: 0 the fastest, 4 libwebp's default), JPEG by ffmpeg's qscale (the encoder
the pipeline has; baseline, optimal Huffman tables), and, from the same sheet pixels, JPEG by
libjpeg-turbo (Pillow) baseline and progressive, which ffmpeg cannot write. Per variant: bytes and
encoding CPU seconds per source minute (ffmpeg's CPU less that of a run that only decodes, scales and
tiles; Pillow's ``save``), and the mean SSIM (luma) of every ``--ssim-every``-th sheet against the
same sheet before encoding, i.e. the source frame at the displayed size. Then each family's bytes and
CPU at the SSIM of :data:`REFERENCE_VARIANT`, interpolated between its two nearest qualities.

First-frame time. Sheets of the real 720p video in :data:`CONFIGS` (before #11, the previous default,
the current ``HEATERS_SPRITE_*`` default) are rendered with ``make_sprites``; for each the real review
page (embedded PostgreSQL, the web app under uvicorn, the projection daemon) is opened in Debian's
chromium on a throttled link (``--mbit`` down, ``--rtt-ms`` round trip, via the DevTools protocol),
logged in, and the first-frame time is read from Resource Timing: milliseconds from the navigation's
start until the sheet holding the clip's first frame has arrived (``responseEnd``), best and median of
``--loads`` cold loads (the browser cache is cleared before each).
"""

from __future__ import annotations

import io
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from bench.corpus import CORPUS, build_corpus
from bench.harness import arguments, load_average, serve, write_report
from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress, embedded_postgres, eventsourcing_env
from infra.media.ffmpeg import LOCAL_INPUT, ffmpeg_exe, probe
from infra.media.sprites import SpriteFormat, make_sprites, plan_sprites
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
    quality: int | None


CONFIGS = (
    Config("before #11: JPEG q3, 480 px tiles (shown 2x)", 480, "jpeg", 3),
    Config("WebP q60 m0, 640 px tiles (shown 1x)", 640, "webp", 60),
    Config(
        f"default: {Settings().sprite_format}, {Settings().sprite_tile_width} px tiles (shown 1x)",
        Settings().sprite_tile_width,
        Settings().sprite_format,
        Settings().sprite_quality,
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


# ------------------------------------------------------------------------------ formats at equal SSIM


@dataclass(frozen=True)
class Variant:
    """One way of encoding the sheets: ``family`` (a curve over ``quality``), by ffmpeg (as the
    pipeline does) or by libjpeg-turbo through Pillow from the same sheet pixels."""

    family: str
    quality: int
    encoder: Literal["ffmpeg", "pillow"]
    args: tuple[str, ...] = ()  # ffmpeg encoder options
    progressive: bool = False  # pillow only
    image_format: SpriteFormat = "jpeg"  # ffmpeg: the plan whose filters feed the encoder

    @property
    def name(self) -> str:
        return f"{self.family} {'q' if self.encoder == 'pillow' or 'webp' in self.family else 'qscale '}{self.quality}"


def _webp(method: int, quality: int) -> Variant:
    args = ("-c:v", "libwebp", "-quality", str(quality), "-compression_level", str(method))
    return Variant(f"webp m{method}", quality, "ffmpeg", args, image_format="webp")


VARIANTS: tuple[Variant, ...] = (
    *(_webp(0, q) for q in (45, 60, 75)),
    *(_webp(4, q) for q in (50, 70)),
    *(Variant("jpeg", q, "ffmpeg", ("-c:v", "mjpeg", "-q:v", str(q))) for q in (3, 5, 7, 10)),
    *(Variant("jpeg turbo", q, "pillow") for q in (40, 60)),
    *(Variant("jpeg turbo progressive", q, "pillow", progressive=True) for q in (40, 60)),
)
#: The corpus videos compared: edits of real footage (bench/corpus.py).
COMPARE_VIDEOS = ("real_720p25_long", "real_360p25", "real_1080p25")
#: The variant whose SSIM the families are compared at (the default before this comparison).
REFERENCE_VARIANT = "webp m0 q60"


@dataclass
class _Tally:
    bytes: int = 0
    cpu: float = 0.0
    ssims: list[float] = field(default_factory=list)


def ssim(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """Mean SSIM of two luma pictures (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5)."""
    x, y = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(cv2.GaussianBlur(img, (11, 11), 1.5), np.float32)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def _luma(encoded: bytes) -> NDArray[np.uint8]:
    bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError("an encoded sheet does not decode")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), np.uint8)


def _ffmpeg_cpu(args: list[str]) -> float:
    """Run ffmpeg; its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def compare_formats(video: Path, seconds: float, tile_width: int, every: int, work: Path) -> dict[str, Any]:
    """Every variant of :data:`VARIANTS` on the first ``seconds`` of ``video``: bytes and encoding CPU
    per source minute, SSIM of every ``every``-th sheet against the same sheet unencoded."""
    info = probe(video)
    source_seconds = min(seconds, info.frame_count / info.fps)
    frames = min(info.frame_count, round(source_seconds * info.fps))
    plan = plan_sprites(info.width, info.height, frames, info.fps, Settings().sprite_fps, tile_width, 5, 5)
    source = ["-t", f"{source_seconds:.3f}", *LOCAL_INPUT, "-i", str(video)]
    minutes = source_seconds / 60
    # decoding, scaling and tiling alone: what every variant's run costs before encoding
    base_cpu = _ffmpeg_cpu(
        [
            *source,
            "-filter_complex",
            f"[0:v:0]{plan.tiling()}[t]",
            "-map",
            "[t]",
            "-fps_mode",
            "passthrough",
            "-f",
            "null",
            "-",
        ]
    )
    sw, sh = plan.tile_width * plan.columns, plan.tile_height * plan.rows
    size = sw * sh * 3
    refs: dict[int, NDArray[np.uint8]] = {}
    pillow = [v for v in VARIANTS if v.encoder == "pillow"]
    acc = {v.name: _Tally() for v in pillow}
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *source, "-filter_complex",
           f"[0:v:0]{plan.tiling()},format=rgb24[t]", "-map", "[t]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        index = 0
        while len(buf := proc.stdout.read(size)) == size:
            rgb = np.frombuffer(buf, np.uint8).reshape(sh, sw, 3)
            sampled = index % every == 0
            if sampled:
                refs[index] = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.uint8)
            picture = Image.fromarray(rgb)
            for v in pillow:
                out = io.BytesIO()
                t0 = time.process_time()
                picture.save(
                    out, "JPEG", quality=v.quality, progressive=v.progressive, optimize=True, subsampling=2
                )
                acc[v.name].cpu += time.process_time() - t0
                acc[v.name].bytes += out.tell()
                if sampled:
                    acc[v.name].ssims.append(ssim(refs[index], _luma(out.getvalue())))
            index += 1
    if proc.returncode != 0 or abs(index - plan.sheet_count) > 1:
        raise RuntimeError(
            f"reference sheets of {video}: ffmpeg exit {proc.returncode}, {index} sheets of {plan.sheet_count}"
        )
    rows: list[dict[str, Any]] = []
    for v in VARIANTS:
        if v.encoder == "pillow":
            a = acc[v.name]
            encode_cpu, total, ssims = a.cpu, a.bytes, a.ssims
            run_cpu = base_cpu + encode_cpu  # rough: Pillow encodes RGB, the pass would hand it YUV
        else:
            out_dir = work / v.name.replace(" ", "_")
            out_dir.mkdir(parents=True)
            outputs: list[str] = []
            plan = replace(plan, image_format=v.image_format)  # its filters: JPEG's range conversion
            for i in range(plan.encoders):
                outputs += ["-map", f"[sheets{i}]", "-fps_mode", "passthrough", *v.args, "-start_number", "0",
                            "-f", "image2", str(out_dir / f"part{i}_%05d.img")]  # fmt: skip
            run_cpu = _ffmpeg_cpu([*source, "-filter_complex", plan.graph("[0:v:0]"), *outputs])
            encode_cpu = run_cpu - base_cpu
            by_index = {}
            for path in out_dir.iterdir():
                part, k = path.stem.removeprefix("part").split("_")
                by_index[int(k) * plan.encoders + int(part)] = path
            total = sum(p.stat().st_size for p in by_index.values())
            ssims = [ssim(ref, _luma(by_index[i].read_bytes())) for i, ref in refs.items()]
            shutil.rmtree(out_dir)
        rows.append(
            {
                "variant": v.name,
                "family": v.family,
                "quality": v.quality,
                "encoder": v.encoder,
                "bytes_per_source_minute": round(total / minutes),
                "encode_cpu_seconds_per_source_minute": round(encode_cpu / minutes, 3),
                "pass_cpu_seconds_per_source_minute": round(run_cpu / minutes, 3),
                "ssim": round(statistics.fmean(ssims), 4),
                "ssim_worst_sheet": round(min(ssims), 4),
            }
        )
        print(f"  {video.stem} {v.name}: {rows[-1]}", flush=True)
    return {
        "video": video.stem,
        "width": info.width,
        "height": info.height,
        "source_seconds": round(source_seconds, 2),
        "tile": [plan.tile_width, plan.tile_height],
        "sheets": plan.sheet_count,
        "sheets_compared": len(refs),
        "decode_scale_tile_cpu_seconds_per_source_minute": round(base_cpu / minutes, 3),
        "load_average": load_average(),
        "variants": rows,
        "at_equal_ssim": at_equal_ssim(rows),
    }


def at_equal_ssim(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each family's bytes and encoding CPU per source minute at the SSIM of
    :data:`REFERENCE_VARIANT`, interpolated linearly between its two nearest qualities (None when
    its curve does not reach that SSIM)."""
    target = next(r["ssim"] for r in rows if r["variant"] == REFERENCE_VARIANT)
    families: dict[str, Any] = {"ssim": target}
    for family in dict.fromkeys(r["family"] for r in rows):
        curve = sorted((r for r in rows if r["family"] == family), key=lambda r: r["ssim"])
        found = None
        for lo, hi in itertools.pairwise(curve):
            if lo["ssim"] <= target <= hi["ssim"]:
                w = 0.0 if hi["ssim"] == lo["ssim"] else (target - lo["ssim"]) / (hi["ssim"] - lo["ssim"])
                found = {
                    key: round(lo[key] + w * (hi[key] - lo[key]), 3)
                    for key in ("quality", "bytes_per_source_minute", "encode_cpu_seconds_per_source_minute")
                }
                break
        families[family] = found
    return families


# ---------------------------------------------------------------------------------- first-frame time


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


def corpus_video(corpus: Path, name: str) -> Path:
    """The corpus video ``name`` (built with ``bench/corpus.py`` when missing; an existing corpus,
    such as a shared one, is only read), or the file ``name`` when it ends in ``.mp4``."""
    path = Path(name) if name.endswith(".mp4") else corpus / f"{name}.mp4"  # or a video of its own
    deadline = time.monotonic() + 900
    while path.exists() and not path.with_suffix(".stamp").exists() and time.monotonic() < deadline:
        time.sleep(5)  # being written by a corpus build (its stamp comes last)
    if not path.exists():
        build_corpus(corpus, [spec for spec in CORPUS if spec.name == name])
    return path


def first_frames(video: Path, loads: int, mbit: float, rtt_ms: float) -> list[Result]:
    """Render the sheets of ``video`` in each of :data:`CONFIGS` and time the review page's first frame."""
    info = probe(video)
    source_seconds = info.frame_count / info.fps
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
                        bytes_per_source_minute=round(total * 60 / source_seconds),
                        first_sheet_bytes=sheets[0].stat().st_size,
                        first_frame_ms_best=min(times),
                        first_frame_ms_median=statistics.median(times),
                        first_frame_ms_all=times,
                    )
                )
                print(f"{config.name}: {results[-1]}", flush=True)
    return results


def _compare_table(comparisons: list[dict[str, Any]]) -> str:
    head = f"{'video':<18} {'variant':<30} {'MB/min':>7} {'enc cpu/min':>11} {'pass cpu/min':>12} {'SSIM':>6} {'worst':>6}"
    lines = [head, "-" * len(head)]
    for c in comparisons:
        for r in c["variants"]:
            lines.append(
                f"{c['video']:<18} {r['variant']:<30} {r['bytes_per_source_minute'] / 1e6:7.2f} "
                f"{r['encode_cpu_seconds_per_source_minute']:11.2f} {r['pass_cpu_seconds_per_source_minute']:12.2f} "
                f"{r['ssim']:6.4f} {r['ssim_worst_sheet']:6.4f}"
            )
        lines.append(
            f"{c['video']:<18} {'(decode, scale, tile only)':<30} {'':7} {'':11} "
            f"{c['decode_scale_tile_cpu_seconds_per_source_minute']:12.2f}   load {c['load_average']}"
        )
    lines += ["", f"at the SSIM of {REFERENCE_VARIANT} (interpolated):", ""]
    head = f"{'video':<18} {'SSIM':>6} {'family':<24} {'quality':>7} {'MB/min':>7} {'enc cpu/min':>11}"
    lines += [head, "-" * len(head)]
    for c in comparisons:
        eq = c["at_equal_ssim"]
        for family, found in eq.items():
            if family == "ssim":
                continue
            if found is None:
                lines.append(f"{c['video']:<18} {eq['ssim']:6.4f} {family:<24} {'(not reached)':>7}")
            else:
                lines.append(
                    f"{c['video']:<18} {eq['ssim']:6.4f} {family:<24} {found['quality']:7.1f} "
                    f"{found['bytes_per_source_minute'] / 1e6:7.2f} {found['encode_cpu_seconds_per_source_minute']:11.2f}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--corpus", type=Path, default=Path("bench/results/corpus"), help="bench/corpus.py's")
    parser.add_argument("--videos", nargs="*", default=list(COMPARE_VIDEOS))
    parser.add_argument("--seconds", type=float, default=20.0, help="compare on the first SECONDS of each")
    parser.add_argument("--ssim-every", type=int, default=6, help="SSIM of every N-th sheet")
    parser.add_argument("--tile-width", type=int, default=Settings().sprite_tile_width)
    parser.add_argument("--page-video", default="real_720p25_long", help="the corpus video the page shows")
    parser.add_argument("--no-page", action="store_true", help="skip the review page's first-frame time")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--mbit", type=float, default=25.0, help="throttled download rate, Mbit/s")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/sprites.json"))
    args = parser.parse_args(argv)
    comparisons: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="heaters-sprite-formats-") as name:
        for video in args.videos:
            path = corpus_video(args.corpus, video)
            comparisons.append(
                compare_formats(path, args.seconds, args.tile_width, args.ssim_every, Path(name) / path.stem)
            )
    results: list[Result] = []
    if not args.no_page:
        results = first_frames(
            corpus_video(args.corpus, args.page_video), max(1, args.loads), args.mbit, args.rtt_ms
        )
    report = {
        "benchmark": "sprites",
        "corpus": str(args.corpus),
        "formats": comparisons,
        "page_video": None if args.no_page else args.page_video,
        "link": {"mbit_per_s": args.mbit, "rtt_ms": args.rtt_ms, "cache": "cleared before each load"},
        "loads": args.loads,
        "load_average": load_average(),
        "cpus": os.cpu_count(),
        "results": [asdict(r) for r in results],
    }
    print()
    print(_compare_table(comparisons))
    print(
        "\nMB/min and cpu/min per source minute; enc cpu = the run's CPU less decoding, scaling and tiling "
        "(Pillow: its save); pass cpu = the whole render; SSIM = luma SSIM against the unencoded sheet."
    )
    if results:
        print(
            f"\n{'config':<46} {'render s':>8} {'MB/min':>7} {'sheet KB':>8} {'1st frame ms':>12} {'median':>7}"
        )
        for r in report["results"]:
            print(
                f"{r['config']:<46} {r['render_seconds']:8.2f} {r['bytes_per_source_minute'] / 1e6:7.2f} "
                f"{r['first_sheet_bytes'] / 1e3:8.0f} {r['first_frame_ms_best']:12.0f} {r['first_frame_ms_median']:7.0f}"
            )
        print(f"link {args.mbit} Mbit/s, RTT {args.rtt_ms} ms")
    print(f"load average {report['load_average']}")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
