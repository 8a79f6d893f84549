"""End-to-end pipeline benchmark: Heaters (download → all-intra proxy → sprites → shots) versus
PySceneDetect's CLI (``detect-adaptive split-video``) on the same generated videos.

    /work/main/.venv/bin/python -m bench.pipeline [--seconds 60] [--separate] [--out bench/results/pipeline.json]

By default the proxy stage decodes each video once for the proxy, the sprite sheets and the shot
analysis (``HEATERS_MEDIA_SINGLE_PASS``); ``--separate`` also times the stages decoding on their own.
Sprite sheet bytes per source minute and the load average before and after each row are recorded.

CPU seconds are recorded beside wall seconds, since wall time on a shared machine is mostly the other
jobs: Heaters' are this process's (``getrusage`` of itself and of its reaped children, the ffmpeg
runs) plus the embedded PostgreSQL server's (its postmaster, its live backends and the ones it reaped,
from ``/proc``) over the timed span, so the bench's own 50 ms state polls are charged to Heaters too;
PySceneDetect's are its subprocess tree's (``RUSAGE_CHILDREN``). ``--pass-variants`` also times the
proxy stage's decode pass alone (``decode_once`` with the settings' shot detector consuming the
frames) in each proxy and sprite mode: the all-intra proxy, a stream copy of a playable source
(``HEATERS_PROXY_COPY_PLAYABLE``), with WebP or JPEG sheets (``PASS_VARIANTS``).

Generates (or reuses, cached under ``bench/results/pipeline-corpus``) a 1280x720 and a 640x360 video
at 25 fps, twelve shots joined by hard cuts and one dissolve (see ``bench/corpus.py``). Heaters runs
in this process the way ``heaters up`` does: an embedded PostgreSQL in a temporary directory, local
media storage, the in-process broker with one worker (2 threads) and the process manager at its
default poll interval. The timed span is from ``app.submit`` until the video's state is ``clipped``
(every clip pending review), polled every 50 ms; per-stage seconds come from the timestamps of the
video's events (``DownloadStarted`` → ``Downloaded``, ...), and the time between one stage's result
and the next stage's start is reported as dispatch overhead. PySceneDetect is timed as a subprocess
(``scenedetect -i VIDEO detect-adaptive split-video -o OUTDIR``, which re-encodes every scene with
ffmpeg: libx264 veryfast crf 22), with imageio-ffmpeg's binary on ``PATH``.

Both are warmed up once (untimed) on a 2 s video, so imports and page-ins are not charged to the
first row. The two tools do different work: Heaters normalises the source, encodes an all-intra
review proxy, renders sprite sheets and detects shots (its clips are frame ranges; clip files are
only exported after approval), while PySceneDetect detects and cuts one MP4 per scene.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.corpus import (
    CORPUS_VERSION,
    Motion,
    Shot,
    ShotKind,
    Transition,
    Truth,
    drawing_tools,
    load_truth,
    render,
)
from bench.shot_detection import match
from commands.service import HeatersApplication
from entrypoints.pipeline import Pipeline, build_pipeline
from infra.config import Settings
from infra.database import embedded_postgres, eventsourcing_env
from infra.media.ffmpeg import ffmpeg_exe
from infra.media.media_pass import Analysis, SpriteSpec, decode_once
from infra.media.shot_detection import make_detector
from infra.media.sprites import SpriteFormat
from infra.object_storage import LocalObjectStorage
from infra.schema import prepare_schema

logger = logging.getLogger(__name__)

#: Bump when the generated program changes (invalidates the cached videos).
PROGRAM_VERSION = 1
POLL_SECONDS = 0.05
#: What ``heaters up`` uses (``Pipeline.start`` defaults).
WORKER_THREADS = 2
MANAGER_POLL_SECONDS = 0.2
#: (stage, start event, result event) in pipeline order.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("download", "DownloadStarted", "Downloaded"),
    ("proxy", "ProxyStarted", "ProxyCreated"),
    ("sprites", "SpritesStarted", "SpritesCreated"),
    ("shots", "ShotDetectionStarted", "ShotsDetected"),
)


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> tuple[float, int] | None:
    """(CPU seconds of ``pid`` and of the children it reaped, its parent's pid) from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ... utime(12) ...
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS, int(fields[1])


def server_cpu_seconds(pgdata: Path | None) -> float:
    """CPU seconds of the PostgreSQL server whose data is ``pgdata``: its postmaster (with the
    backends it reaped) and its live backends; 0 when there is none."""
    if pgdata is None:
        return 0.0
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        found = _proc_cpu(int(entry.name))
        if found is not None and (int(entry.name) == postmaster or found[1] == postmaster):
            total += found[0]
    return total


def cpu_seconds(pgdata: Path | None = None) -> float:
    """CPU seconds so far of this process, its reaped children (ffmpeg, PySceneDetect) and the
    PostgreSQL server of ``pgdata``."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime + server_cpu_seconds(pgdata)


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children and their reaped descendants."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class Source:
    """One benchmark video: ``seconds`` long (before the dissolve's overlap) at ``width`` x ``height``."""

    name: str
    width: int
    height: int
    fps: float
    seed: int
    noise: float = 2.0


SOURCES: tuple[Source, ...] = (
    Source("edit_720p25", 1280, 720, 25.0, 31),
    Source("edit_360p25", 640, 360, 25.0, 32),
)
WARMUP = Source("warmup_180p25", 320, 180, 25.0, 33, noise=0.0)

#: (kind, relative length, motion, speed in px/frame at 640 wide or zoom rate, scene). Shot 7 enters
#: through a dissolve; shots 2 and 12 look at the same world (shot / reverse shot).
_PROGRAM: tuple[tuple[ShotKind, float, Motion, float, int], ...] = (
    ("landscape", 1.1, "pan", 6.0, 0),
    ("city", 0.8, "static", 0.0, 1),
    ("shapes", 0.9, "static", 3.0, 0),
    ("landscape", 1.2, "zoom", 0.006, 2),
    ("gradient", 0.7, "static", 2.0, 0),
    ("city", 1.3, "handheld", 0.0, 2),
    ("texture", 0.9, "static", 2.0, 0),
    ("landscape", 1.0, "static", 0.0, 1),
    ("city", 1.2, "pan", 10.0, 3),
    ("shapes", 0.8, "static", 5.0, 0),
    ("landscape", 1.1, "whip", 30.0, 3),
    ("city", 0.9, "static", 0.0, 1),
)
_DISSOLVE_INTO = 6  # index of the shot entered through a dissolve
_DISSOLVE_FRAMES = 20


def program(source: Source, seconds: float) -> tuple[list[Shot], list[Transition]]:
    """Twelve shots filling ``seconds`` (lengths by weight), cuts everywhere but one dissolve."""
    total = max(round(seconds * source.fps), 6 * len(_PROGRAM))
    weight = sum(p[1] for p in _PROGRAM)
    lengths = [max(6, round(total * p[1] / weight)) for p in _PROGRAM]
    lengths[-1] = max(6, total - sum(lengths[:-1]))
    scale = source.width / 640
    shots: list[Shot] = []
    for (kind, _, motion, speed, scene), frames in zip(_PROGRAM, lengths, strict=True):
        px = speed if motion == "zoom" else speed * scale
        shots.append(Shot(kind, frames, motion, px, scene=scene))
    transitions = [Transition("cut") for _ in range(len(shots) - 1)]
    limit = min(lengths[_DISSOLVE_INTO - 1], lengths[_DISSOLVE_INTO]) // 3
    transitions[_DISSOLVE_INTO - 1] = Transition("dissolve", min(_DISSOLVE_FRAMES, limit))
    return shots, transitions


def ensure_video(source: Source, seconds: float, cache: Path) -> tuple[Path, Truth]:
    """The cached video for ``source`` (generated when missing or stale) and its truth."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{source.name}_{seconds:g}s.mp4"
    stamp = path.with_suffix(".stamp")
    shots, transitions = program(source, seconds)
    want = json.dumps(
        {
            "corpus_version": CORPUS_VERSION,
            "program_version": PROGRAM_VERSION,
            "source": asdict(source),
            "shots": [asdict(s) for s in shots],
            "transitions": [asdict(t) for t in transitions],
            "tools": drawing_tools(),
        },
        sort_keys=True,
    )
    if path.exists() and path.with_suffix(".json").exists() and stamp.exists() and stamp.read_text() == want:
        return path, load_truth(path)
    t0 = time.perf_counter()
    truth = render(path, shots, transitions, source)
    stamp.write_text(want)
    print(f"generated {path} ({truth.frame_count} frames) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path, truth


# ---------------------------------------------------------------------------------------------- Heaters


@dataclass
class HeatersRun:
    wall_seconds: float
    state: str
    clips: int
    cuts: list[int]
    stages: dict[str, float]
    attempts: dict[str, int]
    dispatch_overhead: float
    events_span: float
    cpu_seconds: float = 0.0
    sprite_bytes: int = 0
    sprite_sheets: int = 0
    timeline: list[tuple[str, float]] = field(default_factory=list)


@contextmanager
def heaters(tmp: Path, *, single_pass: bool = True) -> Iterator[tuple[HeatersApplication, Pipeline]]:
    """Heaters on an embedded PostgreSQL under ``tmp``: local media, in-process broker and worker.
    ``single_pass=False`` runs it as before issue #11: each stage decodes the video on its own."""
    with ExitStack() as stack:
        address = stack.enter_context(embedded_postgres(tmp / "pg"))
        schema = "bench"
        prepare_schema(address, schema)
        app = HeatersApplication(env=eventsourcing_env(address, schema, pool_size=10))
        stack.callback(app.close)
        # explicit redis_url/s3 settings: a HEATERS_* variable in the environment must not redirect the run
        settings = Settings(
            home=tmp / "home",
            database_schema=schema,
            redis_url=None,
            s3_bucket=None,
            media_dir=None,
            media_single_pass=single_pass,
        )
        storage = LocalObjectStorage(tmp / "media")
        pipeline = build_pipeline(settings, app, address, storage)
        pipeline.start(worker=True, worker_threads=WORKER_THREADS, poll_seconds=MANAGER_POLL_SECONDS)
        stack.callback(pipeline.stop)
        yield app, pipeline


def run_heaters(
    app: HeatersApplication,
    video: Path,
    timeout: float,
    media: Path | None = None,
    pgdata: Path | None = None,
) -> HeatersRun:
    """Submit ``video`` and wait until it is clipped; ``pgdata`` is the embedded server's data, whose
    CPU is charged to the run."""
    cpu0 = cpu_seconds(pgdata)
    t0 = time.perf_counter()
    video_id = app.submit(str(video), "user:bench")
    state = ""
    while True:
        state = app.get_video(video_id).state
        if state == "clipped" or state.endswith("_failed"):
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"Heaters did not finish {video.name} within {timeout:.0f} s (state {state})")
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pgdata) - cpu0
    if state != "clipped":
        stage = app.get_video(video_id).failed_stage or "?"
        reason = app.get_video(video_id).stages[stage].last_error if stage != "?" else None
        raise RuntimeError(f"Heaters failed on {video.name}: {state}: {reason}")
    result = _heaters_result(app, video_id, wall)
    result.cpu_seconds = cpu
    manifest = app.get_video(video_id).media.get("sprites")
    if media is not None and manifest is not None:
        sheets = [p for p in (media / manifest).parent.glob("sheet_*") if p.is_file()]
        result.sprite_bytes = sum(p.stat().st_size for p in sheets)
        result.sprite_sheets = len(sheets)
    return result


def _heaters_result(app: HeatersApplication, video_id: UUID, wall: float) -> HeatersRun:
    history = app.history(video_id)
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    counts: dict[str, int] = {}
    for entry in history:
        first.setdefault(entry.event, entry.timestamp)
        last[entry.event] = entry.timestamp
        counts[entry.event] = counts.get(entry.event, 0) + 1
    submitted = first["Submitted"]
    stages: dict[str, float] = {}
    attempts: dict[str, int] = {}
    overhead = 0.0
    previous = submitted
    for stage, started, done in STAGES:
        stages[stage] = (last[done] - first[started]).total_seconds()
        attempts[stage] = counts.get(started, 0)
        overhead += (first[started] - previous).total_seconds()
        previous = last[done]
    clips = app.clips_of(video_id)
    not_pending = [c.state for c in clips if c.state != "pending_review"]
    if not_pending:
        logger.warning("clips not pending review: %s", not_pending)
    return HeatersRun(
        wall_seconds=wall,
        state=app.get_video(video_id).state,
        clips=len(clips),
        cuts=list(app.get_video(video_id).cuts),
        stages=stages,
        attempts=attempts,
        dispatch_overhead=overhead,
        events_span=(previous - submitted).total_seconds(),
        timeline=[(e.event, (e.timestamp - submitted).total_seconds()) for e in history],
    )


# ----------------------------------------------------------------------------- the decode pass alone

#: (name, stream-copy a playable source into the proxy, sprite sheet format, its quality or None for
#: the default). JPEG q7 matches WebP q60's bytes and SSIM on the bench corpus.
PASS_VARIANTS: tuple[tuple[str, bool, SpriteFormat, int | None], ...] = (
    ("all-intra, webp", False, "webp", None),
    ("all-intra, jpeg q7", False, "jpeg", 7),
    ("copy, webp", True, "webp", None),
    ("copy, jpeg q3", True, "jpeg", 3),
    ("copy, jpeg q7", True, "jpeg", 7),
)


def run_pass(
    video: Path,
    work: Path,
    settings: Settings,
    name: str,
    copy_playable: bool,
    sprite_format: SpriteFormat,
    quality: int | None,
) -> dict[str, Any]:
    """The proxy stage's decode pass on ``video`` as the stage runs it (settings' proxy, sprites and
    shot detector, which consumes the frames), outside the pipeline; CPU of this process and ffmpeg."""
    spec = SpriteSpec(
        settings.sprite_fps, settings.sprite_tile_width, settings.sprite_columns, settings.sprite_rows,
        sprite_format, quality,
    )  # fmt: skip
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    detector = make_detector(settings.shot_detector)
    cuts: list[int] = []
    analysis = (
        Analysis(
            detector.analysis_width, detector.pix_fmt, lambda batch: cuts.extend(detector.process(batch))
        )
        if detector.analysis_size is None
        else None
    )
    result = decode_once(
        video,
        work / "proxy.mp4",
        max_height=settings.proxy_max_height,
        preset=settings.proxy_preset,
        sprites=(spec, work / "sprites"),
        analysis=analysis,
        copy_playable=copy_playable,
    )
    if result.analysed_frames is not None:
        cuts.extend(detector.finish())
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    sheets = [p for p in (work / "sprites").glob("sheet_*") if p.is_file()]
    return {
        "variant": name,
        "copy_playable": copy_playable,
        "sprite_format": sprite_format,
        "sprite_quality": quality,
        "proxy_copied": result.proxy_copied,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "frames": result.proxy.frame_count,
        "analysed_frames": result.analysed_frames,
        "cuts": len({c for c in cuts if 0 < c < result.proxy.frame_count}),
        "proxy_bytes": (work / "proxy.mp4").stat().st_size,
        "sprite_bytes": sum(p.stat().st_size for p in sheets),
    }


# -------------------------------------------------------------------------------------- PySceneDetect


@dataclass
class SceneDetectRun:
    wall_seconds: float
    cpu_seconds: float
    scenes: int
    command: list[str]


def scenedetect_exe() -> str:
    beside = Path(sys.executable).parent / "scenedetect"  # the venv's console script
    if beside.exists():
        return str(beside)
    found = shutil.which("scenedetect")
    if found is None:
        raise RuntimeError("the scenedetect console script is not installed")
    return found


def ffmpeg_path_env(bin_dir: Path) -> dict[str, str]:
    """The environment with a directory holding ``ffmpeg`` (imageio-ffmpeg's binary) first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "ffmpeg"
    if not link.exists():
        link.symlink_to(ffmpeg_exe())
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_scenedetect(video: Path, out_dir: Path, env: dict[str, str], timeout: float) -> SceneDetectRun:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [scenedetect_exe(), "-i", str(video), "detect-adaptive", "split-video", "-o", str(out_dir)]
    cpu0 = children_cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    cpu = children_cpu_seconds() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"scenedetect failed ({proc.returncode}): {proc.stderr[-2000:]}")
    scenes = len([p for p in out_dir.iterdir() if p.suffix == ".mp4"])
    return SceneDetectRun(wall_seconds=wall, cpu_seconds=cpu, scenes=scenes, command=cmd)


# -------------------------------------------------------------------------------------------- report


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'video':<16} {'src s':>6} {'Heaters s/s':>11} {'PSD s/s':>8} {'H/PSD':>6} "
        f"{'truth':>5} {'H clips':>7} {'PSD':>4} {'H wall':>7} {'PSD wall':>8} "
        f"{'download':>8} {'proxy':>6} {'sprites':>7} {'shots':>6} {'dispatch':>8} {'MB/min':>6} "
        f"{'H cpu':>6} {'PSD cpu':>7} {'PSD/H cpu':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        h, p, st = r["heaters"], r["pyscenedetect"], r["heaters"]["stages"]
        lines.append(
            f"{r['video']:<16} {r['source_seconds']:6.1f} {h['source_seconds_per_second']:11.2f} "
            f"{p['source_seconds_per_second']:8.2f} {r['ratio_heaters_over_pyscenedetect']:6.2f} "
            f"{r['truth_shots']:5d} {h['clips']:7d} {p['scenes']:4d} {h['wall_seconds']:7.2f} "
            f"{p['wall_seconds']:8.2f} {st['download']:8.2f} {st['proxy']:6.2f} {st['sprites']:7.2f} "
            f"{st['shots']:6.2f} {h['dispatch_overhead']:8.2f} "
            f"{h['sprite_bytes_per_source_minute'] / 1e6:6.2f} {h['cpu_seconds']:6.2f} "
            f"{p['cpu_seconds']:7.2f} {p['cpu_seconds'] / h['cpu_seconds']:9.2f}"
        )
        old = r.get("heaters_separate_decodes")
        if old is not None:
            so = old["stages"]
            lines.append(
                f"{'  separate':<16} {'':6} {old['source_seconds_per_second']:11.2f} {'':8} {'':6} {'':5} "
                f"{old['clips']:7d} {'':4} {old['wall_seconds']:7.2f} {'':8} {so['download']:8.2f} "
                f"{so['proxy']:6.2f} {so['sprites']:7.2f} {so['shots']:6.2f} {old['dispatch_overhead']:8.2f} "
                f"{old['sprite_bytes_per_source_minute'] / 1e6:6.2f} {old['cpu_seconds']:6.2f}"
            )
    return "\n".join(lines)


def _variants_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'video':<16} {'decode pass':<18} {'copied':>6} {'wall':>6} {'cpu':>6} {'src s/cpu s':>11} "
        f"{'PSD/cpu':>7} {'proxy MB/min':>12} {'sprites MB/min':>14} {'cuts':>4}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        minutes = r["source_seconds"] / 60
        for v in r.get("decode_pass_variants", []):
            lines.append(
                f"{r['video']:<16} {v['variant']:<18} {'yes' if v['proxy_copied'] else 'no':>6} "
                f"{v['wall_seconds']:6.2f} {v['cpu_seconds']:6.2f} {r['source_seconds'] / v['cpu_seconds']:11.2f} "
                f"{r['pyscenedetect']['cpu_seconds'] / v['cpu_seconds']:7.2f} "
                f"{v['proxy_bytes'] / 1e6 / minutes:12.2f} {v['sprite_bytes'] / 1e6 / minutes:14.2f} {v['cuts']:4d}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each source video")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    parser.add_argument("--corpus", type=Path, default=Path("bench/results/pipeline-corpus"))
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--separate",
        action="store_true",
        help="also run Heaters with HEATERS_MEDIA_SINGLE_PASS=false (each stage decodes on its own)",
    )
    parser.add_argument(
        "--pass-variants",
        action="store_true",
        help="also time the proxy stage's decode pass alone in each proxy mode (all-intra, stream copy) "
        "and sprite format (WebP, JPEG)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("pyscenedetect").setLevel(logging.ERROR)

    videos = [ensure_video(s, args.seconds, args.corpus) for s in SOURCES]
    warmup_video, _ = ensure_video(WARMUP, 2.0, args.corpus)
    rows: list[dict[str, Any]] = []
    warmup: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="heaters-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = ffmpeg_path_env(tmp / "bin")
        separate: dict[str, HeatersRun] = {}
        if args.separate:  # before the main run, so both see a warm page cache
            with heaters(tmp / "heaters-separate", single_pass=False) as (app, _pipeline):
                run_heaters(app, warmup_video, args.timeout)
                for path, _truth in videos:
                    separate[path.stem] = run_heaters(
                        app,
                        path,
                        args.timeout,
                        tmp / "heaters-separate" / "media",
                        tmp / "heaters-separate" / "pg" / "pgdata",
                    )
        t0 = time.perf_counter()
        with heaters(tmp / "heaters") as (app, _pipeline):
            warmup["heaters_startup_seconds"] = time.perf_counter() - t0
            warmup["heaters_seconds"] = run_heaters(app, warmup_video, args.timeout).wall_seconds
            warmup["pyscenedetect_seconds"] = run_scenedetect(
                warmup_video, tmp / "psd-warmup", env, args.timeout
            ).wall_seconds
            for path, truth in videos:
                source_seconds = truth.frame_count / truth.fps
                load_before = _load()
                h = run_heaters(
                    app, path, args.timeout, tmp / "heaters" / "media", tmp / "heaters" / "pg" / "pgdata"
                )
                p = run_scenedetect(path, tmp / f"psd-{path.stem}", env, args.timeout)
                load_after = _load()
                h_rate = source_seconds / h.wall_seconds
                p_rate = source_seconds / p.wall_seconds
                score = match(truth.transitions, h.cuts)
                row: dict[str, Any] = {
                    "video": path.stem.rsplit("_", 1)[0],
                    "file": str(path),
                    "width": truth.width,
                    "height": truth.height,
                    "fps": truth.fps,
                    "frames": truth.frame_count,
                    "source_seconds": source_seconds,
                    "truth_shots": len(truth.transitions) + 1,
                    "truth_transitions": [asdict(t) for t in truth.transitions],
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "heaters": {
                        **asdict(h),
                        "source_seconds_per_second": h_rate,
                        "sprite_bytes_per_source_minute": h.sprite_bytes * 60 / source_seconds,
                        "cut_score": score.to_json(),
                    },
                    "pyscenedetect": {**asdict(p), "source_seconds_per_second": p_rate},
                    "ratio_heaters_over_pyscenedetect": h_rate / p_rate,
                }
                if path.stem in separate:
                    old = separate[path.stem]
                    row["heaters_separate_decodes"] = {
                        **asdict(old),
                        "source_seconds_per_second": source_seconds / old.wall_seconds,
                        "sprite_bytes_per_source_minute": old.sprite_bytes * 60 / source_seconds,
                    }
                rows.append(row)
                print(
                    f"{path.name}: Heaters {h.wall_seconds:.2f} s, {h.cpu_seconds:.2f} CPU s ({h.clips} clips), "
                    f"PySceneDetect {p.wall_seconds:.2f} s, {p.cpu_seconds:.2f} CPU s ({p.scenes} scenes), "
                    f"load {load_before} → {load_after}",
                    flush=True,
                )

        if args.pass_variants:  # after the pipeline stopped, so its idle threads cost nothing here
            settings = Settings(home=tmp / "variants-home", redis_url=None, s3_bucket=None, media_dir=None)
            for (path, _truth), row in zip(videos, rows, strict=True):
                row["decode_pass_variants"] = []
                for name, copy, sprite_format, quality in PASS_VARIANTS:
                    work = tmp / "variants" / path.stem / name.replace(", ", "-").replace(" ", "")
                    variant = run_pass(path, work, settings, name, copy, sprite_format, quality)
                    row["decode_pass_variants"].append(variant)
                    shutil.rmtree(work, ignore_errors=True)
                    print(
                        f"{path.name}: decode pass {name}: {variant['wall_seconds']:.2f} s, "
                        f"{variant['cpu_seconds']:.2f} CPU s, load {_load()}",
                        flush=True,
                    )

    print()
    print(_table(rows))
    print(
        "\ns/s = source seconds per wall second; stage columns are seconds between each stage's "
        "Started and result events; dispatch = time between stages (process manager + broker); "
        "MB/min = sprite sheet bytes per source minute. 'separate' = HEATERS_MEDIA_SINGLE_PASS=false "
        "(each stage decodes on its own, as before issue #11), run first in the same process. "
        "cpu = CPU seconds over the run (Heaters: this process, its ffmpeg children and PostgreSQL; "
        "PSD: its process tree); PSD/H cpu = how many times Heaters' CPU PySceneDetect spent."
    )
    if args.pass_variants:
        print()
        print(_variants_table(rows))
        print(
            "\nThe proxy stage's decode pass alone (proxy, sprites, shot detector), outside the pipeline; "
            "cpu = this process and its ffmpeg; PSD/cpu = PySceneDetect's CPU seconds (row above) over it."
        )
    print("warm-up (untimed above): " + ", ".join(f"{k} {v:.2f}" for k, v in warmup.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "machine": {
                    "python": platform.python_version(),
                    "processor": platform.processor(),
                    "cpus": os.cpu_count(),
                },
                "heaters_config": {
                    "broker": "in-process (StubBroker)",
                    "worker_threads": WORKER_THREADS,
                    "process_manager_poll_seconds": MANAGER_POLL_SECONDS,
                    "state_poll_seconds": POLL_SECONDS,
                },
                "pyscenedetect_command": "scenedetect -i VIDEO detect-adaptive split-video -o OUTDIR",
                "warmup": warmup,
                "videos": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
