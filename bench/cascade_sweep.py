"""How far each of the cascade's settings can move before its answers change, corpus by corpus.

    python -m bench.cascade_sweep bench/results/corpus bench/results/dev-801 ... \
        [--settings veto,support] [--factors 0.8,0.9,1.1,1.25] [--steps -2,-1,1,2] [--jobs 2] \
        [--json bench/results/cascade_sweep.json]

Every setting of :class:`CascadeDetector` that is a number is tried at each factor of its default
(an integer at each step from it; a switch turned over), one setting at a time, from the decodes and
model windows :mod:`bench.cascade_dev` caches. The baseline is the defaults, run in the same
invocation. The table gives, for each setting and value, each corpus's change in true, false and
missed boundaries against the baseline (``.`` where every video's cuts are the baseline's), and
the total F1. A setting whose neighbouring values already change the answers sits on an edge:
the corpora it was chosen on say nothing about the values just past it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cascade_dev import CACHE, CachedModel, decoded
from bench.corpus import load_truth
from bench.shot_detection import match
from infra.media import shot_detection as sd

#: settings that are not the detector's judgement: the plan's schedule during the decode, the model
SKIP = {"question_margins", "blend_spans", "speculate", "plan_every", "plan_guard", "plan_lookback"}
SKIP |= {"plan_reach", "bar_frames", "model"}


@dataclass(frozen=True)
class Video:
    corpus: str
    name: str
    state: bytes  # the pickled detector after the decode
    truth: Any


def defaults() -> dict[str, Any]:
    """The detector's numeric and switch settings with their defaults."""
    params = inspect.signature(sd.CascadeDetector.__init__).parameters
    return {n: p.default for n, p in params.items() if n not in SKIP and isinstance(p.default, int | float)}


def variants(
    settings: Sequence[str], factors: Sequence[float], steps: Sequence[int]
) -> list[tuple[str, Any]]:
    found = defaults()
    out: list[tuple[str, Any]] = []
    for name in settings:
        value = found[name]
        if isinstance(value, bool):
            out.append((name, not value))
        elif isinstance(value, int):
            out += [(name, value + s) for s in steps if value + s >= 0]
        else:
            out += [(name, round(value * f, 6)) for f in factors]
    return out


_VIDEOS: list[Video] = []
_MODEL: CachedModel | None = None


def _answers(variant: tuple[str, Any] | None) -> tuple[tuple[str, Any] | None, dict[str, list[int]]]:
    """Every video's cuts with one setting changed (``None``: the defaults)."""
    assert _MODEL is not None
    cuts: dict[str, list[int]] = {}
    for video in _VIDEOS:
        detector: sd.CascadeDetector = pickle.loads(video.state)
        detector._model = _MODEL
        detector.question_margins = dict(sd.QUESTION_MARGINS)
        if variant is not None:
            setattr(detector, variant[0], variant[1])
        cuts[f"{video.corpus}/{video.name}"] = detector.finish()
    return variant, cuts


def _counts(videos: Sequence[Video], cuts: dict[str, list[int]]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, list[int]] = {}
    for video in videos:
        score = match(video.truth, cuts[f"{video.corpus}/{video.name}"])
        counts = out.setdefault(video.corpus, [0, 0, 0])
        counts[0] += score.tp
        counts[1] += score.fp
        counts[2] += score.fn
    return {corpus: (c[0], c[1], c[2]) for corpus, c in out.items()}


def _f1(counts: dict[str, tuple[int, int, int]]) -> float:
    tp = sum(c[0] for c in counts.values())
    wrong = sum(c[1] + c[2] for c in counts.values())
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


def main(argv: Sequence[str] | None = None) -> None:
    global _MODEL
    parser = argparse.ArgumentParser(description="One setting at a time: where the cascade's answers change.")
    parser.add_argument("dirs", nargs="+", type=Path, help="corpus folders (videos with truth)")
    parser.add_argument("--settings", default="", help="comma-separated; default every numeric setting")
    parser.add_argument("--factors", default="0.8,0.9,1.1,1.25", help="for settings that are floats")
    parser.add_argument("--steps", default="-2,-1,1,2", help="for settings that are integers")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench/results/cascade_sweep.json"))
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    settings = args.settings.split(",") if args.settings else sorted(defaults())
    unknown = sorted(set(settings) - set(defaults()))
    if unknown:
        parser.error(f"not a numeric setting of CascadeDetector: {', '.join(unknown)}")
    factors = [float(f) for f in args.factors.split(",")]
    steps = [int(s) for s in args.steps.split(",")]

    for folder in args.dirs:
        for path in sorted(folder.glob("*.mp4")):
            state = pickle.dumps(decoded(path, args.cache))
            _VIDEOS.append(Video(folder.name, path.stem, state, load_truth(path).transitions))
    _MODEL = CachedModel(args.cache / "model")
    started = time.perf_counter()
    _, base = _answers(None)  # the baseline first, in this process: it fills the model's cache
    base_counts = _counts(_VIDEOS, base)
    corpora = list(base_counts)
    todo = variants(settings, factors, steps)
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        found = pool.map(_answers, todo, chunksize=1)

    rows: list[dict[str, Any]] = []
    width = max(len(c) for c in corpora)
    header = (
        f"{'setting':24} {'value':>9}  " + "  ".join(f"{c:>{max(width, 11)}}" for c in corpora) + "      F1"
    )
    print(header)
    print(f"{'(defaults)':24} {'':>9}  " + "  ".join(
        f"{'/'.join(map(str, base_counts[c])):>{max(width, 11)}}" for c in corpora
    ) + f"  {_f1(base_counts):.4f}")  # fmt: skip
    for variant, cuts in found:
        assert variant is not None
        counts = _counts(_VIDEOS, cuts)
        cells = []
        changed: dict[str, int] = {}
        for corpus in corpora:
            names = [f"{v.corpus}/{v.name}" for v in _VIDEOS if v.corpus == corpus]
            changed[corpus] = sum(cuts[n] != base[n] for n in names)
            if not changed[corpus]:
                cells.append(".")
            else:
                d = [counts[corpus][i] - base_counts[corpus][i] for i in range(3)]
                cells.append("/".join(f"{x:+d}" for x in d))
        name, value = variant
        print(
            f"{name:24} {value!s:>9}  "
            + "  ".join(f"{c:>{max(width, 11)}}" for c in cells)
            + f"  {_f1(counts):.4f}"
        )
        rows.append(
            {"setting": name, "value": value, "counts": counts, "videos_changed": changed, "f1": _f1(counts)}
        )
    print(f"{len(todo)} variants on {len(_VIDEOS)} videos in {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "corpora": corpora,
                "defaults": {n: defaults()[n] for n in settings},
                "baseline": {"counts": base_counts, "f1": _f1(base_counts)},
                "variants": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
