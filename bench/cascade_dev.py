"""The cascade's answers for a variant of its plan, without decoding or scoring again.

    python -m bench.cascade_dev bench/results/corpus [bench/results/dev-801 ...]
        [--margins cluster=8:20,veto=25] [--set colour_reach=20] [--kinds]
        [--save base.pkl] [--compare base.pkl]

Each video is decoded once into a :class:`CascadeDetector` (``speculate=False``: no model during
the decode) that is pickled under ``bench/results/cascade-cache/decode``; every run unpickles it
and runs ``finish`` with the model's windows cached under ``bench/results/cascade-cache/model`` by
the hash of their frames, so a variant pays only for the windows it changes. ``--margins`` overrides
``question_margins`` (``kind=frames`` or ``kind=before:after``), ``--set`` any other attribute.
The answers equal the bench's (``python -m bench.shot_detection --detectors cascade``: every
video's cuts and model frames; the plans during the decode only score windows ahead).
``--kinds`` counts the final windows' frames by the set of question kinds whose own span covers
them (``(gap)``: frames only the merge of two windows adds). ``--compare`` names every video whose
cuts differ from a run saved with ``--save``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import pickle
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import load_truth
from bench.shot_detection import match
from infra.media import shot_detection as sd
from infra.media.ffmpeg import decode_batches, probe, scaled_size

CACHE = Path("bench/results/cascade-cache")  # not .dev/: that folder travels to the device machine


class CachedModel:
    """The cascade's model, its outputs cached on disk by the hash of each window's frames."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._model: Any = None
        self.calls = 0
        self.misses = 0

    def predict(self, windows: sd.FrameBatch) -> sd.FloatArray:
        key = f"{hashlib.sha1(windows.tobytes()).hexdigest()}_{windows.shape[1]}"
        path = self.root / key[:2] / f"{key}.npy"
        self.calls += 1
        if path.exists():
            out: sd.FloatArray = np.load(path)
            return out
        self.misses += 1
        if self._model is None:
            self._model = sd.cascade_model()
        out = self._model.predict(windows)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
        return out


def decoded(video: Path, root: Path = CACHE) -> sd.CascadeDetector:
    """The cascade after the decode of ``video`` (cached), before ``finish``."""
    key = hashlib.sha1(str(video.resolve()).encode()).hexdigest()[:12]
    path = root / "decode" / f"{video.stem}_{key}.pkl"
    if path.exists():
        found: sd.CascadeDetector = pickle.loads(path.read_bytes())
        # the detector's settings are the code's, not the pickle's (a default changed since the
        # decode counts); attributes added since then take their defaults
        settings = set(inspect.signature(sd.CascadeDetector.__init__).parameters) - {"speculate", "model"}
        for name, value in vars(sd.CascadeDetector(speculate=False)).items():
            if name not in vars(found) or name in settings:
                setattr(found, name, value)
        return found
    detector = sd.CascadeDetector(speculate=False)
    info = probe(video)
    width, height = scaled_size(info.width, info.height, min(detector.analysis_width, info.width))
    for batch in decode_batches(video, width, height, detector.pix_fmt):
        detector.process(batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(detector))
    return detector


def kinds_of_frames(detector: sd.CascadeDetector) -> Counter[str]:
    """The final windows' frames by the set of question kinds whose own span covers them."""
    total = max((b for _, b in detector.windows), default=0)
    cover: list[set[str]] = [set() for _ in range(total)]
    for f, question in detector.questions:
        before, after = detector._margins(question)
        for i in range(max(0, f - before), min(total, f + after + 1)):
            cover[i].add(question)
    out: Counter[str] = Counter()
    for lo, hi in detector.windows:
        for i in range(lo, hi):
            out["+".join(sorted(cover[i])) or "(gap)"] += 1
    return out


def parse_margins(text: str) -> dict[str, int | tuple[int, int]]:
    out: dict[str, int | tuple[int, int]] = {}
    for part in filter(None, text.split(",")):
        kind, value = part.split("=")
        before, _, after = value.partition(":")
        out[kind] = (int(before), int(after)) if after else int(before)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The cascade's answers for a variant, from caches.")
    parser.add_argument("dirs", nargs="+", type=Path, help="corpus folders (videos with truth)")
    parser.add_argument("--margins", default="", help="question_margins overrides: veto=20:25,look=25")
    parser.add_argument("--set", default="", help="attribute overrides: colour_reach=20,window_gap=10")
    parser.add_argument("--videos", default="", help="comma-separated video names")
    parser.add_argument("--kinds", action="store_true", help="frames per kind of question")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", type=Path)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    margins = parse_margins(args.margins)
    settings: dict[str, float] = {}
    for part in filter(None, args.set.split(",")):
        name, value = part.split("=")
        settings[name] = float(value) if "." in value else int(value)
    model = CachedModel(args.cache / "model")
    results: dict[str, dict[str, Any]] = {}
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for folder in args.dirs:
        for video in sorted(folder.glob("*.mp4")):
            if args.videos and video.stem not in args.videos.split(","):
                continue
            detector = decoded(video, args.cache)
            detector._model = model
            detector.question_margins = {**sd.QUESTION_MARGINS, **margins}  # the code's, not the pickle's
            for name, value in settings.items():
                setattr(detector, name, value)
            cuts = detector.finish()
            score = match(load_truth(video).transitions, cuts)
            frames = sum(b - a for a, b in detector.windows)
            totals.update(tp=score.tp, fp=score.fp, fn=score.fn, frames=frames)
            results[f"{folder.name}/{video.stem}"] = {"cuts": cuts, "frames": frames}
            print(
                f"{folder.name}/{video.stem}: F1 {score.f1:.3f} tp {score.tp} fp {score.fp} "
                f"fn {score.fn} model {frames}",
                flush=True,
            )
            if args.kinds:
                found = kinds_of_frames(detector)
                kinds.update(found)
                print("   ", dict(found.most_common()))
    tp, fp, fn = totals["tp"], totals["fp"], totals["fn"]
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    print(
        f"TOTAL F1 {f1:.4f} tp {tp} fp {fp} fn {fn} model {totals['frames']} "
        f"(windows scored {model.misses} of {model.calls})"
    )
    if args.kinds:
        print("KINDS", dict(kinds.most_common()))
    if args.compare:
        reference: dict[str, dict[str, Any]] = pickle.loads(args.compare.read_bytes())
        differ = 0
        for name, result in results.items():
            if name in reference and reference[name]["cuts"] != result["cuts"]:
                differ += 1
                old, new = set(reference[name]["cuts"]), set(result["cuts"])
                print(f"DIFF {name}: -{sorted(old - new)} +{sorted(new - old)}")
        print(f"SAME {len(results) - differ}/{len(results)} videos' cuts")
    if args.save:
        args.save.write_bytes(pickle.dumps(results))


if __name__ == "__main__":
    main()
