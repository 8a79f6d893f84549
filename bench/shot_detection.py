"""Shot-detection benchmark: Heaters' detector versus every PySceneDetect 0.7 detector.

    /work/main/.venv/bin/python -m bench.shot_detection [--out bench/results/shot_detection.json]

Builds (or reuses) the generated corpus under ``bench/results/corpus`` (see ``bench/corpus.py``),
then for each video reports precision / recall / F1 and frames per second for every detector,
plus the pure-decode rates (OpenCV ``read`` at native resolution and Heaters' reduced-resolution
ffmpeg pipe) as the speed limit. A hard cut counts when detected within +-2 frames; a gradual
transition (dissolve, fade) counts when one reported boundary falls inside it (+-2 frames); each
truth transition and each detection is matched at most once.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2

from bench.corpus import Truth, TruthTransition, build_corpus, load_truth
from infra.media.ffmpeg import decode_batches, probe, scaled_size
from infra.media.shot_detection import HeatersDetector, detect_shots

logger = logging.getLogger(__name__)

TOLERANCE = 2
PYSCENEDETECT = ("content", "adaptive", "histogram", "hash", "threshold")


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    frames: int = 0
    seconds: float = 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.frames += other.frames
        self.seconds += other.seconds

    def to_json(self) -> dict[str, float]:
        return {
            **asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1, "fps": self.fps,
        }  # fmt: skip


def match(truth: Sequence[TruthTransition], cuts: Sequence[int], tolerance: int = TOLERANCE) -> Score:
    """Match detections to truth (each used at most once), closest detection first."""
    windows = [
        (t.start - tolerance, t.end + tolerance, (t.start + t.end) / 2)
        for t in sorted(truth, key=lambda t: t.start)
    ]
    pairs = sorted(
        (abs(c - mid), i, j)
        for i, (lo, hi, mid) in enumerate(windows)
        for j, c in enumerate(cuts)
        if lo <= c <= hi
    )
    used_t: set[int] = set()
    used_c: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_c:
            used_t.add(i)
            used_c.add(j)
    return Score(tp=len(used_t), fp=len(cuts) - len(used_c), fn=len(windows) - len(used_t))


def _pyscenedetect(kind: str) -> Any:
    import scenedetect as sd

    factories: dict[str, Callable[[], Any]] = {
        "content": sd.ContentDetector,
        "adaptive": sd.AdaptiveDetector,
        "histogram": sd.HistogramDetector,
        "hash": sd.HashDetector,
        "threshold": sd.ThresholdDetector,
    }
    return factories[kind]()


def run_pyscenedetect(path: Path, kind: str) -> tuple[list[int], int, float]:
    import scenedetect as sd

    t0 = time.perf_counter()
    video = sd.open_video(str(path))
    manager = sd.SceneManager()  # auto_downscale defaults to True
    manager.add_detector(_pyscenedetect(kind))
    frames = manager.detect_scenes(video)
    scenes = manager.get_scene_list()
    seconds = time.perf_counter() - t0
    cuts = sorted({s[0].frame_num for s in scenes[1:]})
    return cuts, frames, seconds


def run_heaters(path: Path) -> tuple[list[int], int, float, dict[int, str]]:
    res = detect_shots(path, HeatersDetector())
    return res.cuts, res.frame_count, res.seconds, res.kinds


def decode_opencv(path: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n, time.perf_counter() - t0


def decode_pipe(path: Path, width: int = 64) -> tuple[int, float]:
    t0 = time.perf_counter()
    info = probe(path)
    w, h = scaled_size(info.width, info.height, width)
    n = sum(len(b) for b in decode_batches(path, w, h, "gray"))
    return n, time.perf_counter() - t0


def _row(name: str, s: Score) -> str:
    return f"  {name:<20} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.tp:4d} {s.fp:4d} {s.fn:4d} {s.fps:9.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/shot_detection.json"))
    parser.add_argument("--corpus", type=Path, default=Path("bench/results/corpus"))
    parser.add_argument("--only", choices=["heaters", "all"], default="all")
    parser.add_argument("--verbose", action="store_true", help="print misses and false alarms")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("pyscenedetect").setLevel(logging.ERROR)

    videos = build_corpus(args.corpus)
    # warm-up (not timed): page in the ffmpeg binary and the libraries so the first row is fair
    run_heaters(videos[0])
    if args.only == "all":
        run_pyscenedetect(videos[0], "adaptive")
    names = ["heaters"] + ([f"psd-{k}" for k in PYSCENEDETECT] if args.only == "all" else [])
    totals = {n: Score() for n in names}
    decode_totals = {"decode-opencv-native": Score(), "decode-pipe-64px": Score()}
    per_video: dict[str, Any] = {}
    header = f"  {'detector':<20} {'prec':>6} {'recall':>6} {'F1':>6} {'tp':>4} {'fp':>4} {'fn':>4} {'frames/s':>9}"
    for video in videos:
        truth: Truth = load_truth(video)
        kinds = [t.kind for t in truth.transitions]
        print(
            f"\n{video.name}: {truth.width}x{truth.height} @ {truth.fps:g} fps, {truth.frame_count} frames, "
            + ", ".join(f"{k}={kinds.count(k)}" for k in ("cut", "dissolve", "fade"))
        )
        print(header)
        rows: dict[str, Any] = {}
        for name in names:
            if name == "heaters":
                cuts, frames, seconds, found_kinds = run_heaters(video)
            else:
                cuts, frames, seconds = run_pyscenedetect(video, name.removeprefix("psd-"))
                found_kinds = {}
            score = match(truth.transitions, cuts)
            score.frames, score.seconds = frames, seconds
            totals[name].add(score)
            rows[name] = {**score.to_json(), "cuts": cuts}
            print(_row(name, score))
            if args.verbose and name == "heaters":
                _explain(truth, cuts, found_kinds)
        for name, fn in (("decode-opencv-native", decode_opencv), ("decode-pipe-64px", decode_pipe)):
            n, sec = fn(video)
            s = Score(frames=n, seconds=sec)
            decode_totals[name].add(s)
            rows[name] = {"frames": n, "seconds": sec, "fps": s.fps}
            print(f"  {name:<20} {'':>6} {'':>6} {'':>6} {'':>4} {'':>4} {'':>4} {s.fps:9.0f}")
        per_video[video.name] = {"truth": [asdict(t) for t in truth.transitions], "results": rows}

    print("\nTOTAL")
    print(header)
    for name, s in totals.items():
        print(_row(name, s))
    for name, s in decode_totals.items():
        print(f"  {name:<20} {'':>6} {'':>6} {'':>6} {'':>4} {'':>4} {'':>4} {s.fps:9.0f}")
    summary: dict[str, Any] = {}
    if args.only == "all":
        best = max((n for n in names if n != "heaters"), key=lambda n: totals[n].f1)
        f1_ratio = totals["heaters"].f1 / max(totals[best].f1, 1e-9)
        fps_ratio = totals["heaters"].fps / max(totals["psd-adaptive"].fps, 1e-9)
        summary = {
            "best_pyscenedetect": best,
            "f1_ratio_vs_best": f1_ratio,
            "fps_ratio_vs_adaptive": fps_ratio,
        }
        print(f"\nHeaters F1 / best PySceneDetect F1 ({best}): {f1_ratio:.3f}")
        print(f"Heaters fps / PySceneDetect Adaptive fps: {fps_ratio:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "tolerance_frames": TOLERANCE,
                "machine": {"python": platform.python_version(), "processor": platform.processor()},
                "heaters_params": HeatersDetector().params,
                "totals": {n: s.to_json() for n, s in totals.items()},
                "decode": {n: s.to_json() for n, s in decode_totals.items()},
                "summary": summary,
                "videos": per_video,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


def _explain(truth: Truth, cuts: Sequence[int], kinds: dict[int, str]) -> None:
    for t in truth.transitions:
        hit = [c for c in cuts if t.start - TOLERANCE <= c <= t.end + TOLERANCE]
        if not hit:
            print(f"      MISS {t.kind} {t.start}-{t.end}")
    for c in cuts:
        if not any(t.start - TOLERANCE <= c <= t.end + TOLERANCE for t in truth.transitions):
            print(f"      FALSE {c} ({kinds.get(c, '?')})")


if __name__ == "__main__":
    main()
