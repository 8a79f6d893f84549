"""Shot-boundary detection: hard cuts, dissolves and fades, quiet through motion, flicker and noise.

Design (see ``bench/shot_detection.py`` for the measurements):

* The video is decoded ONCE through an ffmpeg rawvideo pipe at a tiny rgb24 resolution
  (64 px wide by default). Decoding is the floor of any detector that reads every frame; the
  tiny pipe is what makes this faster than detectors that decode at full size.
* Each frame becomes a *contrast-normalised* thumbnail ``z = (gray - mean) / max(std, floor)``.
  Global brightness changes (flicker, flashes, exposure) do not move ``z``; fades shrink it
  linearly towards zero once the picture gets dark (or bright) and flat.
* Per frame only a handful of scalars are kept: the RMS distance between ``z[t]`` and ``z[t-L]``
  for a few lags ``L``, plus mean/std. Memory stays O(frames) scalars and decisions are made on
  these signals at the end.
* Hard cut at ``t``: a spike of the lag-1 distance, several times the motion level on either side,
  with every frame before the cut still far from every frame after it (rejects single-frame
  flashes).
* Gradual transition at scale ``k``: ``D(t) = |z[t+k] - z[t-k]|`` peaks well above the same measure
  one window earlier and later (a steady pan or zoom does not peak), and the path between
  ``t-k`` and ``t+k`` is nearly straight: a dissolve is a straight line in pixel space, camera
  and object motion wander (``D`` much smaller than the summed frame-to-frame distances).
* Gradual transition in colour (decode is rgb24): when both shots move fast, structure decorrelates
  within a shot and the straightness test is blind; a gain-normalised joint colour histogram stays
  put through pans and zooms, so a peaked, spread-out, non-returning histogram change that a
  global translation does not explain (pan-compensated residual) is a dissolve too.
* Gradual transition in the luma's moments: a dissolve's mean luma moves on a straight line and its
  variance dips on the parabola a blend of two different pictures gives, whatever either shot's
  camera does and however noisy a low-contrast picture is (where the straightness test is blind).
* Fades: runs of flat (near uniform) frames between two pictures give one boundary in their middle;
  a flat run entered and left at full contrast (no ramp) is a shot that looks flat at analysis
  resolution (fine texture) and gives two cuts instead.
* Candidates closer than ``min_shot_len`` frames are merged, preferring fades, then cuts, then the
  strongest gradual candidate.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, Protocol, overload

import numpy as np
from numpy.typing import NDArray

from infra.media.ffmpeg import PixFmt, probe_with_packets, scaled_size
from infra.media.frame_runs import true_runs
from infra.media.range_decode import decode_in_ranges, usable_cores, video_ranges

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]
FrameBatch = NDArray[np.uint8]
FrameConsumer = Callable[[FrameBatch], None]

__all__ = [
    "CascadeDetector",
    "DetectorKind",
    "FrameConsumer",
    "HeatersDetector",
    "NeuralDetector",
    "ShotDetectionResult",
    "ShotDetector",
    "cascade_model",
    "detect_shots",
    "make_detector",
    "run_detector",
]


class ShotDetector(ABC):
    """Consumes consecutive frames in batches and reports the first frame of every new shot.

    ``analysis_width`` and ``pix_fmt`` tell :func:`detect_shots` how to decode for this detector;
    batches have shape ``(n, h, w)`` (gray) or ``(n, h, w, 3)`` (rgb24). ``process`` may return cuts
    already final; ``finish`` returns the rest. A detector instance is used for one video.
    """

    name: str = "detector"
    analysis_width: int = 64
    analysis_size: tuple[int, int] | None = None  # exact (width, height), ignoring the aspect ratio
    pix_fmt: PixFmt = "gray"

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Every parameter that influences the result (recorded with the result)."""

    @abstractmethod
    def process(self, frames: FrameBatch) -> list[int]:
        """Consume the next batch of frames; return cuts that are already final (maybe none)."""

    @abstractmethod
    def finish(self) -> list[int]:
        """No more frames: return the remaining cuts."""


@dataclass(frozen=True)
class ShotDetectionResult:
    cuts: list[int]  # first frame of each new shot, sorted, never 0
    frame_count: int
    fps: float
    detector: str
    params: dict[str, Any]
    seconds: float = 0.0  # wall time of decode + detection
    kinds: dict[int, str] = field(default_factory=dict)  # cut -> "cut" | "gradual" | "fade" (if known)

    @property
    def shots(self) -> list[tuple[int, int]]:
        """Half-open ``[start, end)`` frame ranges covering the whole video."""
        bounds = [0, *self.cuts, self.frame_count]
        return [(a, b) for a, b in pairwise(bounds) if b > a]


@dataclass(frozen=True)
class Candidate:
    """A boundary the fast pass proposes, before candidates closer than ``min_shot_len`` merge."""

    frame: int
    priority: int  # 3 fade, 2 cut, 1 gradual
    score: float
    kind: str


SUBPIXEL_MAX = 1.0  # largest sub-pixel correction (analysis pixels) after the whole-pixel shift


class HeatersDetector(ShotDetector):
    """Heaters' detector: contrast-normalised tiny thumbnails + multi-scale straightness test."""

    name = "heaters"
    pix_fmt: PixFmt = "rgb24"
    fade_black: float | None = None  # (a class default too: detectors pickled before it was added)

    def __init__(
        self,
        *,
        min_shot_len: int = 10,
        analysis_width: int = 64,
        contrast_floor: float = 12.0,
        cut_threshold: float = 0.45,
        cut_ratio: float = 2.2,
        cut_ratio_busy: float = 1.4,
        gradual_scales: Sequence[int] = (4, 8, 16),
        gradual_threshold: float = 0.6,
        gradual_ratio: float = 1.8,
        straightness: float = 0.5,
        flat_std: float = 5.0,
        fade_max_similarity: float = 0.6,
        max_similarity: float = 0.9,
        fade_flank: int = 12,
        fade_contrast: float = 2.0,
        fade_dark: float = 48.0,
        fade_bright: float = 200.0,
        fade_black: float | None = None,
        colour_levels: int = 4,
        colour_threshold: float = 0.3,
        colour_ratio: float = 2.0,
        colour_min_residual: float = 0.4,
        colour_max_similarity: float = 0.5,
        bar_share: float = 0.5,
        blend_scales: Sequence[int] = (5, 8, 12, 16),
        blend_fit: float = 0.1,
        blend_correlation: float = 0.3,
        blend_steady: float = 1.0,
        blend_luma: float = 3.0,
    ) -> None:
        if min_shot_len < 1:
            raise ValueError("min_shot_len must be >= 1")
        self.min_shot_len = min_shot_len
        self.analysis_width = analysis_width
        self.contrast_floor = contrast_floor
        self.cut_threshold = cut_threshold
        self.cut_ratio = cut_ratio
        self.cut_ratio_busy = cut_ratio_busy
        self.gradual_scales = tuple(sorted(gradual_scales))
        self.gradual_threshold = gradual_threshold
        self.gradual_ratio = gradual_ratio
        self.straightness = straightness
        self.flat_std = flat_std
        self.fade_max_similarity = fade_max_similarity
        self.max_similarity = max_similarity
        self.fade_flank = fade_flank
        self.fade_contrast = fade_contrast
        self.fade_dark = fade_dark
        self.fade_bright = fade_bright
        self.fade_black = fade_black
        if not 2 <= colour_levels <= 16:
            raise ValueError("colour_levels must be in 2..16")
        self.colour_levels = colour_levels
        self.colour_threshold = colour_threshold
        self.colour_ratio = colour_ratio
        self.colour_min_residual = colour_min_residual
        self.colour_max_similarity = colour_max_similarity
        self.bar_share = bar_share
        self.blend_scales = tuple(sorted(blend_scales))
        self.blend_fit = blend_fit
        self.blend_correlation = blend_correlation
        self.blend_steady = blend_steady
        self.blend_luma = blend_luma
        self._lags = sorted({1, 2, 3, 4, 5, *(2 * k for k in self.gradual_scales)})
        self._max_lag = max(self._lags)
        self._tail: FloatArray | None = None  # last max_lag normalised thumbnails
        self._dist: dict[int, list[FloatArray]] = {lag: [] for lag in self._lags}
        self._std: list[FloatArray] = []
        self._luma: list[FloatArray] = []  # mean luma per frame
        self._moco: list[FloatArray] = []  # motion-compensated lag-1 distance
        self._moco_sub: list[FloatArray] = []  # the same with sub-pixel compensation (colour test)
        self._thumbs: list[NDArray[np.int8]] = []  # 4x4-pooled z, int8 (z * 32), for validation
        # per frame: the analysis rows and columns with a pixel brighter than a bar's (lit_lines)
        self._rows_lit: list[NDArray[np.bool_]] = []
        self._cols_lit: list[NDArray[np.bool_]] = []
        self._hists: list[NDArray[np.uint16]] = []  # gain-normalised joint colour histograms
        self._count = 0
        # the same-picture tests' answers by absolute frame numbers (``_origin``: this detector's
        # first frame's, where it is a view of a longer one's features): a cascade's plans, strict
        # and relaxed, ask the same pairs of frames again and again (copies share these)
        self._origin = 0
        self._cells = (0, 0, 0, 0)  # the picture's cells (rows and columns) in the thumbnails
        self._similarities: dict[tuple[int, int], float] = {}
        self._correlations: dict[tuple[int, ...], float] = {}
        # the luma variance's dips per blend scale, for the frames ``(_origin, total)`` they were
        # found in: a cascade's relaxed pass has the same frames and blend settings as its strict one
        self._dips: dict[tuple[int, int, int], tuple[NDArray[np.float64], ...]] = {}
        self.kinds: dict[int, str] = {}
        self.candidates: list[Candidate] = []  # every candidate before the merge (set by finish)
        # the colour changes a stronger one of a window overlapping theirs left out (set by finish)
        self.swallowed: list[Candidate] = []
        # the colour test's inputs, normalised histograms, frame-to-frame change and its
        # pan-compensated part (set by finish, for :meth:`_colour_graduals_again`)
        self._colour_inputs: tuple[FloatArray, FloatArray, FloatArray] | None = None
        self.flat: NDArray[np.bool_] = np.zeros(0, bool)  # per frame: near uniform (set by finish)
        self.luma: FloatArray = np.zeros(0, np.float32)  # per frame: mean luma (set by finish)
        self.motion: FloatArray = np.zeros(0, np.float32)  # per frame: pan-compensated change
        self.thumbs: FloatArray = np.zeros((0, 1, 1), np.float32)  # per frame: pooled z thumbnail
        # the same without letterbox or pillarbox bars (see picture_cells), for the same-picture tests
        self.pictures: FloatArray = np.zeros((0, 1, 1), np.float32)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "min_shot_len": self.min_shot_len,
            "analysis_width": self.analysis_width,
            "contrast_floor": self.contrast_floor,
            "cut_threshold": self.cut_threshold,
            "cut_ratio": self.cut_ratio,
            "cut_ratio_busy": self.cut_ratio_busy,
            "gradual_scales": list(self.gradual_scales),
            "gradual_threshold": self.gradual_threshold,
            "gradual_ratio": self.gradual_ratio,
            "straightness": self.straightness,
            "flat_std": self.flat_std,
            "fade_max_similarity": self.fade_max_similarity,
            "max_similarity": self.max_similarity,
            "fade_flank": self.fade_flank,
            "fade_contrast": self.fade_contrast,
            "fade_dark": self.fade_dark,
            "fade_bright": self.fade_bright,
            "fade_black": self.fade_black,
            "colour_levels": self.colour_levels,
            "colour_threshold": self.colour_threshold,
            "colour_ratio": self.colour_ratio,
            "colour_min_residual": self.colour_min_residual,
            "colour_max_similarity": self.colour_max_similarity,
            "bar_share": self.bar_share,
            "blend_scales": list(self.blend_scales),
            "blend_fit": self.blend_fit,
            "blend_correlation": self.blend_correlation,
            "blend_steady": self.blend_steady,
            "blend_luma": self.blend_luma,
        }

    # ------------------------------------------------------------------------------------ features

    def process(self, frames: FrameBatch) -> list[int]:
        n = len(frames)
        if n == 0:
            return []
        if frames.ndim == 4:  # rgb24 -> luma
            rgb = frames.reshape(n, -1, 3).astype(np.float32)
            g = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        else:
            g = frames.reshape(n, -1).astype(np.float32)
            rgb = g[:, :, None]
        mean = g.mean(axis=1, keepdims=True)
        self._hists.append(_colour_histograms(rgb, mean, self.colour_levels))
        std = g.std(axis=1, keepdims=True)
        z = (g - mean) / np.maximum(std, self.contrast_floor)
        self._std.append(std[:, 0])
        self._luma.append(mean[:, 0])
        buf = z if self._tail is None else np.concatenate([self._tail, z])
        offset = len(buf) - n  # index of the first new frame in buf
        for lag in self._lags:
            out = np.zeros(n, np.float32)
            lo = max(0, lag - offset)  # new frames that have a partner lag frames back
            if lo < n:
                a = buf[offset + lo : offset + n]
                b = buf[offset + lo - lag : offset + n - lag]
                diff = a - b
                out[lo:] = np.sqrt(np.einsum("ij,ij->i", diff, diff) / diff.shape[1])
            self._dist[lag].append(out)
        h, w = frames.shape[1], frames.shape[2]
        moco = np.zeros(n, np.float32)
        moco_sub = np.zeros(n, np.float32)
        lo = 1 if offset == 0 else 0
        if lo < n:
            cur = buf[offset + lo : offset + n].reshape(-1, h, w)
            prev = buf[offset + lo - 1 : offset + n - 1].reshape(-1, h, w)
            whole, sub = _compensated_distance(prev, cur, subpixel=True)
            moco[lo:] = np.minimum(whole, self._dist[1][-1][lo:])
            moco_sub[lo:] = np.minimum(sub, moco[lo:])
        self._moco.append(moco)
        self._moco_sub.append(moco_sub)
        zz = z.reshape(n, h, w)[:, : h // 4 * 4, : w // 4 * 4]
        pooled = zz.reshape(n, h // 4, 4, w // 4, 4).mean(axis=(2, 4))
        self._thumbs.append(np.clip(np.rint(pooled * 32), -127, 127).astype(np.int8))
        rows_lit, cols_lit = lit_lines(g.reshape(n, h, w))
        self._rows_lit.append(rows_lit)
        self._cols_lit.append(cols_lit)
        self._tail = buf[-self._max_lag :].copy()
        self._count += n
        return []

    # ----------------------------------------------------------------------------------- decisions

    def finish(self) -> list[int]:
        total = self._count
        if total < 2:
            return []
        dist = {lag: np.concatenate(parts) for lag, parts in self._dist.items()}
        std = np.concatenate(self._std)
        luma = np.concatenate(self._luma)
        moco = np.concatenate(self._moco)
        moco_sub = np.concatenate(self._moco_sub)
        thumbs = np.concatenate(self._thumbs).astype(np.float32)
        self.pictures = thumbs
        self._cells = (0, thumbs.shape[1], 0, thumbs.shape[2])
        if self._rows_lit:
            bars = find_bars(np.concatenate(self._rows_lit), np.concatenate(self._cols_lit), self.bar_share)
            rows, cols = picture_cells(bars, 4)
            self.pictures = np.ascontiguousarray(thumbs[:, rows, cols])
            self._cells = (rows.start, rows.stop, cols.start, cols.stop)
        hists = np.concatenate(self._hists).astype(np.float32)
        hists /= np.maximum(hists.sum(axis=1, keepdims=True), 1.0)
        candidates = (
            self._cuts(dist, moco, thumbs, total)
            + self._graduals(dist, moco, thumbs, total)
            + self._fades(std, luma, thumbs, total)
        )
        self._colour_inputs = (hists, dist[1], moco_sub)
        candidates += self._colour_graduals(hists, dist[1], moco_sub, total, candidates)
        candidates += self._blends(std, luma, dist[1], moco_sub, thumbs, total, candidates)
        self.candidates = sorted(candidates, key=lambda c: c.frame)
        self.flat = std < self.flat_std
        self.luma = luma
        self.motion = moco
        self.thumbs = thumbs
        cuts = self._merge(candidates, total)
        return cuts

    def _cuts(
        self, dist: dict[int, FloatArray], moco: FloatArray, thumbs: FloatArray, total: int
    ) -> list[Candidate]:
        d1 = moco
        out: list[Candidate] = []
        # the peak of its +-2 frames (from frame 1 on), for every frame at once
        idx = _peaks(d1, self.cut_threshold, 2, 2, start=1)
        # the motion level on either side: the median of the 6 frames before (from frame 1 on)
        # and of the 6 after, 0 where there are none
        left = _medians(d1, (np.maximum(1, idx - 6), idx), empty=0.0)
        right = _medians(d1, (idx + 1, np.minimum(len(d1), idx + 7)), empty=0.0)
        for t, med_l, med_r in zip(idx.tolist(), left.tolist(), right.tolist(), strict=True):
            # well above the motion level on the calmer side, and clearly above it on the busier one
            if d1[t] < self.cut_ratio * max(min(med_l, med_r), 0.02):
                continue
            if d1[t] < self.cut_ratio_busy * max(med_l, med_r):
                continue
            # every frame just before must stay far from every frame just after (flash rejection)
            cross = min(
                float(dist[b - a][b])
                for a in range(max(0, t - 3), t)
                for b in range(t, min(total, t + 3))
                if b - a in dist
            )
            if cross < max(self.cut_threshold, 0.5 * float(d1[t])):
                continue
            if self._similarity(thumbs, t - 1, t) > self.max_similarity:
                continue
            if self._correlation((t - 8, t), (t, t + 8)) > self.max_similarity or any(
                self._similarity(thumbs, t - 1, u) > self.max_similarity
                for u in range(t + 1, min(total, t + 5))
            ):
                continue  # the picture before comes back after a few frames: a flash, not a cut
            out.append(Candidate(t, 2, float(d1[t]), "cut"))
        return out

    def _graduals(
        self, dist: dict[int, FloatArray], moco: FloatArray, thumbs: FloatArray, total: int
    ) -> list[Candidate]:
        d1 = dist[1]
        csum = np.concatenate([[0.0], np.cumsum(d1, dtype=np.float64)])
        out: list[Candidate] = []
        for k in self.gradual_scales:
            lag = 2 * k
            dk = np.zeros(total, np.float32)  # dk[t] = |z[t+k] - z[t-k]|
            if total > lag:
                dk[k : total - k] = dist[lag][lag:]
            peaks = _peaks(dk, self.gradual_threshold, k, k)
            # the ratio and straightness tests for every peak at once, before the per-peak tests
            # (most peaks in a moving shot fail one of them): well above the same measure one
            # window earlier and later, and the change mostly in one direction (``dk`` against
            # the sum of d1 over (t-k, t+k])
            heights = dk[peaks].astype(np.float64)
            bases = _level_beside(dk, peaks, k, 0.05)
            paths = csum[peaks + k + 1] - csum[peaks - k + 1]
            straightness = heights / np.maximum(paths, 1e-6)
            steep = ~(heights / bases < self.gradual_ratio) & ~(straightness < self.straightness)
            for t, straight in zip(peaks[steep].tolist(), straightness[steep].tolist(), strict=True):
                a, b = max(0, t - k - 1), min(total - 1, t + k + 1)
                if self._similarity(thumbs, a, b) > self.max_similarity:
                    continue
                if self._correlation((t - k - 8, t - k), (t + k + 1, t + k + 9)) > self.max_similarity:
                    continue
                # a sharp jump inside the window is where the shot really changes (a cut that
                # the stricter cut test missed, e.g. next to motion): report that frame instead
                window = moco[t - k + 1 : t + k + 1]
                peak = int(np.argmax(window))
                if window[peak] >= max(self.cut_threshold, 2.0 * float(np.median(window))):
                    t = t - k + 1 + peak
                else:
                    j = t - k + 1 + int(np.argmax(d1[t - k + 1 : t + k + 1]))
                    if float(d1[j]) > 0.5 * float(dk[t]):
                        # one frame carries most of the change, yet neither the cut test nor the
                        # jump check above took it (too small or too local once pan-compensated):
                        # an object jumping or entering inside a shot, a step, not a gradual
                        continue
                out.append(Candidate(t, 1, float(dk[t]) * straight, f"gradual{k}"))
        return out

    def _colour_graduals(
        self,
        hists: FloatArray,
        d1: FloatArray,
        moco: FloatArray,
        total: int,
        found: Sequence[Candidate],
        one_frame: Callable[[int, int], float] | None = None,
    ) -> list[Candidate]:
        """Gradual transitions seen in the colour distribution, which camera motion barely moves.

        When both shots move fast, every frame is far from every other one in structure and the
        straightness test cannot see the dissolve; the colour histogram however stays put within a
        shot (pans and zooms re-arrange pixels, they do not recolour them) and travels from one
        shot's distribution to the other's during the transition. A candidate at ``t`` (scale
        ``k``) needs: the histogram distance between ``t-k`` and ``t+k`` above ``colour_threshold``
        and ``colour_ratio`` times the same measure one window earlier and later; no single frame
        carrying most of that change (that is a cut, or a flash); the colours of the frames just
        before never reappearing just after (flashes and flicker come back); the frame-to-frame
        change not explained by a global translation (a whip pan also sweeps to new colours, but
        pan compensation removes most of its change); and the picture before not reappearing
        after. Windows that already hold a structural candidate are left to it. ``one_frame(lo,
        hi)``, where given, is the largest share of the change from frame ``lo`` to ``hi`` that one
        frame holds, in place of the histograms' own (whose coarse bins a dissolve between plain
        colours crosses in one frame).
        """
        out: list[Candidate] = []
        taken = np.array(sorted(c.frame for c in found), dtype=np.int64)
        h1 = np.zeros(total, np.float32)
        if total > 1:
            h1[1:] = 0.5 * np.abs(hists[1:] - hists[:-1]).sum(axis=1)
        for k in self.gradual_scales:
            lag = 2 * k
            if total <= lag + 1:
                continue
            hk = np.zeros(total, np.float32)  # hk[t] = histogram distance of t-k and t+k
            hk[k : total - k] = 0.5 * np.abs(hists[lag:] - hists[:-lag]).sum(axis=1)
            peaks = _peaks(hk, self.colour_threshold, k, k)
            # the ratio test for every peak at once, before the per-peak tests
            bases = _level_beside(hk, peaks, k, 0.02)
            steep = ~(hk[peaks].astype(np.float64) < self.colour_ratio * bases)
            for t in peaks[steep].tolist():
                lo, hi = t - k, t + k + 1
                if len(taken) and np.any(np.abs(taken - t) <= k):
                    continue
                if one_frame is None and float(h1[lo + 1 : hi].max()) > 0.5 * float(hk[t]):
                    continue  # one frame holds most of the change: not gradual
                before = hists[max(0, lo - 8) : lo + 1]
                after = hists[t + k : min(total, hi + 8)]
                back = 0.5 * np.abs(before[:, None, :] - after[None, :, :]).sum(axis=2).min()
                if float(back) < self.colour_threshold:
                    continue  # the colours come back: a flash or flicker
                residual = float(moco[lo + 1 : hi].sum()) / max(float(d1[lo + 1 : hi].sum()), 1e-6)
                if residual < self.colour_min_residual:
                    continue  # a pan or whip: a translation explains the change
                if self._correlation((lo - 8, lo + 1), (t + k, hi + 8)) > self.colour_max_similarity:
                    continue
                if one_frame is not None and one_frame(lo, hi - 1) > 0.5:
                    continue  # the same test on another measure, the costliest last
                out.append(Candidate(t, 1, float(hk[t]), f"colour{k}"))
        # several scales see the same transition: keep the strongest of overlapping windows (the
        # others kept aside: a wide window may hold two transitions, see ``swallowed``)
        kept = _strongest_apart(out, "colour")
        self.swallowed = [c for c in out if c not in kept]
        return kept

    def _colour_graduals_again(self, one_frame: Callable[[int, int], float] | None = None) -> list[Candidate]:
        """:meth:`_colour_graduals` run again after :meth:`finish` on the same frames, with this
        detector's settings as they are now (a copy with other settings asks another question)
        and ``one_frame`` in place of the histograms' one-frame test: the colour changes it finds
        that :meth:`finish` did not keep."""
        if self._colour_inputs is None:
            raise RuntimeError("the colour test runs again only after finish")
        hists, d1, moco_sub = self._colour_inputs
        found = [c for c in self.candidates if not c.kind.startswith(("colour", "blend"))]
        own = {c.frame for c in self.candidates if c.kind.startswith("colour")}
        changes = self._colour_graduals(hists, d1, moco_sub, self._count, found, one_frame)
        return [c for c in changes if c.frame not in own]

    def _blends(
        self,
        std: FloatArray,
        luma: FloatArray,
        d1: FloatArray,
        moco: FloatArray,
        thumbs: FloatArray,
        total: int,
        found: Sequence[Candidate],
    ) -> list[Candidate]:
        """Dissolves seen in the luma's first two moments, which camera motion barely moves.

        A dissolve from picture ``A`` to ``B`` shows ``(1 - a) A + a B`` with ``a`` rising linearly:
        the mean luma moves on a straight line and the luma variance on a parabola,
        ``(1 - a)^2 var(A) + a^2 var(B) + 2 a (1 - a) cov(A, B)``, which dips below both ends when
        the pictures differ. Pans and zooms re-arrange the pixels of one picture without changing
        its variance, so this holds when both shots move (where the straightness test, which adds
        up every frame's change, is blind) and when noise swamps the structure of a low-contrast
        picture. A candidate at ``t`` (scale ``k``, the window ``t-k..t+k``): the variance follows
        the parabola through its ends (RMS misfit at most ``blend_fit`` of the dip's depth, a
        quarter of ``var(A - B)``), the ends' correlation ``cov / sqrt(var(A) var(B))`` is at most
        ``blend_correlation`` (a picture that keeps its contrast, or whose contrast only rises or falls
        as the light changes, gives 1 or more; a different picture makes the variance dip), the
        variance stays within ``blend_steady`` depths of each end's for ``k`` frames outside the
        window (a shot's statistics are steady; a flash or a flicker is not), and the mean luma stays
        within ``blend_luma`` (plus a tenth of the change) of the straight line (a fade through black
        or white leaves it); the frame-to-frame change is not explained by a global translation
        (``colour_min_residual``, as for colour changes: a pan into another part of the scene mixes
        two regions' statistics too), and the picture at one end does not come back at the other (a
        shot whose contrast dips as light or haze passes). Windows that already hold another
        candidate are left to it.
        """
        out: list[Candidate] = []
        taken = np.array(sorted(c.frame for c in found), dtype=np.int64)
        for k in self.blend_scales:
            if total < 4 * k + 1:
                continue
            key = (self._origin, total, k)
            if key not in self._dips:
                if any(old[:2] != key[:2] for old in self._dips):
                    self._dips.clear()  # another stretch of frames: these are not asked again
                self._dips[key] = _variance_dips(std[:total], luma[:total], k)
            misfit, corr, steady, off_line = self._dips[key]
            ok = (
                (misfit <= self.blend_fit)
                & (corr <= self.blend_correlation)
                & (steady <= self.blend_steady)
                & (off_line <= self.blend_luma)
            )
            for i in np.flatnonzero(ok).tolist():
                t = i + k
                if len(taken) and np.any(np.abs(taken - t) <= 2 * k):
                    continue  # another test's window overlaps this one
                moved = float(moco[i + 1 : i + 2 * k + 1].sum())
                if moved < self.colour_min_residual * float(d1[i + 1 : i + 2 * k + 1].sum()):
                    continue  # a pan into another part of the scene: a translation explains it
                if self._similarity(thumbs, i, i + 2 * k) > self.max_similarity or (
                    self._correlation((i - 8, i + 1), (i + 2 * k, i + 2 * k + 9)) > self.max_similarity
                ):
                    continue  # the same picture at both ends: its contrast changed (light, haze)
                out.append(Candidate(t, 1, float(1.0 - misfit[i]), f"blend{k}"))
        # several scales and neighbouring centres see the same dissolve: keep the best fit
        return _strongest_apart(out, "blend")

    def _fades(self, std: FloatArray, luma: FloatArray, thumbs: FloatArray, total: int) -> list[Candidate]:
        flat = std[:total] < self.flat_std
        # a fade to black reaches black: a flat run whose darkest frame is above ``fade_black`` (and
        # that never turns white) is a dark flat-looking picture, not a fade (None: ``fade_dark``,
        # 48, as before stop 26). The cascade sets 26: on the four corpora every true fade's flat
        # run reaches luma 16.3 or less (bench negatives_360p24 763 16.3, dev-801 synthetic_720p25
        # 506 14.0, then 3.2 and 0-0.6), while a landscape pan over a dark flat region with a flash
        # holds 35.9-38.2 (dev-1101 negatives_1080p25 391/399, a false fade kept unasked); any
        # value from 17 to 35 gives the same answers, 15 moves the bench's 763 to 761 (inside its
        # fade), 37 lets 399 through. The dark run is then a place the model looks at (``_dips``),
        # where it says 0.33 / 0.25 at most (stop 26, grad6)
        black = self.fade_dark if self.fade_black is None else self.fade_black
        out: list[Candidate] = []
        for s, t in true_runs(flat):
            if s == 0 or t >= total:  # a fade at the very start or end is not a boundary
                continue
            # a fade is a dip: real contrast shortly before and after the flat run (a shot whose
            # picture is flat at analysis resolution - fine texture, sky - is not a fade)
            flank = self.fade_flank
            if std[max(0, s - flank) : s].max() < self.fade_contrast * self.flat_std:
                continue
            if std[t : t + flank].max() < self.fade_contrast * self.flat_std:
                continue
            # a different picture after than before (an over-exposed flash comes back to the same)
            sim = self._similarity(thumbs, max(0, s - 2), min(total - 1, t + 1))
            if sim >= self.fade_max_similarity:
                continue
            if self._abrupt(std[max(0, s - 4) : s][::-1]) and self._abrupt(std[t : t + 4]):
                # full contrast right up to the flat run and right after it: no fade ramps, a
                # shot that looks flat at analysis resolution (fine texture) between two cuts
                out.append(Candidate(s, 2, 1.0 - sim, "cut"))
                out.append(Candidate(t, 2, 1.0 - sim, "cut"))
            elif black < float(luma[s:t].min()) and float(luma[s:t].max()) < self.fade_bright:
                # a fade goes through black or white; a flat run that stays mid-grey is a shot
                # that looks flat at analysis resolution, entered or left by a gradual transition
                # that the other tests report
                continue
            else:
                # the fade's held colour is the black or white part of the run: a flat-looking
                # shot the fade goes into (or comes out of) continues it in mid-grey
                held = np.flatnonzero((luma[s:t] < self.fade_dark) | (luma[s:t] > self.fade_bright))
                middle = s + (int(held[0]) + int(held[-1]) + 1) // 2
                out.append(Candidate(middle, 3, 1.0 - sim, "fade"))
        return out

    def _similarity(self, thumbs: FloatArray, a: int, b: int) -> float:
        """:func:`_shift_similarity` of thumbnails ``a`` and ``b`` (``thumbs``: this detector's)."""
        key = (self._origin + a, self._origin + b)
        found = self._similarities.get(key)
        if found is None:
            found = self._similarities[key] = _shift_similarity(thumbs[a], thumbs[b])
        return found

    def _correlation(self, a: tuple[int, int], b: tuple[int, int]) -> float:
        """:func:`_max_correlation` of the pictures (see :func:`picture_cells`) in frame ranges ``a``
        and ``b`` (set by :meth:`finish`)."""
        n = len(self.pictures)
        a = (max(0, a[0]), min(n, a[1]))
        b = (max(0, b[0]), min(n, b[1]))
        if a[0] >= a[1] or b[0] >= b[1]:
            return -1.0
        o = self._origin
        key = (*self._cells, a[0] + o, a[1] + o, b[0] + o, b[1] + o)
        found = self._correlations.get(key)
        if found is None:
            found = self._correlations[key] = _max_correlation(self.pictures, a, b)
        return found

    def _abrupt(self, side: FloatArray) -> bool:
        """``side``: contrast of the frames next to a flat run, nearest first. A fade ramps the
        contrast down (or up) over several frames; a cut leaves the nearest frame at full level."""
        if len(side) == 0:
            return False
        near = float(side[0])
        return near >= self.fade_contrast * self.flat_std and near >= 0.7 * float(side.max())

    def _merge(self, candidates: list[Candidate], total: int) -> list[int]:
        candidates.sort(key=lambda c: c.frame)
        groups: list[list[Candidate]] = []
        for c in candidates:
            if groups and c.frame - groups[-1][-1].frame < self.min_shot_len:
                groups[-1].append(c)
            else:
                groups.append([c])
        cuts: list[int] = []
        self.kinds = {}
        for group in groups:
            best = max(group, key=lambda c: (c.priority, c.score))
            frame = best.frame
            if frame < self.min_shot_len or total - frame < 1:
                continue
            if cuts and frame - cuts[-1] < self.min_shot_len:
                continue
            cuts.append(frame)
            self.kinds[frame] = best.kind
        logger.debug("candidates %d -> cuts %d", len(candidates), len(cuts))
        return cuts


def _strongest_apart(found: list[Candidate], prefix: str) -> list[Candidate]:
    """Of candidates whose kind is ``prefix`` and their scale ``k`` (several scales and neighbouring
    centres see the same transition), the strongest of each group closer than their larger ``k``."""
    kept: list[tuple[Candidate, int]] = []
    for c in sorted(found, key=lambda c: -c.score):
        k = int(c.kind.removeprefix(prefix))
        if all(abs(c.frame - o.frame) > max(k, ko) for o, ko in kept):
            kept.append((c, k))
    return [c for c, _ in kept]


def _variance_dips(
    std: FloatArray, luma: FloatArray, k: int, chunk: int = 8192
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per window of ``2k + 1`` frames (row ``i``: frames ``i..i+2k``), how well the luma looks like a
    dissolve between the window's ends (see :meth:`HeatersDetector._blends`): the variance's RMS
    misfit to the parabola through its ends, in depths of its dip (``inf`` where it does not dip);
    the ends' correlation the fitted parabola implies; the largest change of the variance over the
    ``k`` frames before the window and the ``k`` after, from the variance at the window's end on
    that side, in depths (``inf`` where those frames are not all there); and the mean luma's
    largest distance from the straight line between the ends, less a tenth of the change between
    them. In blocks of ``chunk`` windows (a long video's windows side by side would take hundreds
    of MB)."""
    v = std.astype(np.float64) ** 2
    m = luma.astype(np.float64)
    rows = len(v) - 2 * k
    a = np.arange(2 * k + 1, dtype=np.float64) / (2 * k)
    q = 2.0 * a * (1.0 - a)
    misfit, corr, steady, off_line = (np.full(rows, np.inf) for _ in range(4))
    for lo in range(0, rows, chunk):
        hi = min(rows, lo + chunk)
        win = np.lib.stride_tricks.sliding_window_view(v[lo : hi + 2 * k], 2 * k + 1)
        first, last = win[:, 0], win[:, -1]
        base = (1.0 - a) ** 2 * first[:, None] + a**2 * last[:, None]
        cov = ((win - base) * q).sum(axis=1) / float((q * q).sum())
        depth = (first + last - 2.0 * cov) / 4.0  # a quarter of var(A - B)
        dips = depth > 0
        rest = np.sqrt(((win - base - q * cov[:, None]) ** 2).mean(axis=1))
        misfit[lo:hi] = np.where(dips, rest / np.where(dips, depth, 1.0), np.inf)
        corr[lo:hi] = cov / np.maximum(np.sqrt(first * last), 1e-6)
        mw = np.lib.stride_tricks.sliding_window_view(m[lo : hi + 2 * k], 2 * k + 1)
        line = (1.0 - a) * mw[:, :1] + a * mw[:, -1:]
        off_line[lo:hi] = np.abs(mw - line).max(axis=1) - 0.1 * np.abs(mw[:, -1] - mw[:, 0])
        # the k frames before row i's window are i-k..i, the k after it i+2k..i+3k
        i = np.arange(lo, hi)
        whole = (i >= k) & (i + 3 * k < len(v))
        if whole.any():
            j = i[whole]
            side = np.lib.stride_tricks.sliding_window_view(v, k + 1)  # row r: frames r..r+k
            before = np.abs(side[j - k] - v[j, None]).max(axis=1)
            after = np.abs(side[j + 2 * k] - v[j + 2 * k, None]).max(axis=1)
            d = depth[whole]
            steady[j] = np.where(d > 0, np.maximum(before, after) / np.where(d > 0, d, 1.0), np.inf)
    return misfit, corr, steady, off_line


def _peaks(values: FloatArray, threshold: float, before: int, after: int, start: int = 0) -> NDArray[np.intp]:
    """The frames from ``start`` on where ``values`` reaches ``threshold`` and is the largest of its
    window ``[max(start, t - before), t + after]`` (ties kept): the peak tests' candidates."""
    found = np.flatnonzero((values >= threshold) & ~(values < _window_max(values, before, after, start)))
    return found[found >= start]


def _level_beside(values: FloatArray, peaks: NDArray[np.intp], k: int, floor: float) -> NDArray[np.float64]:
    """Per peak ``t``: the smaller of ``values`` one window (``2k`` frames) earlier and later, where
    that is defined (``k <= u < len(values) - k``), 0 where neither is, and at least ``floor``: the
    level a gradual change has to stand out from."""
    beside = np.full(len(peaks), np.inf)
    for u in (peaks - 2 * k, peaks + 2 * k):
        there = (k <= u) & (u < len(values) - k)
        beside[there] = np.minimum(beside[there], values[u[there]])
    out: NDArray[np.float64] = np.maximum(np.where(np.isinf(beside), 0.0, beside), floor)
    return out


def _window_max(values: FloatArray, before: int, after: int, start: int = 0) -> FloatArray:
    """Per frame ``t``: the largest of ``values[max(start, t - before) : t + after + 1]`` (the
    windows the per-candidate peak tests look at, for every frame in one pass)."""
    pad = np.full(before, -np.inf, values.dtype)
    padded = np.concatenate([pad, values, np.full(after, -np.inf, values.dtype)])
    padded[before : before + min(start, len(values))] = -np.inf
    out: FloatArray = np.lib.stride_tricks.sliding_window_view(padded, before + after + 1).max(axis=1)
    return out


def _medians(
    values: FloatArray, *spans: tuple[NDArray[np.intp], NDArray[np.intp]], empty: float
) -> FloatArray:
    """Per row ``i``: the median of ``values[lo[i]:hi[i]]`` for every ``(lo, hi)`` of ``spans``
    together (``empty`` where all are empty); the rows whose slices have the same lengths in one
    numpy call (the same medians as one call per row)."""
    rows = len(spans[0][0])
    out: FloatArray = np.full(rows, empty, values.dtype)
    if rows == 0:
        return out
    lengths = np.stack([np.maximum(hi - lo, 0) for lo, hi in spans], axis=1)
    for shape in np.unique(lengths, axis=0):
        if not shape.any():
            continue
        same = (lengths == shape).all(axis=1)
        parts = [
            np.lib.stride_tricks.sliding_window_view(values, size)[lo[same]]
            for (lo, _), size in zip(spans, shape.tolist(), strict=True)
            if size
        ]
        out[same] = np.median(np.concatenate(parts, axis=1), axis=1)
    return out


def _colour_histograms(rgb: FloatArray, luma_mean: FloatArray, levels: int) -> NDArray[np.uint16]:
    """Joint colour histograms (``levels`` per channel) of gain-normalised frames.

    ``rgb`` is ``(n, pixels, c)`` with c = 3 (or 1 for gray input); every frame is scaled so its
    mean luma is mid-grey first, so flicker, flashes and exposure changes barely move it.
    """
    n, _, c = rgb.shape
    gain = 128.0 / np.maximum(luma_mean[:, 0], 8.0)
    q = np.clip(rgb * gain[:, None, None] * (levels / 256.0), 0, levels - 1).astype(np.int32)
    idx = q[:, :, 0]
    for ch in range(1, c):
        idx = idx * levels + q[:, :, ch]
    bins = levels**c
    idx += (np.arange(n, dtype=np.int32) * bins)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n * bins).reshape(n, bins)
    out: NDArray[np.uint16] = np.minimum(counts, 65535).astype(np.uint16)
    return out


def picture_cells(bars: tuple[slice, slice], cell: int) -> tuple[slice, slice]:
    """The thumbnail cells (``cell`` x ``cell`` analysis pixels) wholly inside the picture ``bars``
    (its rows and columns, see :func:`find_bars`): the fast pass's same-picture tests leave the
    letterbox or pillarbox bars out. The same in every frame, bars would otherwise make any two
    frames of a letterboxed video correlate (0.85-1.0 across real cuts of the pillarboxed sample
    clip)."""
    rows, cols = bars
    return slice(-(-rows.start // cell), rows.stop // cell), slice(-(-cols.start // cell), cols.stop // cell)


def _max_correlation(thumbs: FloatArray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """Highest Pearson correlation between any thumbnail in range ``a`` and any in range ``b``."""
    n = len(thumbs)
    xa = thumbs[max(0, a[0]) : min(n, a[1])].reshape(-1, thumbs[0].size)
    xb = thumbs[max(0, b[0]) : min(n, b[1])].reshape(-1, thumbs[0].size)
    if len(xa) == 0 or len(xb) == 0:
        return -1.0
    xa = xa - xa.mean(axis=1, keepdims=True)
    xb = xb - xb.mean(axis=1, keepdims=True)
    xa /= np.maximum(np.linalg.norm(xa, axis=1, keepdims=True), 1e-3)
    xb /= np.maximum(np.linalg.norm(xb, axis=1, keepdims=True), 1e-3)
    return float((xa @ xb.T).max())


def _shift_similarity(a: FloatArray, b: FloatArray, max_shift: int = 3) -> float:
    """Best Pearson correlation of two small thumbnails over translations up to ``max_shift``
    (over each translation's overlap; all translations at once, from sums in float64)."""
    h, w = a.shape
    index, mask = _shift_pairs(h, w, max_shift)
    pa = a.astype(np.float64).ravel()[index] * mask
    pb = b.astype(np.float64)[None] * mask
    n = mask.sum(axis=(1, 2))
    sa, sb = pa.sum(axis=(1, 2)), pb.sum(axis=(1, 2))
    saa = np.einsum("kij,kij->k", pa, pa) - sa * sa / n
    sbb = np.einsum("kij,kij->k", pb, pb) - sb * sb / n
    sab = np.einsum("kij,kij->k", pa, pb) - sa * sb / n
    den = np.sqrt(np.maximum(saa, 0.0) * np.maximum(sbb, 0.0))
    ok = den > 1e-6
    return float((sab[ok] / den[ok]).max()) if ok.any() else -1.0


@cache
def _shift_pairs(h: int, w: int, max_shift: int) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Per translation (dy, dx), for each pixel of ``b``: the index of its partner in ``a`` (``a``'s
    pixel at ``(y + dy, x + dx)``) and whether that partner lies inside ``a`` (1.0) or not."""
    sy, sx = min(max_shift, h // 3), min(max_shift, w // 3)
    shifts = [(dy, dx) for dy in range(-sy, sy + 1) for dx in range(-sx, sx + 1)]
    y, x = np.mgrid[0:h, 0:w]
    index = np.zeros((len(shifts), h, w), np.intp)
    mask = np.zeros((len(shifts), h, w), np.float64)
    for k, (dy, dx) in enumerate(shifts):
        ya, xa = y + dy, x + dx
        mask[k] = (ya >= 0) & (ya < h) & (xa >= 0) & (xa < w)
        index[k] = np.clip(ya, 0, h - 1) * w + np.clip(xa, 0, w - 1)
    return index, mask


def _profile_shift(a: FloatArray, b: FloatArray, max_shift: int) -> NDArray[np.intp]:
    """Per row, the shift s minimising |b[x] - a[x - s]| over the overlap (1-D profiles)."""
    n, size = a.shape
    max_shift = min(max_shift, size // 3)
    errs = np.empty((n, 2 * max_shift + 1), np.float32)
    for i, s in enumerate(range(-max_shift, max_shift + 1)):
        d = b[:, s:] - a[:, : size - s] if s >= 0 else b[:, : size + s] - a[:, -s:]
        errs[:, i] = np.mean(d * d, axis=1)
    shifts: NDArray[np.intp] = np.argmin(errs, axis=1) - max_shift
    return shifts


@overload
def _compensated_distance(
    prev: FloatArray, cur: FloatArray, max_shift: int = ..., *, subpixel: Literal[False] = ...
) -> FloatArray: ...
@overload
def _compensated_distance(
    prev: FloatArray, cur: FloatArray, max_shift: int = ..., *, subpixel: Literal[True]
) -> tuple[FloatArray, FloatArray]: ...
def _compensated_distance(
    prev: FloatArray, cur: FloatArray, max_shift: int = 8, *, subpixel: bool = False
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """RMS distance of ``cur`` to ``prev`` translated by the global shift found from row and column
    profiles (a cheap pan compensation), over the overlapping area.

    With ``subpixel``, also the distance left once a further sub-pixel translation is taken out:
    one linearised (Lucas-Kanade) least-squares step on the whole-pixel residual, the change
    ``gx * ux + gy * uy`` of a shift by (ux, uy) of at most ``SUBPIXEL_MAX`` pixels. Slow pans move
    the 64-px analysis frame by a fraction of a pixel per frame, which a whole shift cannot remove.
    """
    _, h, w = cur.shape
    dx = _profile_shift(prev.mean(axis=1), cur.mean(axis=1), max_shift)
    dy = _profile_shift(prev.mean(axis=2), cur.mean(axis=2), max(1, max_shift // 2))
    ys = np.arange(h)[None, :] - dy[:, None]
    xs = np.arange(w)[None, :] - dx[:, None]
    vy, vx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    moved = prev.copy()  # frames that did not move (most, in a still shot) need no gather
    shifted = np.flatnonzero((dx != 0) | (dy != 0))
    moved[shifted] = prev[shifted[:, None, None], ys[shifted, :, None], xs[shifted, None, :]]
    mask = (vy[:, :, None] & vx[:, None, :]).astype(np.float32)
    diff = (cur - moved) * mask
    # the overlap is a rectangle: its area from its sides (the same count as summing the mask)
    area = np.maximum((vy.sum(axis=1) * vx.sum(axis=1)).astype(np.float32), 1.0)
    out: FloatArray = np.sqrt((diff * diff).sum(axis=(1, 2)) / area).astype(np.float32)
    if not subpixel:
        return out
    # central-difference gradients of the shifted frame, only where both neighbours are valid
    # (rows and columns of the overlap whose both neighbours lie in it, not the frame's edges)
    iy, ix = vy.copy(), vx.copy()
    iy[:, 1:-1] &= vy[:, :-2] & vy[:, 2:]
    ix[:, 1:-1] &= vx[:, :-2] & vx[:, 2:]
    iy[:, [0, -1]] = False
    ix[:, [0, -1]] = False
    inner = (iy[:, :, None] & ix[:, None, :]).astype(np.float32)
    gy = np.zeros_like(moved)
    gx = np.zeros_like(moved)
    gy[:, 1:-1, :] = 0.5 * (moved[:, 2:, :] - moved[:, :-2, :])
    gx[:, :, 1:-1] = 0.5 * (moved[:, :, 2:] - moved[:, :, :-2])
    gy *= inner
    gx *= inner
    r = diff * inner
    sxx = np.einsum("nij,nij->n", gx, gx)
    syy = np.einsum("nij,nij->n", gy, gy)
    sxy = np.einsum("nij,nij->n", gx, gy)
    bx = np.einsum("nij,nij->n", gx, r)
    by = np.einsum("nij,nij->n", gy, r)
    det = sxx * syy - sxy * sxy
    ok = det > 1e-6 * np.maximum(sxx * syy, 1e-12)
    safe = np.where(ok, det, 1.0)
    ux = np.clip(np.where(ok, (syy * bx - sxy * by) / safe, 0.0), -SUBPIXEL_MAX, SUBPIXEL_MAX)
    uy = np.clip(np.where(ok, (sxx * by - sxy * bx) / safe, 0.0), -SUBPIXEL_MAX, SUBPIXEL_MAX)
    rest = r - gx * ux[:, None, None].astype(np.float32) - gy * uy[:, None, None].astype(np.float32)
    inner_area = np.maximum((iy.sum(axis=1) * ix.sum(axis=1)).astype(np.float32), 1.0)
    sub: FloatArray = np.sqrt(np.einsum("nij,nij->n", rest, rest) / inner_area).astype(np.float32)
    return out, np.minimum(sub, out)


def run_detector(
    detector: ShotDetector, batches: Iterable[FrameBatch], consumers: Sequence[FrameConsumer] = ()
) -> tuple[list[int], int]:
    """Feed batches to ``detector`` (and ``consumers``); return (sorted cuts, frame count)."""
    cuts: list[int] = []
    count = 0
    for batch in batches:
        count += len(batch)
        cuts.extend(detector.process(batch))
        for consumer in consumers:
            consumer(batch)
    cuts.extend(detector.finish())
    return sorted({c for c in cuts if 0 < c < count}), count


def detect_shots(
    path: Path | str,
    detector: ShotDetector | None = None,
    *,
    min_shot_len: int | None = None,
    consumers: Sequence[FrameConsumer] = (),
) -> ShotDetectionResult:
    """Detect shot boundaries of the video at ``path`` with one reduced-resolution decode (in time
    ranges side by side where the video has clean keyframes to start them at).

    ``detector`` defaults to :class:`HeatersDetector` (``min_shot_len`` frames, default 10).
    ``consumers`` receive every decoded batch too (same reduced frames), so e.g. a thumbnail
    step can share the decode. Raises :class:`infra.media.ffmpeg.MediaError` for unusable files.
    """
    t0 = time.perf_counter()
    if detector is None:
        detector = HeatersDetector() if min_shot_len is None else HeatersDetector(min_shot_len=min_shot_len)
    elif min_shot_len is not None:
        raise ValueError("pass min_shot_len to the detector you construct")
    info, _, packets = probe_with_packets(path)
    if detector.analysis_size is not None:
        width, height = detector.analysis_size
    else:
        width, height = scaled_size(info.width, info.height, min(detector.analysis_width, info.width))
    # the video in time ranges, one single-threaded decode per core (see infra.media.range_decode)
    cores = usable_cores()
    ranges = video_ranges(info, packets, cores)
    batches = decode_in_ranges(path, width, height, detector.pix_fmt, ranges, parallel=cores)
    cuts, count = run_detector(detector, batches, consumers)
    kinds = dict(getattr(detector, "kinds", {}))
    seconds = time.perf_counter() - t0
    logger.info(
        "%s: %d frames, %d cuts in %.2f s (%.0f fps)",
        path,
        count,
        len(cuts),
        seconds,
        count / max(seconds, 1e-9),
    )
    return ShotDetectionResult(
        cuts=cuts, frame_count=count, fps=info.fps, detector=detector.name, params=detector.params,
        seconds=seconds, kinds={c: kinds[c] for c in cuts if c in kinds},
    )  # fmt: skip


# --------------------------------------------------------------------------------- learned model

DetectorKind = Literal["auto", "fast", "cascade", "neural"]
MODEL_SIZE = (48, 27)  # TransNetV2's input (width, height)


class _Model(Protocol):
    def predict(self, windows: FrameBatch) -> FloatArray:
        """``(b, t, 2)`` per frame of ``(b, t, 27, 48, 3)`` windows: the probability that the frame
        ends a shot, and that it lies inside a transition (see :meth:`TransNet.predict`)."""
        ...


def _to_model_frames(frames: FrameBatch) -> FrameBatch:
    """rgb24 analysis frames (any size) -> the model's 48x27 rgb24 (area interpolation)."""
    import cv2

    w, h = MODEL_SIZE
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((len(frames), h, w, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return out


def _luma(frames: FrameBatch) -> FloatArray:
    """The luma of rgb24 ``frames`` (n, h, w, 3): (n, h, w)."""
    out: FloatArray = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return out


def _luma_stats(frames: FrameBatch) -> tuple[FloatArray, FloatArray]:
    """Per frame: mean and standard deviation of the luma."""
    luma = _luma(frames).reshape(len(frames), -1)
    return luma.mean(axis=1), luma.std(axis=1)


BAR_FRAMES = 300  # frames the cascade looks at before it decides where a video's black bars are


BAR_LUMA = 24.0  # a line whose brightest pixel is at most this is dark (a bar's, in that frame)
BAR_MARGIN = 1  # pixels beside each bar left out with it (the picture's edge, blurred into it)
BAR_SHARE = 0.9  # the cascade's share of its first frames in which a bar's line is dark


def lit_lines(luma: FloatArray) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per frame of ``luma`` (n, h, w): whether each row and each column has a pixel brighter than
    :data:`BAR_LUMA` (what :func:`find_bars` reads; a third of the time of each line's maximum)."""
    n, h, w = luma.shape
    lit = luma > BAR_LUMA
    cols: NDArray[np.bool_] = np.logical_or.reduce(lit, axis=1)
    # a row's 8 pixels at a time where they fill whole words
    words = lit.reshape(n, h, w // 8, 8).view(np.uint64).reshape(n, h, w // 8) if w % 8 == 0 else lit
    rows: NDArray[np.bool_] = np.logical_or.reduce(words, axis=2)
    return rows, cols


def find_bars(
    rows_lit: NDArray[np.bool_], cols_lit: NDArray[np.bool_], share: float = BAR_SHARE
) -> tuple[slice, slice]:
    """The picture's rows and columns, as slices: the frame less its static letterbox or
    pillarbox bars. ``rows_lit``, ``cols_lit``: per frame, whether each row and column has a pixel
    brighter than :data:`BAR_LUMA` (:func:`lit_lines`, frames x rows and frames x columns).

    A row (column) belongs to a bar when its brightest pixel stays at most :data:`BAR_LUMA` in at
    least ``share`` of the frames, counting from an edge inwards: a fade, a flash or a bright
    title lights a bar for a few frames only, and a dark scene seldom keeps every pixel of a row
    black. Bars come in pairs: only opposite edges with bars of about the same size (within 2
    pixels) count (a dark sky at the top alone is no letterbox), and :data:`BAR_MARGIN` more
    pixels go with each (the picture's edge, blurred into the bar by the scaling). Nothing is cut
    when the picture would keep under half of either side. No bars: the full frame.

    The one bar finder of both passes; they differ in the frames they look at and in ``share``.
    The cascade decides on the model's crop before the model sees a frame, from its first
    :data:`BAR_FRAMES`, in :data:`BAR_SHARE` (90 %) of them: real footage's pans, whips, flashes
    and fades through white light the bars in up to a tenth of the first frames, and at half of
    them bars were found on all 6 of dev-1101's real videos and the model's scores moved with its input (a fade
    and two doubles lost, the bench 0.981 → 0.977: stop 23). The fast pass decides at its end on
    the thumbnail cells its same-picture tests compare (:func:`picture_cells`), from the whole
    video, in half of the frames (its ``bar_share``): 90 % of a whole video finds no bars on most
    real edits (their fades and flashes add up), which the cascade's first frames' pick still
    finds on some (over the four development and bench corpora: 4 of 19 real videos' bars at
    90 % of the whole video, all 19 at half; bars then dominate the thumbnails' correlation
    across real cuts)."""
    n = len(rows_lit)
    full = slice(0, rows_lit.shape[1]), slice(0, cols_lit.shape[1])
    if n == 0:
        return full

    def edges(lit: NDArray[np.bool_]) -> tuple[int, int]:
        dark = n - lit.sum(axis=0) >= share * n
        size = len(dark)
        lead = int(np.argmin(dark)) if not dark.all() else size
        trail = int(np.argmin(dark[::-1])) if not dark.all() else size
        inside = size - lead - trail - 2 * BAR_MARGIN
        if lead == 0 or trail == 0 or abs(lead - trail) > 2 or 2 * inside < size:
            return 0, size
        return lead + BAR_MARGIN, size - trail - BAR_MARGIN

    r0, r1 = edges(rows_lit)
    c0, c1 = edges(cols_lit)
    return slice(r0, r1), slice(c0, c1)


FADE_RAMP = 20  # how far before and after its flat run a fade's boundaries may lie


def merge_fades(
    cuts: Sequence[int], fades: Sequence[tuple[int, int]], ramp: int = FADE_RAMP, gap: int = 2
) -> list[int]:
    """Boundaries on both sides of the same fade (``fades``: the ``[start, end)`` flat runs through
    black or white) are its fade-out and fade-in: one transition, reported once, in the middle of
    the run. So are boundaries at most ``gap`` frames apart. ``ramp``: how far before and after
    its flat run a fade's boundaries may lie. A boundary in the ramps of two fades (less than
    ``2 * ramp`` frames apart) does not make them one: each fade keeps its own."""
    out: list[int] = []
    prev: int | None = None  # the last boundary as found (before a merge moved it)
    merged: tuple[int, int] | None = None  # the fade whose middle ``out[-1]`` is, if any
    for c in sorted(cuts):
        if prev is not None:
            run = next((f for f in fades if f[0] - ramp <= prev <= f[1] and f[0] <= c <= f[1] + ramp), None)
            if run is not None:
                middle = (run[0] + run[1]) // 2
                if merged is not None and run != merged:
                    out.append(middle)  # the next fade: ``out[-1]`` is the one before
                else:
                    out[-1] = middle
                merged = run
                prev = c
                continue
            if c - prev <= gap:
                prev = c
                continue
        out.append(c)
        merged = None
        prev = c
    return out


def fade_runs(
    flat: NDArray[np.bool_],
    luma: FloatArray,
    dark: float = 48.0,
    bright: float = 200.0,
    max_len: int = 250,
    held: int = 0,
) -> list[tuple[int, int]]:
    """Runs of flat frames that are black or white (a fade's held colour), as ``[start, end)``.

    With ``held`` (a number of frames), a flat run that is neither on average also yields its
    stretches of ``held`` or more black (or white) frames: a fade through black into a flat
    picture (a plain colour shot) is one flat run from the black to the end of that shot."""
    runs: list[tuple[int, int]] = []
    for s, t in true_runs(flat):
        level = float(luma[s:t].mean())
        if t - s <= max_len and (level < dark or level > bright):
            runs.append((s, t))
        elif held:
            part = luma[s:t]
            for a, b in sorted([*true_runs(part < dark), *true_runs(part > bright)]):
                if b - a >= held:
                    runs.append((s + a, s + b))
    return runs


class NeuralDetector(ShotDetector):
    """TransNetV2 on every frame: windows batched (fp16 on a GPU), frames decoded straight to 48x27.

    The model runs in a thread of its own, so the decoder's pipe is read while the GPU works: the
    video takes the longer of the two, not their sum. At most ``queued`` batches wait for it.
    Runs on the CPU too (tests, or ``HEATERS_SHOT_DETECTOR=neural`` without a GPU), several times
    slower than decoding there.
    """

    name = "transnetv2"
    pix_fmt: PixFmt = "rgb24"
    analysis_width = MODEL_SIZE[0]
    analysis_size: tuple[int, int] | None = MODEL_SIZE

    def __init__(
        self,
        *,
        device: str | None = None,
        threshold: float = 0.5,
        batch_windows: int | None = None,
        flat_std: float = 5.0,
        model: _Model | None = None,
        queued: int = 4,
    ) -> None:
        from infra.media import transnet

        self.device = device or ("cuda" if transnet.cuda_available() else "cpu")
        self.threshold = threshold
        self.batch_windows = batch_windows or (64 if self.device.startswith("cuda") else 1)
        self.flat_std = flat_std
        self.queued = max(1, queued)
        net = model if model is not None else transnet.load_model(self.device)
        self._scorer = transnet.VideoScorer(net, self.batch_windows)  # type: ignore[arg-type]
        self._pool: ThreadPoolExecutor | None = None
        self._queue: list[Future[None]] = []  # batches handed to the model's thread, oldest first
        self._luma: list[tuple[FloatArray, FloatArray]] = []
        self.scores: FloatArray = np.zeros(0, np.float32)  # per frame: ends a shot
        self.inside: FloatArray = np.zeros(0, np.float32)  # per frame: inside a transition

    @property
    def params(self) -> dict[str, Any]:
        return {
            "model": "transnetv2", "device": self.device, "threshold": self.threshold,
            "batch_windows": self.batch_windows, "flat_std": self.flat_std,
        }  # fmt: skip

    def process(self, frames: FrameBatch) -> list[int]:
        frames = _to_model_frames(frames)
        self._luma.append(_luma_stats(frames))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neural-model")
        try:
            while len(self._queue) >= self.queued or (self._queue and self._queue[0].done()):
                self._queue.pop(0).result()  # bounded memory; the model's errors surface here
        except BaseException:
            self._stop()
            raise
        self._queue.append(self._pool.submit(self._scorer.add, frames))
        return []

    def _stop(self) -> None:
        self._queue = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def finish(self) -> list[int]:
        from infra.media.transnet import transitions_from_scores

        try:
            for queued in self._queue:
                queued.result()
        finally:
            self._stop()
        both = self._scorer.finish()
        self.scores, self.inside = both[:, 0], both[:, 1]
        if not self._luma:
            return []
        mean = np.concatenate([m for m, _ in self._luma])
        std = np.concatenate([s for _, s in self._luma])
        fades = fade_runs(std < self.flat_std, mean)
        return merge_fades(transitions_from_scores(self.scores, self.threshold), fades)


@dataclass(frozen=True)
class _Plan:
    queries: list[tuple[int, str]]  # (frame, question), sorted
    clusters: list[list[int]]  # short shots' cuts
    base_cuts: list[int]  # what the fast detector alone reports, short shots left out
    base_kinds: dict[int, str]


# the model's context around each kind of question where it is not ``margin`` (25) either side,
# as frames either side or (before, after): a turned-down jump needs only the frames around it (12:
# the same answers on both corpora; 16 until stop 21), and so does a colour jump (12 and 25: the same
# answers on the four corpora but a dissolve's boundary moved by a frame; 12 asks 0.1-0.4 % fewer
# frames, stop 25), a colour change shown for a transition beside it 20. A short shot's ends get the whole margin: 20 either side (stop 21) and 8 before with 20 after
# (stop 23) gave the bench's and dev-801's answers but lost a dissolve and a cut on dev-1101. Fewer
# for the others changed answers: a veto's peak within +-12 frames moves with its context on either
# side (fewer than 25 before lost two development-corpus cuts, after moved the bench's), and a
# "look" question needs the whole transition.
QUESTION_MARGINS: dict[str, int | tuple[int, int]] = {"add": 12, "hue": 12, "change": 20}


class CascadeDetector(ShotDetector):
    """The fast detector proposes, TransNetV2 decides, on short windows only (the CPU default).

    One 64-px rgb24 decode feeds the fast pass and a 48x27 copy of every frame for the model. The
    fast pass runs on its features twice, with its own thresholds and with relaxed ones, and its
    candidates are kept without the minimum-length merge. The model scores windows of ``margin``
    frames of context around the questions (nearby questions share a window):

    The model has two heads: "ends a shot" (a hard cut's last frame, a gradual transition's
    peak) and "inside a transition" (every frame of a dissolve or fade, where the first head often
    stays low).

    * a hard cut the fast pass is sure of (``confident`` times its threshold), a fade or a gradual
      change (among them a dissolve seen in the luma variance's dip, which the model often misses
      between low-contrast or moving shots): kept, nothing asked; its other hard cuts: dropped only if both of the model's heads
      stay under ``veto`` near them (development corpus: false cuts 0.14-0.17, true ones 0.25
      and up) and the new frame's structure is one local motion could explain (under
      ``new_structure`` grey levels, or under ``new_structure_ratio`` times the change between
      the frames on either side, see :func:`_new_structure`): the model misses cuts between
      shots of the same framing;
    * cuts closer than ``fast_min_shot_len`` (a short shot, 3 frames or more): kept when the model
      sees a transition at any end (``support``) - TransNetV2 often marks only one end of a shot
      of a few frames, and that one weakly - dropped when it sees none;
    * hard cuts the fast pass turned down (relaxed thresholds, raw peaks of the frame-to-frame
      change, among them a cut between a still shot and a moving one, whose frames across it are
      less alike than the moving shot's neighbours, and weaker peaks, ``raw_unseen`` times the
      motion around, where the test below holds, :meth:`_unseen_jumps`): added where the model
      says so, and where it does not but the new frame brings structure no local motion explains
      (``add_structure`` grey levels, ``add_structure_ratio`` times the shots' own) at the same
      brightness (under ``add_luma``): a cut between shots of the same framing and exposure,
      which the model misses (:meth:`_unseen_cut`);
    * jumps of the picture's colour that leave its brightness pattern (``colour_jump``, see
      :func:`_colour_jumps`): a cut in colour only, which the fast pass's luma tests cannot see;
      added where the model says so, without the same-picture test (its luma thumbnails are
      alike across such a cut);
    * gradual changes it turned down (relaxed thresholds, dark, bright or flat runs, and changes
      that pass every gradual test but straightness, down to ``dissolve_straightness``: a dissolve
      between two moving shots wanders, asked only farther than ``fast_min_shot_len`` from what the
      fast pass proposed; and colour changes its histograms took for a cut where the pixels show
      no frame holding most of the change, a dissolve between plain colours, asked only where
      nothing is asked or kept within ``margin`` frames, ``colour_step``; the relaxed pass's
      colour changes where likewise nothing is asked or kept within ``margin``, ``colour_look``,
      and there those it turned down only as the picture before coming back by the luma's
      layout where the pixels of its window's ends are two pictures, ``colour_layout``):
      only shown to the model, whose own gradual transitions (next) decide;
      not the strict pass's own gradual changes that its minimum-length merge folded into a
      boundary it keeps (the same transition);
    * a colour change the fast pass keeps, within ``colour_reach`` frames of another question:
      shown to the model, kept whatever it says; it and any gradual change the fast pass keeps next
      to a transition the model sees (a run of "inside" frames within ``snap`` frames) move to the
      model's peak - the fast pass often marks a dissolve's ends, just outside it;
    * in the windows it scored, the model's own gradual transitions (a run of "inside" frames):
      added when the pictures on either side of the run differ (``same_gradual``, 0.97: two shots
      of one framing in real footage correlate at 0.92-0.94 across a dissolve, and 0.9 lost two on
      the validation corpus dev-1701; no false run on the corpora reaches 0.97, none is vetoed
      even with the test off) - a dissolve between similar-looking shots that the fast pass barely
      sees;
    * the model's half-belief in a whole dissolve (its "inside" head at ``support`` or more over
      ``gradual_run`` frames, "ends a shot" reaching ``veto`` there, different pictures either side,
      no boundary within ``snap`` frames, no flat frame): added - a dissolve between two shots of
      the same framing leaves the model unsure all along;
    * the model's own gradual transitions (either kind above) inside one drifting shot: no
      boundary where the frames beyond the run go on along its line, the same way and at about
      its rate, for ``drift_ramp`` frames or more up to another boundary, never ``drift_calm``
      frames steady between (:func:`_drifts`) - a gradient spinning or a colour drifting from a
      cut on, whose frames are near blends of each other; a dissolve's line stops at its ends;
    * a hard cut whose change stays at the picture's left and right sides (the largest change in
      the middle half of the width under half the largest anywhere: something leaving through one
      edge or coming in at one): no boundary, whatever the model says, unless the frames around it
      are a dissolve's (below: two pictures that differ at their sides dissolve there too); with
      ``side_flash``, where a flash ends just before the cut, the change from the frame before the
      flash counts too (the step out of a flash changes every pixel);
    * a dissolve told by the model's pixels (:meth:`_dissolve_between`: each frame of a window a
      blend of its two end frames, the weights on a straight ramp, between different pictures by
      the pixels or, with ``one_picture_structure``, by the structure: :func:`_one_picture`): a
      variance dip the fast pass turned down only for its ends' implied correlation (up to
      ``blend_dip_correlation``) is a boundary where its frames are a dissolve's; a gradual change
      it keeps is none where its window's ends are one picture (pixel correlation ``blend_same``)
      and its frames no blend of them (residual ``blend_residual``): a blob crossing a still shot;
    * a gradual, colour or blend change the fast pass keeps whose window holds a jump at the
      picture's sides (a change that stays at the left and right sides, ``side_jump`` times the
      window's usual step and either neighbour step or more: a blob wrapping round the frame): no
      boundary - a dissolve or fade changes the picture in even steps;
    * a colour change of scale ``colour_centre`` or wider moves to where its window's frames cross
      half way from its first frame to its last, where they are blends of the two
      (``colour_centre_residual``): the fast pass's peak is flat over a window holding the whole
      transition, and a short dissolve's boundary could land outside it; a narrower colour change
      the wide one's window held, more than ``colour_second`` frames from that middle, is a
      second transition of its own (two dissolves a few frames apart);
    * a flash or flicker (the brightness leaves and comes back within ``flash_frames`` frames, by
      ``flash_luma`` or more, with no structural jump above the shot's motion, or, where a strong
      flash clips and so jumps, its frames still the shot's picture and the picture after it as
      like the one before as the shot's own frames that far apart): no boundary,
      whoever proposed it, unless the model sees a longer transition around it; nor a saturated
      flash (at most ``flash_frames`` flat white frames, entered and left in one step each, back
      to the brightness before it), whose structure does jump; nor a flash on a shot that stays
      one picture (``still_flash`` grey levels or more from the frame before it and back, its
      frames that picture lit differently, the pictures on either side of it alike: see
      :func:`_still_flash`, its sides compared within its shot with ``still_flash_shot``),
      however the shot's brightness drifts around it; of two hard cuts at a flash's two edges whose
      frames between and after are the picture before it (pixel correlation ``flash_pair``: no new
      picture at either), the second goes (:func:`_flash_pairs`: one change marked twice).

    Boundaries inside one uninterrupted run of "inside" frames are one transition, and so are a
    fade-out and fade-in around a black or white run the model sees entered and left gradually.
    Nearby questions' windows are merged when at most ``window_gap`` frames apart (the model's first
    frames in a window lack context; it also sees transitions between the questions there). Frames
    no question comes near are never shown to the model.
    """

    name = "cascade"
    pix_fmt: PixFmt = "rgb24"

    def __init__(
        self,
        *,
        margin: int = 25,
        question_margins: Mapping[str, int | tuple[int, int]] | None = None,
        window_gap: int = 15,
        threshold: float = 0.5,
        relax: float = 0.6,
        confident: float = 2.0,
        min_shot_len: int = 3,
        fast_min_shot_len: int = 10,
        reach: int = 2,
        veto: float = 0.2,
        support: float = 0.3,
        raw_cut: float = 0.3,
        raw_ratio: float = 3.0,
        raw_unseen: float = 2.0,
        same_picture: float = 0.8,
        gradual_run: int = 8,
        same_gradual: float = 0.97,
        flash_frames: int = 4,
        flash_luma: float = 20.0,
        still_flash: float = 12.0,
        still_flash_same: float = 0.75,
        still_flash_shot: bool = True,
        dissolve_straightness: float = 0.2,
        colour_reach: int = 30,
        snap: int = 5,
        blend_same: float = 0.8,
        blend_residual: float = 0.4,
        blend_line: float = 0.25,
        blend_spans: Sequence[int] = (4, 8),
        blend_dip_correlation: float = 0.6,
        side_jump: float = 2.0,
        side_flash: bool = True,
        flash_pair: float = 0.75,
        colour_centre: int = 16,
        colour_centre_residual: float = 0.5,
        colour_second: int = 16,
        new_structure: float = 6.0,
        new_structure_ratio: float = 2.0,
        add_structure: float = 7.5,
        add_structure_ratio: float = 2.25,
        add_luma: float = 15.0,
        colour_jump: float = 2.0,
        colour_jump_ratio: float = 5.0,
        colour_jump_least: float = 4.0,
        fade_cut: bool = True,
        fade_held: int = 2,
        lit_cut: float = 0.82,
        one_picture_structure: bool = True,
        colour_pair: int = 14,
        model_pair: int = 16,
        drift_ramp: int = 4,
        drift_calm: int = 3,
        colour_step: bool = True,
        colour_look: bool = True,
        colour_layout: float | None = 0.45,
        fade_black: float | None = 26.0,
        speculate: bool = True,
        plan_every: int = 512,
        plan_guard: int = 300,
        plan_lookback: int = 900,
        plan_reach: int = 6000,
        bar_frames: int = BAR_FRAMES,
        model: _Model | None = None,
    ) -> None:
        self.margin = margin
        self.question_margins: dict[str, int | tuple[int, int]] = dict(
            QUESTION_MARGINS if question_margins is None else question_margins
        )
        self.window_gap = window_gap
        self.reach = reach
        self.veto = veto
        self.support = support
        self.raw_cut = raw_cut
        self.raw_ratio = raw_ratio
        self.raw_unseen = raw_unseen
        self.same_picture = same_picture
        self.gradual_run = gradual_run
        self.same_gradual = same_gradual
        self.flash_frames = flash_frames
        self.flash_luma = flash_luma
        self.still_flash = still_flash
        self.still_flash_same = still_flash_same
        self.still_flash_shot = still_flash_shot
        self.dissolve_straightness = dissolve_straightness
        self.colour_reach = colour_reach
        self.snap = snap
        self.blend_same = blend_same
        self.blend_residual = blend_residual
        self.blend_line = blend_line
        self.blend_spans = tuple(blend_spans)
        self.blend_dip_correlation = blend_dip_correlation
        self.side_jump = side_jump
        self.side_flash = side_flash
        self.flash_pair = flash_pair
        self.colour_centre = colour_centre
        self.colour_centre_residual = colour_centre_residual
        self.colour_second = colour_second
        self.new_structure = new_structure
        self.new_structure_ratio = new_structure_ratio
        self.fade_cut = fade_cut
        self.fade_held = fade_held
        self.lit_cut = lit_cut
        self.one_picture_structure = one_picture_structure
        self.colour_pair = colour_pair
        self.model_pair = model_pair
        self.drift_ramp = drift_ramp
        self.drift_calm = drift_calm
        self.colour_step = colour_step
        self.colour_look = colour_look
        self.colour_layout = colour_layout
        self.fade_black = fade_black
        self.add_structure = add_structure
        self.add_structure_ratio = add_structure_ratio
        self.add_luma = add_luma
        self.colour_jump = colour_jump
        self.colour_jump_ratio = colour_jump_ratio
        self.colour_jump_least = colour_jump_least
        self.fast_min_shot_len = fast_min_shot_len
        self.threshold = threshold
        self.relax = relax
        self.confident = confident
        self.min_shot_len = min_shot_len
        self._model = model
        self._fast = HeatersDetector(min_shot_len=1, fade_black=fade_black)
        self.analysis_width = self._fast.analysis_width
        self._frames: list[FrameBatch] = []
        self._steps: list[FloatArray] = []  # per batch: :func:`_ycc_steps` into each of its frames
        self.kinds: dict[int, str] = {}
        self.windows: list[tuple[int, int]] = []  # the frame ranges the model scored
        self.questions: list[tuple[int, str]] = []  # (frame, question) the model was asked
        self.speculate = speculate
        self.plan_every = plan_every
        self.plan_guard = plan_guard
        self.plan_lookback = plan_lookback
        self.plan_reach = plan_reach
        self._open: int | None = None  # the first window the last plan left open (absolute frame)
        self.speculated = 0  # frames scored ahead in windows the final plan does not have
        self.ahead = 0  # frames of the final plan's windows scored by the model's thread
        self._starts: list[int] = []  # first frame of each batch
        self._count = 0
        self._planned = 0  # frames decoded at the last plan
        self._pending: dict[tuple[int, int], Future[FloatArray]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.bar_frames = bar_frames
        self._held: list[FrameBatch] = []  # the first frames, until the bars are found
        self._crop: tuple[slice, slice] | None = None  # the picture inside the bars (rows, columns)

    @property
    def bars(self) -> tuple[slice, slice] | None:
        """The picture's rows and columns inside the bars found (the whole frame: none), once found."""
        return self._crop

    @property
    def params(self) -> dict[str, Any]:
        return {
            "model": "transnetv2", "bar_frames": self.bar_frames, "margin": self.margin, "question_margins": dict(self.question_margins),
            "window_gap": self.window_gap,
            "threshold": self.threshold, "relax": self.relax,
            "confident": self.confident, "min_shot_len": self.min_shot_len, "reach": self.reach,
            "veto": self.veto, "support": self.support, "raw_cut": self.raw_cut, "raw_ratio": self.raw_ratio,
            "raw_unseen": self.raw_unseen,
            "same_picture": self.same_picture, "gradual_run": self.gradual_run,
            "same_gradual": self.same_gradual, "fast_min_shot_len": self.fast_min_shot_len,
            "flash_frames": self.flash_frames, "flash_luma": self.flash_luma,
            "still_flash": self.still_flash, "still_flash_same": self.still_flash_same,
            "still_flash_shot": self.still_flash_shot,
            "dissolve_straightness": self.dissolve_straightness,
            "colour_reach": self.colour_reach, "snap": self.snap,
            "blend_same": self.blend_same, "blend_residual": self.blend_residual,
            "blend_line": self.blend_line, "blend_spans": list(self.blend_spans),
            "blend_dip_correlation": self.blend_dip_correlation, "side_jump": self.side_jump,
            "side_flash": self.side_flash, "flash_pair": self.flash_pair,
            "colour_centre": self.colour_centre, "colour_centre_residual": self.colour_centre_residual,
            "colour_second": self.colour_second,
            "new_structure": self.new_structure, "new_structure_ratio": self.new_structure_ratio,
            "add_structure": self.add_structure, "add_structure_ratio": self.add_structure_ratio,
            "add_luma": self.add_luma, "colour_jump": self.colour_jump,
            "colour_jump_ratio": self.colour_jump_ratio, "colour_jump_least": self.colour_jump_least,
            "fade_cut": self.fade_cut, "fade_held": self.fade_held, "lit_cut": self.lit_cut,
            "one_picture_structure": self.one_picture_structure,
            "colour_pair": self.colour_pair, "model_pair": self.model_pair,
            "drift_ramp": self.drift_ramp, "drift_calm": self.drift_calm,
            "colour_step": self.colour_step, "colour_look": self.colour_look,
            "colour_layout": self.colour_layout,
            "fade_black": self.fade_black,
            "fast": {k: v for k, v in self._fast.params.items() if k != "min_shot_len"},
        }  # fmt: skip

    def process(self, frames: FrameBatch) -> list[int]:
        """The first ``bar_frames`` frames wait until the bars are found (see :func:`find_bars`);
        from then on the model is shown only the picture inside them, scaled to its 48x27: the
        same bars in every frame weaken each cut's jump and make any two frames look alike, and
        the model missed cuts between shots of the same framing in pillarboxed footage. The fast
        pass keeps the whole frame (its same-picture tests leave the bars out, see
        :func:`picture_cells`; cropped too, its thresholds, chosen with the bars in, asked other
        questions: on the development corpus 1 more cut found than with the model's crop alone, but
        3 false ones)."""
        if self.speculate and self._pool is None and self._model is None:
            self._executor().submit(self._load)  # the model loads while the first frames decode
        if self._crop is None:
            self._held.append(frames)
            if sum(len(f) for f in self._held) >= self.bar_frames:
                self._settle()
            return []
        self._feed(frames)
        return []

    def _settle(self) -> None:
        """Find the bars in the frames held so far and feed those frames on."""
        held, self._held = self._held, []
        self._crop = find_bars(*lit_lines(_luma(np.concatenate(held)))) if held else None
        for frames in held:
            self._feed(frames)

    def _feed(self, frames: FrameBatch) -> None:
        self._fast.process(frames)
        picture = frames
        if self._crop is not None:
            rows, cols = self._crop
            if (rows.stop - rows.start, cols.stop - cols.start) != frames.shape[1:3]:
                picture = np.ascontiguousarray(frames[:, rows, cols])
        self._frames.append(_to_model_frames(picture))
        if self.colour_jump:  # each frame's colour step once (the plans during the decode look back)
            before = self._frames[-2][-1:] if len(self._frames) > 1 else self._frames[-1][:1]
            self._steps.append(_ycc_steps(np.concatenate([before, self._frames[-1]])))
        self._starts.append(self._count)
        self._count += len(frames)
        if self.speculate and self._count - self._planned >= self.plan_every:
            self._speculate()

    def _relaxed(self, fast: HeatersDetector | None = None) -> HeatersDetector:
        fast = fast or self._fast
        relaxed = copy.copy(fast)
        for name in ("cut_threshold", "gradual_threshold", "colour_threshold"):
            setattr(relaxed, name, getattr(fast, name) * self.relax)
        for name in ("cut_ratio", "gradual_ratio", "colour_ratio"):
            setattr(relaxed, name, 1.0 + (getattr(fast, name) - 1.0) * self.relax)
        return relaxed

    def _view(self, first: int) -> HeatersDetector:
        """The fast pass's features from batch ``first`` on, as a detector of their own (frame
        numbers start at that batch's first frame)."""
        fast = self._fast
        view = copy.copy(fast)
        view._dist = {lag: parts[first:] for lag, parts in fast._dist.items()}
        for name in ("_std", "_luma", "_moco", "_moco_sub", "_thumbs", "_hists"):
            setattr(view, name, getattr(fast, name)[first:])
        view._rows_lit, view._cols_lit = list(fast._rows_lit), list(fast._cols_lit)  # bars: all so far
        view._count = fast._count - self._starts[first]
        view._origin = self._starts[first]
        return view

    def _speculate(self, last: bool = False) -> None:
        """Score, while the decode goes on, the windows the questions so far settle: the plan of
        the frames decoded so far (from a while before the last plan's end), its windows that lie
        away from both ends of that stretch (``last``: no frame comes after these, so the windows
        at their end are settled too). :meth:`finish` takes a result only for exactly the window
        its own plan gives, so the answers do not depend on this."""
        count = self._count
        edge = self.plan_guard
        end_edge = 0 if last else edge
        # from ``plan_lookback`` frames before the last plan's end, or from before the first window
        # the last plan left open (one still growing at its end: a long run of questions)
        start = self._planned - self.plan_lookback
        if self._open is not None:
            start = max(min(start, self._open - edge), self._planned - self.plan_reach)
        first = max(0, int(np.searchsorted(self._starts, start, side="right")) - 1)
        offset = self._starts[first]
        view = self._view(first)
        view.finish()
        relaxed = self._relaxed(view)
        relaxed.finish()
        frames: FrameBatch = np.concatenate(self._frames[first:])  # from the plan's first batch on
        steps = np.concatenate(self._steps[first:]) if len(self._steps) == len(self._frames) else None
        plan = self._plan(view, relaxed, count - offset, frames, steps)
        self._open = None
        for lo, hi in self._regions(plan.queries, count - offset):
            lo, hi = lo + offset, hi + offset
            if hi > count - edge and self._open is None:
                self._open = lo
            if (offset and lo < offset + edge) or hi > count - end_edge or (lo, hi) in self._pending:
                continue
            window = frames[lo - offset : hi - offset].copy()
            self._pending[(lo, hi)] = self._executor().submit(self._score, window, 0, hi - lo)
        self._planned = count

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascade-model")
        return self._pool

    def _regions(self, queries: Sequence[tuple[int, str]], total: int) -> list[tuple[int, int]]:
        """The windows the model scores: each question's margin of frames around it (``margin``,
        or its kind's in ``question_margins``), windows at most ``window_gap`` frames apart merged."""
        spans = sorted(
            (max(0, f - before), min(total, f + after + 1))
            for f, question in queries
            for before, after in (self._margins(question),)
        )
        windows: list[tuple[int, int]] = []
        for lo, hi in spans:
            if windows and lo - windows[-1][1] <= self.window_gap:
                # a window starting just after another would see its first frames without context
                windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
            else:
                windows.append((lo, hi))
        return windows

    def _margins(self, question: str) -> tuple[int, int]:
        """The frames of context a question of this kind is shown before and after it."""
        m = self.question_margins.get(question, self.margin)
        return (m, m) if isinstance(m, int) else (m[0], m[1])

    def _plan(
        self,
        fast: HeatersDetector,
        relaxed: HeatersDetector,
        total: int,
        frames: FrameBatch | None = None,
        steps: FloatArray | None = None,
    ) -> _Plan:
        """The questions for the model, from the fast pass's candidates (strict and relaxed)."""
        strict = fast.candidates
        base = HeatersDetector(min_shot_len=self.fast_min_shot_len)
        base_cuts = base._merge(list(strict), total)  # what the fast detector alone reports
        base_kinds = dict(base.kinds)
        # questions for the model: (frame, kind of question)
        queries: list[tuple[int, str]] = []
        # short shots: strict cuts closer than the fast detector's minimum length
        cut_frames = sorted({x.frame for x in strict if x.kind == "cut"})
        clusters: list[list[int]] = []
        for f in cut_frames:
            if clusters and f - clusters[-1][-1] <= 2:
                continue
            if clusters and f - clusters[-1][-1] < self.fast_min_shot_len:
                clusters[-1].append(f)
            else:
                clusters.append([f])
        clusters = [c for c in clusters if len(c) > 1]
        in_cluster = {f for c in clusters for f in c}
        for cluster in clusters:
            queries.extend((f, "cluster") for f in cluster)
        for c in base_cuts:
            kind = base_kinds.get(c, "")
            if any(abs(c - f) <= 2 for f in in_cluster):
                continue
            if kind == "cut" and any(
                2 < abs(x.frame - c) < self.fast_min_shot_len for x in strict if x.kind == "cut"
            ):
                queries.append((c, "decide"))  # a short shot was merged into it: the model decides
                continue
            best = max((x for x in strict if x.frame == c), key=lambda x: x.score, default=None)
            # a gradual change (and a fade) is kept unasked: on the development corpus the model's
            # veto of one dropped 3 real dissolves for 3 false changes, in 12 % of its frames
            sure = kind != "cut" or (best is not None and best.score >= self.confident * fast.cut_threshold)
            if kind.startswith("colour") and self.colour_reach:
                queries.append((c, "change"))  # only near other questions (below)
                continue
            if not sure:
                queries.append((c, "veto"))
        base_cuts = [c for c in base_cuts if all(abs(c - f) > 2 for f in in_cluster)]
        near_base = np.array(sorted({*base_cuts, *in_cluster}), dtype=np.int64)
        # the relaxed pass's colour changes are left out: on both corpora the model's gradual
        # transitions found nothing there that was not false, in 2-3 % of its frames (stop 20;
        # they are looked at only where nothing else is shown to the model, ``colour_look`` below)
        proposals = [
            (x.frame, x.kind)
            for x in (*strict, *(x for x in relaxed.candidates if not x.kind.startswith("colour")))
            if x.kind != "fade"
        ]
        raw = self._raw_cuts(fast)
        proposals += [(f, "cut") for f in raw]
        # a weaker jump (``raw_unseen`` times the motion around, under ``raw_ratio``) where the new
        # frame brings structure no local motion explains at the same brightness (the test of
        # :meth:`_unseen_cut`): a cut between two shots of the same scene and framing, whose
        # motion the camera's own shake nearly hides (real footage: dev-1101 real_360p25_a 135,
        # 2.83 times the motion around, 13.0 grey levels of new structure, 2.63 times the shots'
        # own, brightness 0.7). Asked as the jumps above ("add"): the model, blind to such cuts,
        # says nothing and the test keeps it. On the four corpora's motion peaks from 1.5 times
        # on, the false places with the most structure fail it by a margin: at the same
        # brightness 11.6 grey levels at 1.80 times (bench negatives_360p24 405, motion 1.77
        # times) and 8.4 at 1.95 (dev-1101 photo_720p25 220); at 2.25 times or more 7.0 at most
        # (dev-801 photo_360p25 133, negatives_720p30 855: 6.9). dev-801 real_720p30 410 (2.30
        # times, 9.8 grey levels at 2.72 times) comes in with ``add_luma`` 15. Every ``raw_unseen``
        # from 1.0 (the structure test alone) to 2.25 gives the same answers; 2.35 loses 410, 2.9
        # loses 135; model frames +26 on dev-801 (410's window), none elsewhere (stop 26, miss5)
        if self.raw_unseen and frames is not None:
            proposals += [(f, "cut") for f in self._unseen_jumps(fast, frames[:total], set(raw))]
        proposals += [(f, "gradual") for f in self._dips(fast)]
        # a cut in colour only (the same luma pattern recoloured) leaves every luma test of the fast
        # pass silent, and its colour test looks only for gradual changes: the colour's jumps
        # (:func:`_colour_jumps`, the chroma's step ``colour_jump`` times the luma's or more) are
        # shown to the model ("hue"). On the three development corpora 10 such questions: the true
        # cuts dev-1101 mixed_720p24 647 (a colour-only cut no other test proposed, chroma step
        # 66.7 against luma 9.4), negatives_360p30 831, synthetic_360p25 648, the model 0.97 at
        # each; the 7 others (colour drifts, dissolves' middles) 0.00-0.28. Every share from 1.5 to
        # 3, ratio 4 to 10 and least step 3 to 8 finds 647 and changes no other answer (a
        # dissolve's boundary moves by 1-3 frames inside it); with the colour test of "stays"
        # comparing only the frame two before, a colour flicker was asked too (the model 0.50-0.70
        # at dev-1301 negatives_720p30 760, 792; the flash rules dropped it). Model frames +9 / +13
        # / +25 on dev-1301 / dev-1101 / dev-801 (0.1-0.3 %), none on the bench (stop 25, cut2)
        if self.colour_jump and frames is not None:
            proposals += [
                (f, "hue")
                for f in _colour_jumps(
                    frames[:total], self.colour_jump, self.colour_jump_ratio, self.colour_jump_least, steps
                )
            ]
        # a turned-down gradual change (or a dark, bright or flat run) is a place for the model to
        # look at, not a boundary to confirm: only its own gradual transitions decide there (the
        # model's peak or half-belief, 0.3, near one added 8 false boundaries for no true one on
        # the development corpus)
        # the strict pass's gradual changes the minimum-length merge folded into a kept boundary are
        # that boundary's transition: not looked at (on the development corpus the same answers in
        # 8 % fewer frames)
        folded = {x.frame for x in strict if x.kind != "cut"}
        for frame, kind in proposals:
            if len(near_base) and np.min(np.abs(near_base - frame)) <= 2:
                continue
            if kind != "cut" and frame in folded:
                continue
            queries.append((frame, "add" if kind == "cut" else "hue" if kind == "hue" else "look"))
        # a dissolve between two moving shots wanders (each frame moves as well as blends), so the
        # straightness test turns it down; the model looks there too (a lower straightness for the
        # "add" questions brought the model's half-beliefs about motion in: 8 false boundaries on
        # the bench corpus). Not within ``fast_min_shot_len`` of a frame the fast pass proposed or
        # keeps: that frame's window (25 frames either side) already holds most of the change
        # (development corpus: the same answers, 5 % fewer frames; 11 % on real_720p25_long)
        asked = np.array(sorted({*near_base.tolist(), *(f for f, _ in proposals)}), dtype=np.int64)
        for frame in self._wandering_graduals(fast):
            if not len(asked) or np.min(np.abs(asked - frame)) > self.fast_min_shot_len:
                queries.append((frame, "look"))
        # a dissolve between plain or few-coloured pictures moves whole bins of the fast pass's
        # coarse colour histogram in one frame, so its colour test takes it for a cut and drops it;
        # on the pixels each frame moves a share of the way (:meth:`_colour_steps`). The model looks
        # there only where it sees nothing yet: no question and no kept boundary within ``margin``
        # frames (a window there already shows the model this stretch; near a kept boundary it is
        # that boundary's transition, mostly a fade's ramp into black). The development corpora's
        # dissolves the model never saw (dev-1301 synthetic_360p25 536-549, dev-1101 mixed_360p25
        # 705-714, synthetic_720p25 508-519, real_720p30 30-43, dev-801 mixed_1080p25 290-303): one
        # frame holds 0.57-0.91 of the histograms' change but 0.18-0.49 of the pixels'; the model
        # then marks all five ("ends" 0.50-0.97), and nothing at the two other places so asked, in
        # real footage (dev-1301 real_360p25_a 339, dev-801 real_360p25 1317: 0.00, 0.05; pixels
        # 0.27, 0.36). Without the ``margin`` condition: 129 places, most of them fade ramps beside
        # kept fades, 6-8 % more model frames (stop 25, miss3)
        if self.colour_step:
            self._look_where_unseen(self._colour_steps(relaxed), asked, queries)
        # the relaxed pass's colour changes (left out of the proposals above) are looked at where
        # the model is shown nothing else: no question and no kept boundary within ``margin``
        # frames. A question 25 frames off puts such a change at its window's edge, where the model
        # lacks the context to see a transition; farther away nothing shows it the change at all.
        # A dissolve between two shots of the same framing changes the colours more than the
        # structure, which the relaxed pass's colour test sees and every luma test misses. On the
        # four corpora 4 places (none on the bench): the dissolve dev-1301 real_720p24 654-664 (its
        # colour changes at 655 and 665; the veto question at 687 showed 662-712, where the model
        # said 0.04 on either head; shown 630-680, "ends" 0.84, "inside" 0.93), and dev-1101
        # photo_360p30 288, dev-801 negatives_720p30 159 and 170, where it says 0.02-0.14 on
        # either head. Any distance from 15 to 30 frames and any least scale (4 or 8) gives the
        # same answers; 40 frames, or only the 16-frame scale, loses the dissolve. Model frames
        # +22 / +51 / +46 on dev-1301 / dev-1101 / dev-801 (0.2-0.5 %), none on the bench (stop
        # 26, dis4)
        if self.colour_look:
            colours = [x.frame for x in relaxed.candidates if x.kind.startswith("colour")]
            self._look_where_unseen(colours, asked, queries)
        # a colour change the relaxed pass turned down only because the picture before it comes
        # back after it by the fast pass's thumbnails (their structure, by the luma alone), where
        # the model's pixels of its window's ends are two pictures (correlation under
        # ``colour_layout``): two pictures of one layout in other colours (dev-1301 mixed_1080p25
        # 253-268, shapes before two-colour vertical gradients: the thumbnails 0.87-0.95, the
        # pixels 0.26; the colours 0.98 apart, one frame 0.19 of it), looked at where nothing
        # else is shown to the model (as ``colour_look``), and not at the video's ends, where the
        # colour test lacks the frames either side it compares (dev-1101 negatives_360p30 8, a
        # still gradient's blob at the video's start, pixels -0.05, which the model marks). On the
        # four corpora the model marks 261 there, and moves dev-801 mixed_360p30 350 to 351 (in
        # 342-358); every limit from 0.35 to 0.70 gives the same cuts (0.27-0.34 leave 350, 0.26
        # loses 261; 0.75 adds dev-1301 mixed_720p25 70, false: a gradient's blob the model takes
        # for a transition, and 91, true); model frames +0.5 / +0.4 / +0.7 % on dev-1301 /
        # dev-1101 / dev-801, none on the bench (0.6: +0.8 % there); None turns it off
        if self.colour_layout is not None and frames is not None:
            changes = self._layout_changes(relaxed, frames, total, self.colour_layout)
            self._look_where_unseen(changes, asked, queries)
        # a colour change the fast pass keeps is shown to the model (kept whatever it says, and
        # moved to the model's transition beside it, below: the fast pass often marks a dissolve's
        # ends just outside it), but only where another question lies within ``colour_reach``
        # frames: its window then mostly overlaps one the model scores anyway (all of them: 12 %
        # more frames on real_720p25_long, these 3 %). Vetoed when both heads stay silent, they
        # lost a real dissolve the model misses (real_720p25_long's 3290) for one false change
        # on the development corpus
        others = np.array(sorted(f for f, q in queries if q != "change"), dtype=np.int64)
        queries = [
            (f, q)
            for f, q in queries
            if q != "change" or (len(others) > 0 and int(np.min(np.abs(others - f))) <= self.colour_reach)
        ]
        queries.sort()
        return _Plan(queries, clusters, base_cuts, base_kinds)

    def finish(self) -> list[int]:
        try:
            return self._finish()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _finish(self) -> list[int]:
        self._fast.fade_black = self.fade_black  # the setting as it is now (``fade_black``)
        if self._crop is None:
            self._settle()
        if self._planned:
            # the last frames' windows go to the model's thread first (a plan of the last stretch
            # only), so it scores them while this thread runs the fast pass over the whole video
            self._speculate(last=True)
        self._fast.finish()
        strict = self._fast.candidates
        total = len(self._fast.flat)
        self.kinds, self.windows = {}, []
        if total < 2:
            return []
        relaxed = self._relaxed()
        relaxed.finish()
        frames = np.concatenate(self._frames)
        steps = np.concatenate(self._steps) if len(self._steps) == len(self._frames) else None
        plan = self._plan(self._fast, relaxed, total, frames, steps)
        queries, clusters, base_cuts, base_kinds = (
            plan.queries,
            plan.clusters,
            plan.base_cuts,
            plan.base_kinds,
        )
        self.questions = queries
        scores = np.full((total, 2), np.nan, np.float32)
        regions = self._regions(queries, total)
        self.ahead = 0
        # the model's thread works through the windows it was given (during the decode, and the
        # last ones before the plan above) from the first; this one takes the rest from the last
        # (any the final plan alone has, then the given ones not started yet), so both cores score
        # until the two meet
        futures = {r: self._pending.pop(r, None) for r in regions}
        for (lo, hi), future in reversed(futures.items()):
            if future is None or future.cancel():
                scores[lo:hi] = self._score(frames, lo, hi)
                futures[(lo, hi)] = None
        for (lo, hi), future in futures.items():
            if future is not None:
                self.ahead += hi - lo
                scores[lo:hi] = future.result()
            self.windows.append((lo, hi))
        # windows scored ahead that the final plan does not have (its questions moved): wasted
        self.speculated = sum(b - a for (a, b), future in self._pending.items() if not future.cancel())
        self._pending = {}
        from infra.media.transnet import transitions_from_scores

        filled = np.nan_to_num(scores[:, 0], nan=0.0)  # ends a shot
        inside = np.nan_to_num(scores[:, 1], nan=0.0)  # inside a transition
        model_cuts = transitions_from_scores(filled, self.threshold)
        cuts = set(base_cuts)
        kinds = {c: base_kinds.get(c, "cut") for c in base_cuts}
        # a gradual change the fast pass keeps whose two ends are the same picture and whose frames
        # between them are no blend of those ends: the same shot moving or changing its light, not
        # a dissolve (whose frames lie on the straight line from one end to the other). "The same
        # picture" here is the same palette (the pixels' correlation alone): a shot that moves
        # changes its structure over the window's 10-18 frames, not its palette; by the structure
        # (:func:`_picture_correlation`) the vetoes at dev-1101 mixed_720p24 322 (pixels 0.96,
        # structure -0.31) and dev-1301 negatives_720p25 569 (0.91, 0.63) go, two false boundaries
        # back, and a true dissolve's ends reach 0.80 (dev-801 photo_360p25 735, pixels 0.21)
        if self.blend_same < 1.0:
            for c in sorted(cuts):
                scale = _scale(kinds.get(c, ""))
                if scale and c - scale - 1 >= 0 and c + scale + 1 < total:
                    fit = _blend_fit(frames, c - scale - 1, c + scale + 1)
                    if fit.correlation >= self.blend_same and fit.residual >= self.blend_residual:
                        cuts.discard(c)
        # a gradual change the fast pass keeps whose window holds one jump at the picture's sides: a
        # blob leaving through one edge and coming back at the other (a still gradient's drifting
        # blobs), whose one step the fast pass's lag-k distances see at every lag across it - not a
        # dissolve or fade, whose frames change in even steps, the middle as much as the sides. The
        # jump: ``side_jump`` times the window's median step or more, and as much against either
        # step beside it (the lower of the two on the four corpora: the false boundaries 2.32-15.9,
        # bench negatives_360p24 75 3.03, dev-1101 negatives_360p30 760 and 809, negatives_1080p25
        # 19, dev-801 negatives_360p25 686, dev-1301 mixed_1080p25 423; the true dissolves and
        # fades 1.83 at most, dev-1101 synthetic_360p30 472). Not where the frames around it are a
        # dissolve's (:meth:`_blend_around`): a dissolve during which a blob wraps round (dev-1301
        # synthetic_720p30 29-42, 2.49 at 33, which the fast pass calls a cut); it keeps 809 false
        if self.side_jump:
            for c in sorted(cuts):
                scale = _scale(kinds.get(c, ""))
                if (
                    scale
                    and _side_jump(frames, c - scale - 1, c + scale + 1, self.side_jump)
                    and not self._blend_around(frames, c)
                ):
                    cuts.discard(c)
        # a colour change of the widest scale moves to the middle of its change: the fast pass puts
        # it at the peak of the histogram distance between ``t - k`` and ``t + k``, which is flat
        # wherever the whole transition lies inside that window (over ``2k - L`` frames for a
        # transition of ``L`` frames), so at k = 16 a 10-frame dissolve's boundary may land up to 11
        # frames off its middle, outside it (dev-1301 photo_720p25 341, 6 frames before 347-356:
        # one false boundary and one missed dissolve). The middle: where the window's frames cross
        # half way on the line from its first frame to its last (:func:`_change_middle`), only
        # where the frames are blends of the two ends (residual ``colour_centre_residual``): in a
        # moving shot the weights wander and cross anywhere (dev-1301 real_360p30 79, residual
        # 0.65, would leave its dissolve 65-79 for 92). Of the 34 colour16 boundaries at this step
        # on the four corpora, 31 are under 0.5: the 29 at a true transition lay 0-12.5 frames
        # from its middle (median 5.5), now 0-4.5 (median 1), 7 of them outside it before and
        # none after; the other 2 (false: a still gradient brightening, a zoom) move by a frame. In the output:
        # photo_720p25 341 becomes its dissolve's boundary, and bench real_720p25_long 2374 and
        # dev-1301 synthetic_720p30 340, second marks of a dissolve, join the first (2353 and 323).
        # Residuals 0.44-0.64 give the same cuts, 0.38 the same F1; at 0.37 bench real_720p25_long
        # 2374 (0.377) stays while 2353 (0.362) moves, and the dissolve 2355-2368 is lost. At
        # ``colour_centre`` 8 the narrower windows leave little plateau and the crossing follows
        # the shots' motion (dev-1101 real_360p25_b 938 moves to its dissolve's first frame and is
        # then lost); 0 turns the rule off
        if self.colour_centre:
            for c in sorted(cuts):
                kind = kinds.get(c, "")
                scale = _scale(kind)
                if not kind.startswith("colour") or scale < self.colour_centre:
                    continue
                m = _change_middle(frames, c - scale, c + scale, self.colour_centre_residual)
                if m is not None and m != c and all(abs(m - x) > 2 for x in cuts if x != c):
                    cuts.discard(c)
                    cuts.add(m)
                    kinds[m] = kind
                    # the wide window may hold two transitions: the fast pass kept its change
                    # (the strongest) and left out the narrower scales' changes of overlapping
                    # windows, one of which may be the other transition, now far from ``m``
                    # (dev-1101 synthetic_360p25: dissolves 778-790 and 804-816, colour16 798
                    # moves to 808, colour8 782 left out was the first; :meth:`_second_change`).
                    # On the four corpora the narrower changes left out for a colour16 that moves
                    # lie 4-9 frames from its new place (its own transition's) and within their
                    # own window (2k) of a kept boundary; 782 lies 26 from 808. Every
                    # ``colour_second`` from 4 to 25 gives the same answers; 0 turns it off
                    if self.colour_second:
                        second = self._second_change(c, scale, m, cuts)
                        if second is not None:
                            cuts.add(second.frame)
                            kinds[second.frame] = second.kind
        # a variance dip the fast pass turned down only because its ends' implied correlation is
        # above its limit, whose frames are blends of its window's ends: a dissolve
        # (not where another boundary is this dissolve's: within its window's length, or farther
        # when the frames up to it still blend, as where the fast pass marks a dissolve's end)
        for c, kind in self._confirmed_blends(frames):
            k = _scale(kind)
            if all(
                abs(c - x) > 2 * k
                and (
                    abs(c - x) > 2 * k + self.fast_min_shot_len
                    or not self._dissolve_between(frames, min(c - k, x - 1), max(c + k, x))
                )
                for x in cuts
            ):
                cuts.add(c)
                kinds[c] = kind
        for cluster in clusters:
            # TransNetV2 often marks only one end of a shot of a few frames, and that one weakly:
            # a short shot stays when the model sees a transition at any of its ends, and goes
            # when it sees none
            if any(
                float(filled[max(0, f - self.reach - 1) : f + self.reach].max()) >= self.support
                for f in cluster
            ):
                cuts.update(cluster)
                kinds.update({f: "cut" for f in cluster})
        for f, question in queries:
            lo, hi = max(0, f - self.reach), min(total, f + self.reach + 1)
            said = [m for m in model_cuts if lo <= m <= hi]
            if question == "veto":  # a hard cut: the model must see a transition near it
                around = slice(max(0, f - self.margin // 2), f + self.margin // 2)
                # either head: a dissolve the fast pass took for a cut may leave "ends a shot"
                # low while "inside" rises (photo_720p24's at 60: 0.13 and 0.25, the false cuts
                # vetoed on both corpora 0.17 at most on either); not where the picture brings
                # structure no local motion explains: the model is blind to cuts between shots of
                # the same framing (real footage: 0.04-0.19 on both heads; 8.9-15.9 grey levels of
                # new structure, 2.1-3.9 times the shots' own), and the false cuts it rightly
                # vetoes are drifts and noise that the fast pass's contrast normalisation blows up
                # in low-contrast pictures (1.2-3.2 grey levels; stop 24, cut1)
                if max(float(filled[around].max()), float(inside[around].max())) < self.veto and not (
                    self.new_structure
                    and _new_structure(frames, f, self.new_structure, self.new_structure_ratio)
                ):
                    cuts.discard(f)
            elif question in ("look", "change"):  # only the model's own transitions decide there
                continue
            elif question == "decide":
                if not said:
                    cuts.discard(f)
            elif not said and question == "add" and self._unseen_cut(frames, f):
                # a turned-down jump the model does not mark: a cut between shots of the same
                # framing and exposure, which the model misses as it does the vetoed ones above
                # (real footage, the model 0.00-0.38 on either head), where the new frame brings
                # structure no local motion explains and the brightness stays (see
                # :meth:`_unseen_cut`)
                if all(abs(f - c) > 2 for c in cuts):
                    cuts.add(f)
                    kinds[f] = "cut"
            elif said:
                m = min(said, key=lambda m: abs(m - f))
                # the pictures compared lie outside the transition the model sees there (a
                # dissolve's own frames look like both of its shots)
                start, end = _extent(inside, m - 1, self.threshold)
                # (not at a colour jump: the same-picture test compares the fast pass's luma
                # thumbnails, which a cut in colour only leaves alike; its colour stays changed)
                if all(abs(m - c) > 2 for c in cuts) and (
                    question == "hue" or not self._same_across(min(start, m - 2), max(end, m + 2))
                ):
                    cuts.add(m)
                    kinds[m] = "model"
        # a gradual or colour change the fast pass keeps next to a transition the model sees (a run
        # of "inside" frames within ``snap`` frames, 3 or longer) is that transition: the fast
        # pass often marks a dissolve's ends, just outside it; the boundary moves to the model's
        # peak, and two such changes around one dissolve become one
        if self.snap:
            for c in sorted(cuts):
                kind = kinds.get(c, "")
                if not kind.startswith(("gradual", "colour", "blend")) or kind == "gradual-model":
                    continue
                run = _run_near(inside, c - 1, self.snap, self.threshold)
                if run is None or run[1] - run[0] < 3:
                    continue
                peak = run[0] + int(np.argmax(filled[run[0] : run[1]])) + 1
                cuts.discard(c)
                if all(abs(peak - x) > 2 for x in cuts):
                    cuts.add(peak)
                    kinds[peak] = kind
        # a transition the model sees whole (its "inside" head high over several frames) that no
        # boundary marks yet: mostly a dissolve between two similar-looking shots, which the fast
        # pass barely sees and whose ends the same-picture test finds alike
        runs: dict[int, tuple[int, int]] = {}  # the model's gradual boundaries: their runs
        for start, end in true_runs(inside >= self.threshold):
            peak = start + int(np.argmax(filled[start:end]))
            if (
                end - start >= self.gradual_run
                and filled[peak] >= self.support
                and all(not start - 2 <= c <= end + 2 for c in cuts)
                and not self._same_across(start, end, self.same_gradual)
            ):
                cuts.add(peak + 1)
                kinds[peak + 1] = "gradual-model"
                runs[peak + 1] = (start, end)
        # the model's own gradual transitions in the windows it scored, where no question was
        # (a dissolve of similar-looking shots lies between the fast pass's proposals)
        for m in model_cuts:
            start, end = _extent(inside, m - 1, self.threshold)
            if (
                end - start >= 3
                and all(abs(m - c) > 2 and not start - 2 <= c <= end + 2 for c in cuts)
                and not self._same_across(start, end, self.same_gradual)
            ):
                cuts.add(m)
                kinds[m] = "gradual-model"
                runs[m] = (start, end)
        # the model's half-belief in a whole dissolve: its "inside" head at ``support`` or more (not
        # the threshold) over ``gradual_run`` frames or more, with "ends a shot" reaching ``veto``
        # (the level that keeps an unsure cut) in that run, different pictures on either side of
        # it and no boundary within ``snap`` frames (the fast pass often marks a dissolve's ends
        # just outside it: that boundary is this transition's). A dissolve between two shots of the
        # same framing (real footage) leaves the model unsure over its whole length, but rarely
        # dips it under ``support``; a camera move it half-believes is shorter or leaves "ends"
        # lower. A run reaching flat frames is a fade's ramp: the fade rules' business
        flat = self._fast.flat
        for start, end in true_runs(inside >= self.support):
            peak = start + int(np.argmax(filled[start:end]))
            if (
                end - start >= self.gradual_run
                and filled[peak] >= self.veto
                and all(not start - self.snap <= c <= end + self.snap for c in cuts)
                and not bool(flat[max(0, start - 2) : end + 2].any())
                and not self._same_across(start, end, self.same_gradual)
            ):
                cuts.add(peak + 1)
                kinds[peak + 1] = "gradual-half"
                runs[peak + 1] = (start, end)
        # the model's own gradual transition inside one shot whose picture drifts: the frames
        # beyond its run go on along the run's line (the change from the frame before it to its
        # last), smoothly and the same way, up to another boundary, with no steady picture between
        # (:func:`_drifts`). A dissolve changes the picture between two steady ones: past its ends
        # its line stops, though its shots move (their motion lies mostly across the line). A
        # gradient spinning or a colour drifting from a cut (or a dissolve) on is nearly a blend of
        # any two of its frames, and the model calls its middle a dissolve. The four corpora's 112
        # gradual boundaries of the model at this step (most later merged into a transition's other
        # boundary): a true one's line goes on at most 2 frames before reaching a boundary (a
        # transition the model marks twice); the false ones 11 (dev-1101 negatives_720p25 399: a
        # gradient brightening from a dissolve's end up to the next dissolve) and 7 (bench
        # negatives_360p24 867: back to the cut it follows). ``drift_ramp`` 3-7 and ``drift_calm``
        # 2-6 give the same answers, and so do a step's bounds at 0.4-0.6 and 1.5-3 times the
        # rate; ``drift_ramp`` 2 drops the model's second boundaries of true transitions (their
        # cuts move by 1-6 frames), 8 keeps 867, 12 keeps 399. Counting any step of half the rate
        # (no direction, no upper bound) lost a true dissolve with a flash in it at ``drift_calm`` 4
        if self.drift_ramp:
            bounds = [_extent_of(x, kinds.get(x, "")) for x in sorted(cuts)]
            for c, (start, end) in runs.items():
                others = [(lo, hi) for lo, hi in bounds if hi < start - 1 or lo > end]
                if _drifts(frames, start - 1, end, others, self.drift_ramp, self.drift_calm):
                    cuts.discard(c)
        # a colour change and another gradual change (the fast pass's or the model's) at most
        # ``colour_pair`` frames apart: one dissolve marked twice (:func:`_colour_pairs`)
        if self.colour_pair:
            cuts -= _colour_pairs(cuts, kinds, inside, self.colour_pair, self.snap)
        # a hard cut whose change stays at the picture's sides: something leaving through one edge
        # or coming in at one (a blob wrapping round the frame, the model silent or half-fooled), not
        # a new picture, which changes the middle about as much as the sides (the true cuts of the
        # bench and both development corpora: 0.54 of the largest change or more in the middle half;
        # the false ones dropped: 0.04-0.40). With ``side_flash``, where the frames just before the
        # cut are a flash (:func:`_lit_before`), the change is also taken from the frame before the
        # flash: a flash changes every pixel, so the step out of it hides a blob wrapping round in
        # the same step (dev-801 mixed_720p24 646: a one-frame flash at 645 on a gradient whose blob
        # wraps at 646; from 645 the middle half holds 0.87 of the largest change, from 644 0.375).
        # The 36 cuts at a true transition just after a flash on the four corpora: 0.68 or more
        # from the frame before it (dev-1301 mixed_720p25 209; the next 0.80), so the limit's 0.5
        # stands between
        for c in sorted(cuts):
            if kinds.get(c) != "cut":
                continue
            lit = (
                _lit_before(self._fast.luma, c, self.flash_frames, self.flash_luma)
                if self.side_flash
                else None
            )
            sides = _change_at_sides(frames, c) or (lit is not None and _change_at_sides(frames, c, lit))
            if sides and not self._blend_around(frames, c):
                cuts.discard(c)
        # a flash or flicker: the brightness leaves and comes back within a few frames while the
        # picture's structure changes no more than the shot's own motion - the model's usual false
        # boundary in a flickering shot, and the fast pass's when the flash is long
        # (a flash inside a dissolve the model sees whole leaves the dissolve's boundary alone);
        # a saturated flash (flat white frames) jumps structurally, so it is told by its steps:
        # in and out in one frame each, back to the level before; a flash on a shot that stays one
        # picture (:func:`_still_flash`) is told by its pictures, whatever the shot's brightness
        # does around it: the frames of the flash and the frame after it are the frame before it's
        # picture (pixel correlation 0.5 or more) and the pictures 8 frames either side of it alike
        # (``still_flash_same``). The false boundaries it drops (dev-1301 negatives_720p25 257, 488,
        # 502, negatives_720p30 759, photo_720p25 39, 51; bench photo_360p25 333: 13-32 grey levels
        # over 1-4 frames in breathing gradients and still photos, where the motion test or the
        # 7-frame medians of :func:`_flash` fail): the flash's frames 0.78-0.98, the sides 0.83-0.98;
        # the true boundaries at such a flash (a flash inside a dissolve, a cut beside a flash:
        # dev-1301 photo_360p25 603, dev-1101 negatives_360p30 350, dev-801 mixed_360p30 240 and
        # 287, synthetic_720p25 244, bench negatives_360p24 46 and 245) 0.70 at most on the sides,
        # and a fade's dark frames 0.05 at most against the picture before (dev-1301 photo_720p25
        # 69). Every level from 8 to 12 and every ``still_flash_same`` from 0.7 to 0.8 gives the
        # same answers (16 keeps the bench's 333, 0.6 loses dev-1101's 350). With
        # ``still_flash_shot`` the two pictures compared lie inside the flash's shot (between the
        # changes of the boundaries beside it, :func:`_extent_of`), at least ``flash_frames`` frames
        # from the flash: 8 frames before a flash 6 frames after a cut is the shot before the cut
        # (dev-1301 synthetic_720p30 496, a one-frame flash on a still gradient: its frames 0.80,
        # the sides 6 frames inside its shot 0.86, 8 frames back across the cut 0.09). On the four
        # corpora the sides are cut short at 4 other flashes, all true fades' (dev-1301 photo_720p25
        # 69, synthetic_360p24 411, dev-1101 real_360p25_b 1133, bench synthetic_360p30 329), whose
        # dark frames fail the flash-frame test (0.05 at most against 0.5) either way; a minimum
        # side of 4 to 6 frames gives the same answers
        fast = self._fast

        def similar(a: int, b: int) -> float:
            return fast._similarity(fast.thumbs, a, b)

        white = true_runs(fast.flat & (fast.luma > fast.fade_bright))  # once: a Python pass over the video
        # a flash that a cut ends: the frames after a cut are the picture before it, lit differently
        # (the same pixels' pattern and, with ``one_picture_structure``, the same structure: two
        # pictures of one hue share the first alone; the brightness ``flash_luma`` or more away),
        # until a cut to another picture a few frames on; the flash test above needs the picture
        # back after it
        if self.lit_cut:
            for c in sorted(cuts):
                after = [x for x in cuts if c < x <= c + self.fast_min_shot_len]
                if (
                    kinds.get(c) == "cut"
                    and after
                    and _lit_until_cut(
                        frames,
                        fast.luma,
                        c,
                        after[0],
                        self.flash_luma,
                        self.lit_cut,
                        self.one_picture_structure,
                    )
                ):
                    cuts.discard(c)
        # a flash marked at both its edges: two hard cuts at most ``flash_frames`` + 1 apart whose
        # frames between are a flash (each ``flash_luma`` or more off the frame before the first
        # and the frame of the second, the same way: :func:`_lit_before`), its frames and the frame
        # after it the picture before it (the pixels' pattern at ``flash_pair``): neither edge
        # brings another picture, so they mark one change at most, and the second goes; the flash
        # rules below may still drop the first (:func:`_flash_pairs`). dev-1101 photo_720p25 508 +
        # 511: a 3-frame flash inside the dissolve 503-514 between two photos of one palette, 0.90
        # at least (the flash clips, so by the structure 0.55); on the four corpora the pairs whose
        # second cut is true reach 0.62 (dev-1101 real_720p30 425 + 429, lost at 0.6), the others
        # 0.74-0.75 and dropped later by the flash rules either way: 0.65-0.9 give the same answers
        if self.flash_pair:
            cuts -= _flash_pairs(
                frames, fast.luma, cuts, kinds, self.flash_frames, self.flash_luma, self.flash_pair
            )
        for c in sorted(cuts):
            start, end = _extent(inside, c - 1, self.threshold)
            shot = (0, total - 1)
            if self.still_flash_shot:
                spans = [_extent_of(x, kinds.get(x, "")) for x in cuts if x != c]
                shot = (
                    max((hi for _, hi in spans if hi < c), default=0),
                    min((lo for lo, _ in spans if lo > c), default=total - 1),
                )
            if end - start <= self.flash_frames + 2 and (
                _flash(fast.luma, fast.motion, fast.flat, c, self.flash_frames, self.flash_luma, similar)
                or _saturated_flash(fast.luma, white, c, self.flash_frames, self.flash_luma)
                or (
                    self.still_flash > 0
                    and _still_flash(
                        frames,
                        fast.luma,
                        c,
                        self.flash_frames,
                        self.still_flash,
                        self.still_flash_same,
                        shot=shot,
                    )
                )
            ):
                cuts.discard(c)
        # a flat black or white run is a fade's held colour when the fast pass calls it a fade, or
        # when the model sees the picture going into it and coming out of it gradually
        fade_frames = {c.frame for c in (*strict, *relaxed.candidates) if c.kind == "fade"}
        fades = [
            (a, b)
            for a, b in fade_runs(self._fast.flat, self._fast.luma, held=self.fade_held)
            if any(a <= f < b for f in fade_frames)
            or (
                float(inside[max(0, a - 4) : a + 1].max(initial=0.0)) >= self.threshold
                and float(inside[max(0, b - 1) : b + 4].max(initial=0.0)) >= self.threshold
            )
        ]
        # such a run with no boundary within a fade's reach of it (``FADE_RAMP``) is a fade none of
        # the tests proposed: the fast pass turns a fade down when the pictures on either side look
        # alike (real footage's same framing) and the model's "ends" head may stay low through
        # it; not a saturated flash (a white run entered and left in one step), nor a flash on a still
        # picture (:func:`_still_flash`: dev-1301 negatives_720p30 759, a flicker whose flash holds a flat frame)
        for a, b in fades:
            if (
                any(a - FADE_RAMP <= c <= b + FADE_RAMP for c in cuts)
                or _saturated_flash(fast.luma, white, a, self.flash_frames, self.flash_luma)
                or (
                    self.still_flash > 0
                    and _still_flash(
                        frames, fast.luma, a, self.flash_frames, self.still_flash, self.still_flash_same
                    )
                )
            ):
                continue
            cuts.add((a + b) // 2)
            kinds[(a + b) // 2] = "fade"
        # the model's own gradual transition at most ``model_pair`` frames from a gradual change the
        # fast pass keeps is that change's transition seen at its other end (:func:`_model_seconds`)
        if self.model_pair:
            cuts -= _model_seconds(cuts, kinds, self.model_pair, fades)
        # a hard cut within a fade's reach after its flat run is the fade's own end unless it is a
        # transition of its own: the model's "ends a shot" peaks at it, its "inside" head went quiet
        # between the fade and it (the fade-in is over), and the picture it brings is new both
        # against the frame before and against the picture before a possible flash (real footage:
        # cuts 13 frames after a fade's end, 0.59-0.70; a flash after a fade returns to its picture)
        own = {
            c
            for c in cuts
            if self.fade_cut
            and kinds.get(c) == "cut"
            and self._cut_after_fade(frames, c, fades, filled, inside)
        }
        merged = merge_fades(sorted(cuts - own), fades)
        merged = _one_per_transition(sorted({*merged, *own}), filled, inside, self.threshold)
        out: list[int] = []
        for c in merged:
            if c < self.min_shot_len or total - c < 1:
                continue
            if out and c - out[-1] < self.min_shot_len:
                continue
            out.append(c)
        self.kinds = {c: kinds.get(c, "fade") for c in out}
        logger.debug(
            "cascade: %d questions in %d windows, model on %d of %d frames -> %d cuts",
            len(queries), len(regions), sum(b - a for a, b in self.windows), total, len(out),
        )  # fmt: skip
        if self.speculated:
            logger.debug(
                "cascade: %d frames scored ahead for windows the final plan changed", self.speculated
            )
        return out

    def _second_change(self, c: int, scale: int, m: int, cuts: set[int]) -> Candidate | None:
        """A second transition in the window of the colour change at ``c`` (scale ``scale``) that
        moved to ``m``: the strongest narrower colour change the fast pass left out for it (its
        window overlapped ``c``'s, :func:`_strongest_apart`) lying more than ``colour_second``
        frames from ``m`` and more than its own window (``2k``) from every other boundary, or None.
        Two dissolves a few frames apart fit one wide window; the narrower scales see each alone."""
        apart = [
            x
            for x in self._fast.swallowed
            if _scale(x.kind) < scale and abs(x.frame - c) <= scale and abs(x.frame - m) > self.colour_second
        ]
        if not apart:
            return None
        best = max(apart, key=lambda x: x.score)
        if any(abs(best.frame - y) <= 2 * _scale(best.kind) for y in cuts):
            return None
        return best

    def _cut_after_fade(
        self,
        frames: FrameBatch,
        c: int,
        fades: Sequence[tuple[int, int]],
        filled: FloatArray,
        inside: FloatArray,
    ) -> bool:
        """Whether the hard cut at ``c``, within ``FADE_RAMP`` frames after a fade's flat run, is a
        transition of its own rather than the fade's end: see the call in ``_finish``."""
        run = next((b for a, b in fades if b <= c <= b + FADE_RAMP), None)
        if run is None or float(filled[max(0, c - self.reach - 1) : c + self.reach].max()) < self.threshold:
            return False
        quiet = true_runs(inside[run : max(run, c - self.reach - 1)] < self.veto)
        if not any(end - start >= 3 for start, end in quiet):
            return False
        back = c - self.flash_frames - 2
        if back < 0 or not _new_structure(frames, c, self.new_structure, self.new_structure_ratio):
            return False
        before, after = _luma(frames[[back, c]])
        return _block_residual(before, after) >= self.new_structure

    def _unseen_cut(self, frames: FrameBatch, frame: int) -> bool:
        """Whether a turned-down jump at ``frame`` that the model does not mark is a cut between
        shots of the same framing and exposure: the new frame brings structure no local motion
        explains (:func:`_new_structure` at ``add_structure`` grey levels and
        ``add_structure_ratio`` times the shots' own) while the picture's mean brightness moves by
        less than ``add_luma`` (a flash's clipped highlights are new structure too, and it moves
        the brightness).

        The development corpora's turned-down jumps the model does not mark (stop 25, cut2): the
        true cuts added (dev-1301 real_1080p25 61, real_360p25_b 1230; dev-1101 real_360p25_b 181,
        650; dev-801 real_360p25 128, real_720p25_a 313, 542) 8.7-16.7 grey levels, 2.61-4.58
        times, the brightness moving 1.5-8.9; the false ones with as much structure (6 and twice,
        the veto's test) are all flashes (gradients, photos, synthetic shots, one in real
        footage), 14.0-105 grey levels of brightness (the flash rules drop most, not dev-1301
        negatives_720p25 253, 257,
        photo_360p25 82, 439, 443, photo_720p25 7, mixed_360p30 895: 4-frame flashes whose
        structure jumps); at the same brightness the false ones reach 5.9 grey levels at ratio 3.8
        (dev-801 mixed_360p30 610) or 8.4 at ratio 1.95 (dev-1101 photo_720p25 220). Levels 6-8.5
        with ratios 2-2.5 and ``add_luma`` 10-20 give the same answers; 4 adds 610; without
        ``add_luma`` 253, 257, 439 and 443 come in (at level 6 and ratio 2 all 7 flashes).
        ``add_luma`` was 10 (stop 25); at 15 (stop 26, miss5) it also takes dev-801 real_720p30
        410, a cut between two shots of one flickering scene (the brightness steps 11.9 across the
        cut, up to 10.9 within the shot before) that :meth:`_unseen_jumps` proposes (9.8 grey
        levels, 2.72 times); the nearest false "add" question at ``add_structure`` and its ratio
        moves the brightness by 18.5 (dev-801 negatives_360p25 600, a flash: 8.2 grey levels, 2.77
        times), the true ones the model marks itself 10.6-17.3; every ``add_luma`` from 12.5 to 20
        gives the same answers on the four corpora."""
        if not self.add_structure or not 1 <= frame < len(frames):
            return False
        step = _luma(frames[frame - 1 : frame + 1]).mean(axis=(1, 2))
        return abs(float(step[1] - step[0])) < self.add_luma and _new_structure(
            frames, frame, self.add_structure, self.add_structure_ratio
        )

    def _blend_around(self, frames: FrameBatch, frame: int) -> bool:
        """Whether the frames around ``frame`` (``k + 1`` either side for ``k`` in ``blend_spans``)
        are a dissolve's (:meth:`_dissolve_between`)."""
        return any(self._dissolve_between(frames, frame - k - 1, frame + k + 1) for k in self.blend_spans)

    def _dissolve_between(self, frames: FrameBatch, a: int, b: int) -> bool:
        """Whether frames ``a+1..b-1`` are a dissolve from frame ``a`` to frame ``b``: each a blend of
        the two (:func:`_blend_fit`) with its weight rising on a straight line (never falling by
        more than 0.03, within 0.06 RMS of the even ramp: a cut jumps from one end to the other in
        one frame), the frames near their blends (residual at most ``blend_line``: a pan or an
        object moving is no blend), between two different pictures (not :func:`_one_picture` at
        ``blend_same``, by the pixels and, with ``one_picture_structure``, the structure: two
        pictures of one hue are alike by the pixels alone, two of one layout by the structure
        alone). On the four corpora the windows that pass the other tests (9: eight true dissolves,
        dev-1101 negatives_360p30 804-814 a false one) have ends 0.63 at most by the pixels and 0.52
        by the structure: the same answers either way."""
        if a < 0 or b >= len(frames) or b - a < 2:
            return False
        fit = _blend_fit(frames, a, b)
        steps = np.diff(np.concatenate([[0.0], fit.weights, [1.0]]))
        ramp = np.arange(1, b - a) / (b - a)
        return (
            not _one_picture(frames, a, b, self.blend_same, self.one_picture_structure, fit.correlation)
            and fit.residual <= self.blend_line
            and float(steps.min()) >= -0.03
            and float(np.sqrt(np.mean((fit.weights - ramp) ** 2))) <= 0.06
        )

    def _confirmed_blends(self, frames: FrameBatch) -> list[tuple[int, str]]:
        """The fast pass's variance dips (:meth:`HeatersDetector._blends`) with the ends' implied
        correlation up to ``blend_dip_correlation`` instead of its own limit, those it did not
        propose, whose windows' frames are a dissolve's (:meth:`_dissolve_between`)."""
        fast = self._fast
        if self.blend_dip_correlation <= fast.blend_correlation or not fast.blend_scales:
            return []
        loose = copy.copy(fast)
        loose.blend_correlation = self.blend_dip_correlation
        own = {c.frame for c in fast.candidates if c.kind.startswith("blend")}
        found = loose._blends(
            np.concatenate(fast._std),
            np.concatenate(fast._luma),
            np.concatenate(fast._dist[1]),
            np.concatenate(fast._moco_sub),
            fast.thumbs,
            fast._count,
            [c for c in fast.candidates if not c.kind.startswith("blend")],
        )
        return [
            (c.frame, c.kind)
            for c in found
            if c.frame not in own
            and self._dissolve_between(frames, c.frame - _scale(c.kind), c.frame + _scale(c.kind))
        ]

    def _look_where_unseen(
        self, places: Sequence[int], asked: NDArray[np.int64], queries: list[tuple[int, str]]
    ) -> None:
        """A "look" question at each of ``places`` with no frame of ``asked`` (the kept boundaries
        and proposals) and no question already in ``queries`` within ``margin`` frames."""
        seen = np.array(sorted({*asked.tolist(), *(f for f, _ in queries)}), dtype=np.int64)
        for frame in places:
            if not len(seen) or np.min(np.abs(seen - frame)) > self.margin:
                queries.append((frame, "look"))

    def _colour_steps(self, relaxed: HeatersDetector) -> list[int]:
        """The relaxed pass's colour changes (:meth:`HeatersDetector._colour_graduals`) it turned
        down only because one frame holds most (over half) of the histograms' change, where on the
        model's pixels no frame does: the RMS change from each frame to the next at most half the
        RMS change between the window's ends (a cut puts nearly all of it in one frame). Frame
        numbers from ``relaxed``'s first frame (a plan of a later stretch during the decode)."""
        starts = np.array(self._starts, dtype=np.int64)

        def share(a: int, b: int) -> float:  # only the batches holding frames a..b are joined
            lo, hi = relaxed._origin + a, relaxed._origin + b
            first = max(0, int(np.searchsorted(starts, lo, side="right")) - 1)
            last = max(first, int(np.searchsorted(starts, hi, side="right")) - 1)
            offset = int(starts[first]) if len(starts) else 0
            return _largest_step(np.concatenate(self._frames[first : last + 1]), lo - offset, hi - offset)

        return sorted({c.frame for c in relaxed._colour_graduals_again(share)})

    def _layout_changes(
        self, relaxed: HeatersDetector, frames: FrameBatch, total: int, level: float
    ) -> list[int]:
        """The relaxed pass's colour changes (:meth:`HeatersDetector._colour_graduals`) it turned
        down only because the picture before comes back after (``colour_max_similarity``, by the
        luma thumbnails), whose window's ends are two pictures by the model's pixels (correlation
        under ``level``), the window and the 8 frames either side inside ``frames`` (numbered
        from ``relaxed``'s first frame)."""
        loose = copy.copy(relaxed)
        loose.colour_max_similarity = 2.0  # a correlation never reaches it
        out = []
        for c in loose._colour_graduals_again():
            k = _scale(c.kind)
            a, b = c.frame - k, c.frame + k
            if a - 8 < 0 or b + 8 >= min(total, len(frames)):
                continue
            if _pixel_correlation(frames, a, b) < level:
                out.append(c.frame)
        return sorted(out)

    def _same_across(self, start: int, end: int, level: float | None = None) -> bool:
        """The picture of the 8 frames before ``start`` comes back in the 8 from ``end`` on
        (correlation above ``level``, by default ``same_picture``)."""
        level = self.same_picture if level is None else level
        return self._fast._correlation((start - 8, start), (end, end + 8)) > level

    def _wandering_graduals(self, fast: HeatersDetector) -> list[int]:
        """The fast pass's gradual changes with ``dissolve_straightness`` instead of its own
        straightness (its other thresholds unchanged): dissolves between moving shots, among the
        camera moves it rightly turns down."""
        loose = copy.copy(fast)
        loose.straightness = self.dissolve_straightness
        dist = {lag: np.concatenate(parts) for lag, parts in fast._dist.items()}
        found = loose._graduals(dist, np.concatenate(fast._moco), fast.thumbs, fast._count)
        return sorted({c.frame for c in found})

    def _raw_cuts(self, fast: HeatersDetector) -> list[int]:
        """Frames where the picture jumps (a peak of the pan-compensated frame-to-frame change)
        that the fast pass's own tests turned down: the model looks at them."""
        d1 = fast.motion
        out: list[int] = []
        peaks = _peaks(d1, self.raw_cut, 2, 2, start=1)
        # the motion level around: the median of the 6 frames before (from frame 1 on) and the 6
        # after (none: no level to stand out from)
        before, after = (np.maximum(1, peaks - 6), peaks), (peaks + 1, np.minimum(len(d1), peaks + 7))
        levels = _medians(d1, before, after, empty=np.inf)
        # a cut between a still shot and a moving one stands out from the still side only: the
        # level of both sides together is the moving shot's (a texture scrolling fast, 0.9 a frame
        # after a cut of 1.2); it is a jump when the two frames across it are less alike than the
        # moving shot's own neighbours are, translations allowed (0.16-0.47 against 0.83-0.88)
        calm = np.minimum(_medians(d1, before, empty=np.inf), _medians(d1, after, empty=np.inf))
        for t, level, still in zip(peaks.tolist(), levels.tolist(), calm.tolist(), strict=True):
            jump = d1[t] >= self.raw_ratio * max(level, 0.02)
            if jump or (d1[t] >= self.raw_ratio * max(still, 0.02) and self._unlike_motion(fast, t)):
                out.append(t)
        return out

    def _unseen_jumps(self, fast: HeatersDetector, frames: FrameBatch, raw: set[int]) -> list[int]:
        """Peaks of the pan-compensated frame-to-frame change (``raw_cut`` or more) that stand
        ``raw_unseen`` times or more above the motion around them (the median of the 6 frames
        either side) but are not raw cuts, where :meth:`_unseen_cut` sees a cut between shots of
        the same framing (``frames``: the model's rgb24 frames)."""
        d1 = fast.motion
        peaks = _peaks(d1, self.raw_cut, 2, 2, start=1)
        before, after = (np.maximum(1, peaks - 6), peaks), (peaks + 1, np.minimum(len(d1), peaks + 7))
        levels = _medians(d1, before, after, empty=np.inf)
        return [
            t
            for t, level in zip(peaks.tolist(), levels.tolist(), strict=True)
            if t not in raw and d1[t] >= self.raw_unseen * max(level, 0.02) and self._unseen_cut(frames, t)
        ]

    def _unlike_motion(self, fast: HeatersDetector, t: int) -> bool:
        """Whether frames ``t - 1`` and ``t`` are less alike (:meth:`HeatersDetector._similarity`,
        translations allowed) than every pair of neighbours in the 6 frames on its busier side,
        by more than 0.1: a new picture, not the camera or the objects moving faster."""
        d1 = fast.motion
        n = len(d1)
        lo, hi = max(1, t - 6), min(n, t + 7)
        busy = (t + 1, hi) if float(np.median(d1[t + 1 : hi])) >= float(np.median(d1[lo:t])) else (lo, t)
        pairs = range(max(1, busy[0]), busy[1])
        if len(pairs) < 3:
            return False
        own = min(fast._similarity(fast.thumbs, f - 1, f) for f in pairs)
        return fast._similarity(fast.thumbs, t - 1, t) < own - 0.1

    def _dips(self, fast: HeatersDetector) -> list[int]:
        """Middles of runs of dark, bright or nearly flat frames inside the video (maybe a fade),
        not those that hold a fade the fast pass proposes (that fade is kept unasked, and what the
        model sees in the run is that fade's own transition) nor those it enters and leaves with
        hard cuts (within 2 frames of each end: a dark or flat shot of its own, whose cuts are
        asked about as cuts). Stop 23: the same answers on both corpora; the two rules save 121
        and 87 model frames on the bench corpus, 0 and 150 on dev-801, 19 and 0 on
        real_720p25_long."""
        low = (fast.luma < fast.fade_dark) | (fast.luma > fast.fade_bright) | (fast.flat)
        n = len(low)
        fades = np.array([c.frame for c in fast.candidates if c.kind == "fade"], dtype=np.int64)
        cuts = np.array([c.frame for c in fast.candidates if c.kind == "cut"], dtype=np.int64)

        def cut_at(frame: int) -> bool:
            return bool((np.abs(cuts - frame) <= 2).any())

        return [
            (s + t) // 2
            for s, t in true_runs(low)
            if s > 0
            and t < n
            and t - s <= 4 * self.margin
            and not ((fades >= s) & (fades < t)).any()
            and not (cut_at(s) and cut_at(t))
        ]

    def _load(self) -> _Model:
        if self._model is None:
            self._model = cascade_model()
        return self._model

    def _score(self, frames: FrameBatch, lo: int, hi: int) -> FloatArray:
        scores: FloatArray = self._load().predict(frames[None, lo:hi])[0]
        return scores  # (hi - lo, 2)


def _flash(
    luma: FloatArray,
    motion: FloatArray,
    flat: NDArray[np.bool_],
    frame: int,
    longest: int,
    depart: float,
    similarity: Callable[[int, int], float] | None = None,
) -> bool:
    """Whether a boundary at ``frame`` is a flash: the mean luma of at most ``longest`` frames
    around it (any window of ``longest + 2`` frames that holds ``frame``: in flicker the frames
    after a window starting at the boundary may be the next flash) departs by ``depart`` or more
    from a level it has before them and comes back to within 5 after them, none of those frames
    is flat (a fade through black or white also leaves and comes back) and either the
    pan-compensated change across
    them (``motion``) stays under twice its median just around them (a cut to another picture
    jumps) or, by ``similarity`` (two frames' likeness, translations allowed), the flash is the same
    picture lit differently: a strong flash clips the highlights, so its frames' structure jumps too
    and, in a moving shot, more than the motion around (see :func:`_same_picture_flash`). The
    departure lies whole inside the window, and the boundary is at the flash (its first frame - 1
    to its last + 1)."""
    n = len(luma)
    for lo in range(frame - longest - 1, frame):  # frames lo..hi, every window holding ``frame``
        hi = lo + longest + 1
        if lo < 9 or hi + 9 > n:
            continue
        before = float(np.median(luma[lo - 7 : lo]))
        if abs(float(np.median(luma[hi + 1 : hi + 8])) - before) > 5.0:
            continue
        if float(np.abs(luma[lo : hi + 1] - before).max()) < depart or bool(flat[lo : hi + 1].any()):
            continue
        off = lo + np.flatnonzero(np.abs(luma[lo : hi + 1] - before) > 5.0)
        first, last = int(off[0]), int(off[-1])
        # a flash lasts at most ``longest`` frames and starts and ends inside the window: a window
        # whose first frame and the frame before it (or last frame and the frame after it) both lie
        # off the level before holds only part of a longer departure (dev-1301: a 5-frame darker
        # shot of the same framing, read from its second frame, looked like a 4-frame flash; the
        # model: 0.70 at its end)
        if (
            last - first + 1 > longest
            or float(np.abs(luma[lo - 1 : lo + 1] - before).min()) > 5.0
            or float(np.abs(luma[hi : hi + 2] - before).min()) > 5.0
        ):
            continue
        # the boundary is the flash's first frame, the first frame after it or the last frame
        # before it (a gradual test's change over several frames peaks a frame early: dev-1101's
        # flickering gradients); a boundary farther from it is another change beside the flash
        # (dev-1301: a dissolve's end three frames before a flash)
        if not first - 1 <= frame <= last + 1:
            continue
        around = np.concatenate([motion[lo - 8 : lo - 1], motion[hi + 2 : hi + 9]])
        if float(motion[lo : hi + 1].max()) < 2.0 * max(float(np.median(around)), 0.02):
            return True
        if similarity is not None and _same_picture_flash(similarity, first, last, n):
            return True
    return False


def _same_picture_flash(similarity: Callable[[int, int], float], first: int, last: int, n: int) -> bool:
    """Whether frames ``first..last`` (the frames whose brightness left the shot's) are a flash of
    the shot's own picture: each of them still looks more like the frame before them than not
    (``similarity`` 0.5 or more: the same layout, brighter or darker; an inserted shot is another
    picture), and the frame after them is as like the frame before them as the shot's own frames
    the same distance apart are, within 0.1 (the picture comes back where the camera's motion
    took it; after a cut it is another picture)."""
    a, b = first - 1, last + 1
    gap = b - a
    if a < 0 or b >= n:
        return False
    own = [similarity(a - gap, a)] if a - gap >= 0 else []
    own += [similarity(b, b + gap)] if b + gap < n else []
    if not own:
        return False
    return min(similarity(a, f) for f in range(first, last + 1)) >= 0.5 and similarity(a, b) >= max(own) - 0.1


def _colour_pairs(
    cuts: set[int], kinds: Mapping[int, str], inside: FloatArray, reach: int, snap: int
) -> set[int]:
    """The boundaries to drop where a colour change (kind ``colour*``) and another gradual change
    (``gradual*``, ``colour*``, ``blend*``: the fast pass's or the model's own) lie at most
    ``reach`` frames apart: one dissolve marked twice (a colour test's window reaches 16 frames
    either side of its frame). Of each such pair the one the model believes less goes (its
    "inside" head within ``snap`` frames), where it is silent on both the one found with the
    wider window. The corpora's false pairs lie 11 frames apart, their true neighbours 19 or more."""
    gradual = sorted(c for c in cuts if kinds.get(c, "").startswith(("gradual", "colour", "blend")))
    dropped: set[int] = set()

    def belief(f: int) -> tuple[float, int]:
        return float(inside[max(0, f - 1 - snap) : f + snap].max(initial=0.0)), -_scale(kinds.get(f, ""))

    for c in gradual:
        if c in dropped or not kinds.get(c, "").startswith("colour"):
            continue
        for x in gradual:
            if x == c or x in dropped or abs(x - c) > reach:
                continue
            loser = min((c, x), key=belief)
            dropped.add(loser)
            if loser == c:
                break
    return dropped


def _model_seconds(
    cuts: set[int], kinds: Mapping[int, str], reach: int, fades: Sequence[tuple[int, int]] = ()
) -> set[int]:
    """The model's own gradual transitions (kinds ``gradual-model``, ``gradual-half``) at most
    ``reach`` frames from a gradual, colour or blend change the fast pass keeps: that change's
    transition a second time (a fade out of white and into a plain picture, whose ramp in the
    model sees and the fade rules miss; the tail of a slow dissolve that the model sees late). The
    fast pass's change stays: it was kept unasked, by its own test; the corpora's false pairs lie
    10-16 frames apart, a true neighbour 21 frames or more. Not around a fade's held black or white
    (``fades``, ``[start, end)`` runs): :func:`merge_fades` makes those one boundary, in the run's
    middle."""
    fast = [c for c in cuts if _scale(kinds.get(c, ""))]

    def between_fade(a: int, b: int) -> bool:
        return any(s < max(a, b) and t > min(a, b) for s, t in fades)

    return {
        c
        for c in cuts
        if kinds.get(c) in ("gradual-model", "gradual-half")
        and any(abs(c - x) <= reach and not between_fade(c, x) for x in fast)
    }


def _extent_of(frame: int, kind: str) -> tuple[int, int]:
    """The frames a boundary's change spans, ``(first, last)``: a fast-pass gradual, colour or
    blend change of scale ``k`` its window's ``frame - k - 1..frame + k``, any other the frame
    before it and it."""
    k = _scale(kind)
    return (frame - k - 1, frame + k) if k else (frame - 1, frame)


def _drifts(
    frames: FrameBatch,
    a: int,
    b: int,
    bounds: Sequence[tuple[int, int]],
    ramp: int,
    calm: int,
    reach: int = 40,
) -> bool:
    """Whether the change from frame ``a`` to frame ``b`` is part of a drift that runs on, on
    either side, to a boundary. A frame's position on the line from ``a`` to ``b`` is the
    projection of its pixels' change from ``a`` on the change from ``a`` to ``b`` (0 at ``a``, 1
    at ``b``); a step onward continues the drift when it moves the same way as the run by half to
    twice the run's even rate ``1 / (b - a)`` a frame (a still frame, a jump such as a flash, or a
    step back does not). True when, on a side, ``ramp`` or more such steps reach a boundary
    (``bounds``: ``(first, last)`` frames of other boundaries' changes) or the video's end, with
    never ``calm`` other steps in a row (a steady picture) between; within ``reach`` frames."""
    n = len(frames)
    if a < 0 or b >= n or b - a < 2:
        return False
    x = frames.reshape(n, -1)
    first = x[a].astype(np.float64)
    change = x[b].astype(np.float64) - first
    size = float(change @ change)
    if size <= 0:
        return False
    least, most = 0.5 / (b - a), 2.0 / (b - a)

    def along(t: int) -> float:
        return float((x[t].astype(np.float64) - first) @ change / size)

    for step, t in ((-1, a), (1, b)):
        here, moving, still = along(t), 0, 0
        for _ in range(reach):
            u = t + step
            if u < 0 or u >= n or any(lo <= max(t, u) and min(t, u) <= hi for lo, hi in bounds):
                if moving >= ramp:
                    return True
                break
            there = along(u)
            if least <= step * (there - here) <= most:
                moving, still = moving + 1 + still, 0
            else:
                still += 1
                if still >= calm:
                    break
            t, here = u, there
    return False


def _scale(kind: str) -> int:
    """The window scale ``k`` of a fast-pass gradual, colour or blend change's kind (0 otherwise)."""
    for prefix in ("gradual", "colour", "blend"):
        rest = kind.removeprefix(prefix)
        if rest != kind and rest.isdigit():
            return int(rest)
    return 0


@dataclass(frozen=True)
class BlendFit:
    """How well frames ``a+1..b-1`` are blends ``(1 - w) X[a] + w X[b]`` of a window's two ends:
    ``weights`` (each frame's ``w``, by least squares), ``residual`` (the RMS distance of the frames
    from their blends, in units of the distance between the ends) and ``correlation`` (the Pearson
    correlation of the two ends' pixels: near 1 when they are one picture)."""

    weights: NDArray[np.float64]
    residual: float
    correlation: float


def _blend_fit(frames: FrameBatch, a: int, b: int) -> BlendFit:
    """:class:`BlendFit` of ``frames[a..b]`` (``b - a >= 2``)."""
    x = frames[a : b + 1].reshape(b - a + 1, -1).astype(np.float64)
    first, last = x[0], x[-1]
    change = last - first
    size = max(float(change @ change), 1e-6)
    middle = x[1:-1] - first
    weights = middle @ change / size
    rest = middle - weights[:, None] * change
    residual = float(np.sqrt(np.einsum("ij,ij->", rest, rest) / len(rest) / size))
    return BlendFit(weights, residual, _pixel_correlation(frames, a, b))


def _change_middle(frames: FrameBatch, a: int, b: int, residual: float) -> int | None:
    """The frame where ``frames[a..b]`` cross half way from frame ``a`` to frame ``b`` (one more than
    the frames before it whose blend weight, :func:`_blend_fit`, is under a half: a transition's
    middle, whatever the frames still and steady either side of it in the window), or None where
    the window is out of the video or its frames are no blends of its ends (residual over
    ``residual``: a moving shot's weights wander)."""
    if a < 0 or b >= len(frames) or b - a < 2:
        return None
    fit = _blend_fit(frames, a, b)
    if fit.residual > residual:
        return None
    return a + 1 + int(np.count_nonzero(fit.weights < 0.5))


def _largest_step(frames: FrameBatch, a: int, b: int) -> float:
    """The largest RMS pixel change from one frame to the next in ``frames[a..b]``, as a share of
    the RMS change from frame ``a`` to frame ``b`` (a cut: near 1; a dissolve over ``n`` frames:
    near ``1 / n``)."""
    x = frames[a : b + 1].reshape(b - a + 1, -1).astype(np.float32)
    whole = float(np.sqrt(np.mean((x[-1] - x[0]) ** 2)))
    steps = np.sqrt(np.mean(np.diff(x, axis=0) ** 2, axis=1))
    return float(steps.max()) / max(whole, 1e-6)


def _pixel_correlation(frames: FrameBatch, a: int, b: int) -> float:
    """The Pearson correlation of frames ``a`` and ``b``'s pixels (near 1: one picture, whatever its
    brightness and contrast)."""
    f = frames[a].reshape(-1).astype(np.float64)
    g = frames[b].reshape(-1).astype(np.float64)
    return _centred_correlation(f - f.mean(), g - g.mean())


def _centred_correlation(f: NDArray[np.float64], g: NDArray[np.float64]) -> float:
    """The correlation of two vectors whose means are already taken out."""
    return float(f @ g / max(float(np.sqrt((f @ f) * (g @ g))), 1e-6))


def _picture_correlation(frames: FrameBatch, a: int, b: int) -> float:
    """The Pearson correlation of frames ``a`` and ``b``'s pixels, each colour channel's own mean
    taken out: near 1 for one picture whatever its light, not for two pictures of one hue."""
    f = frames[a].reshape(-1, frames.shape[-1]).astype(np.float64)
    g = frames[b].reshape(-1, frames.shape[-1]).astype(np.float64)
    return _centred_correlation((f - f.mean(axis=0)).reshape(-1), (g - g.mean(axis=0)).reshape(-1))


def _one_picture(
    frames: FrameBatch, a: int, b: int, level: float, structure: bool = True, pixel: float | None = None
) -> bool:
    """Whether frames ``a`` and ``b`` are one picture: their pixels correlate at ``level`` or more
    (:func:`_pixel_correlation`, ``pixel`` if already known: the same palette in the same places)
    and, with ``structure``, so does their structure (:func:`_picture_correlation`, each colour
    channel's own mean taken out). Two different pictures of one strong hue share the palette and
    pass the first alone (held-out-1401 mixed_720p_1408 330-331, a striped red texture and an
    orange landscape: 0.98 by the pixels, -0.02 by the structure); two of one layout in other
    colours share the structure and pass the second alone (the ends of the fast pass's window on
    dev-801 photo_360p25's dissolve at 731-746 between two landscapes: 0.21 and 0.80)."""
    if pixel is None:
        pixel = _pixel_correlation(frames, a, b)
    return pixel >= level and (not structure or _picture_correlation(frames, a, b) >= level)


def _lit_until_cut(
    frames: FrameBatch,
    luma: FloatArray,
    first: int,
    cut: int,
    depart: float,
    level: float,
    structure: bool = True,
) -> bool:
    """Whether frames ``first..cut-1`` are the picture before them (frame ``first - 1``) lit
    differently, up to a cut to another picture at ``cut``: the first of them ``depart`` or more
    brighter or darker than the frames before (their median over 7 frames; the light may come
    back before the cut), each of them one picture with frame ``first - 1`` at ``level``
    (:func:`_one_picture`: by the pixels' pattern and, with ``structure``, by the structure too),
    and frame ``cut`` not one picture with either it or the frame before ``cut``. A flash that a
    cut ends, not a short shot: an inserted shot is another picture from its first frame (true short
    shots of the four corpora: 0.78 at most by the lesser of the two measures; the flashes
    dropped, dev-801 negatives_720p25 865 and dev-1101 negatives_720p25 572, 0.86 by both). With
    ``structure`` a short shot of another picture of the shot's hue stays (dev-1101 photo_720p25
    508, a true short shot: 0.90 by the pixels, 0.55 by the structure; only its cut's frame, 0.94,
    kept it by the pixels alone). The structure refuses a flash that clips (bench negatives_360p24
    240-242, the green channel at 253 +- 1: -0.37 to 0.25 by the structure, 0.85-0.90 by the
    pixels; no cut there either way): such a flash stays the other flash rules' to drop."""
    a = first - 1
    if a < 0 or cut >= len(frames) or cut >= len(luma):
        return False
    before = float(np.median(luma[max(0, a - 6) : a + 1]))
    if abs(float(luma[first]) - before) < depart:
        return False
    if not all(_one_picture(frames, a, f, level, structure) for f in range(first, cut)):
        return False
    return not any(_one_picture(frames, x, cut, level, structure) for x in (a, cut - 1))


def _block_residual(before: FloatArray, after: FloatArray, block: int = 6, reach: int = 3) -> float:
    """How much of ``after``'s structure no local motion from ``before`` explains, in grey levels:
    for each ``block`` x ``block`` block of ``after`` (two luma frames of the model's size), the
    least RMS difference from a block of ``before`` moved by up to ``reach`` pixels either way, both
    blocks' means taken out (a brightness change is no structure), averaged over the blocks."""
    h, w = after.shape
    ys = np.arange(0, h - block + 1, block)
    xs = np.arange(0, w - block + 1, block)
    if not len(ys) or not len(xs):
        return 0.0
    b = after[: ys[-1] + block, : xs[-1] + block].reshape(len(ys), block, len(xs), block).swapaxes(1, 2)
    b = b - b.mean(axis=(2, 3), keepdims=True)
    windows = np.lib.stride_tricks.sliding_window_view(before, (block, block))  # every block of before
    best = np.full((len(ys), len(xs)), np.inf)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            yy, xx = ys + dy, xs + dx
            okay = ((yy >= 0) & (yy <= h - block))[:, None] & ((xx >= 0) & (xx <= w - block))[None, :]
            a = windows[np.clip(yy, 0, h - block)[:, None], np.clip(xx, 0, w - block)[None, :]]
            a = a - a.mean(axis=(2, 3), keepdims=True)
            rms = np.sqrt(((a - b) ** 2).mean(axis=(2, 3)))
            best = np.where(okay, np.minimum(best, rms), best)
    return float(best.mean())


def _new_structure(frames: FrameBatch, frame: int, level: float, ratio: float) -> bool:
    """Whether the picture at ``frame`` (the model's rgb24 frames) brings structure no local motion
    from ``frame - 1`` explains: :func:`_block_residual` across the two at least ``level`` grey
    levels and ``ratio`` times its value between the two frames on either side (a fast camera or
    object moves those too)."""
    if not 2 <= frame < len(frames) - 1:
        return False
    luma = _luma(frames[frame - 2 : frame + 2])
    across = _block_residual(luma[1], luma[2])
    within = max(_block_residual(luma[0], luma[1]), _block_residual(luma[2], luma[3]))
    return across >= level and across >= ratio * within


def _ycc(frames: FrameBatch) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The luma and chroma (Y, Cb, Cr) of rgb24 ``frames``: three (n, h, w) arrays."""
    rgb = frames.astype(np.float32)
    y = _luma(frames)
    return y, (rgb[..., 2] - y) * 0.564, (rgb[..., 0] - y) * 0.713


def _ycc_steps(frames: FrameBatch) -> FloatArray:
    """Each frame's mean absolute step of Y, Cb and Cr from the frame before (rgb24 ``frames``):
    (n - 1, 3)."""
    out: FloatArray = np.stack([np.abs(np.diff(c, axis=0)).mean(axis=(1, 2)) for c in _ycc(frames)], axis=1)
    return out


def _colour_jumps(
    frames: FrameBatch, share: float, ratio: float, least: float, steps: FloatArray | None = None
) -> list[int]:
    """Frames where the picture's colour jumps while its brightness pattern barely moves (the
    model's rgb24 frames): the mean absolute step of the chroma (Cb + Cr) into the frame peaks
    (the largest of its +-2 frames) at ``least`` grey levels or more, ``ratio`` times its median
    over the 6 frames before and the 6 after and ``share`` times the luma's own mean absolute step,
    and the colour stays: each of the 7 frames from it on is at least half that step's chroma away
    from each of the 8 frames before it (a colour flash or flicker comes back). ``steps``: the
    frames' :func:`_ycc_steps` (a first row for the first frame), where already known."""
    n = len(frames)
    if steps is None or len(steps) != n:
        steps = np.zeros((n, 3), np.float32)
        steps[1:] = _ycc_steps(frames)
    y1, c1 = steps[:, 0], steps[:, 1] + steps[:, 2]
    peaks = _peaks(c1, least, 2, 2, start=1)
    before, after = (np.maximum(1, peaks - 6), peaks), (peaks + 1, np.minimum(n, peaks + 7))
    levels = _medians(c1, before, after, empty=np.inf)

    def stays(t: int) -> bool:  # no frame of the 7 from ``t`` on has the colours of the 8 before
        if t < 8 or t + 7 > n:
            return False
        _, cb, cr = _ycc(frames[t - 8 : t + 7])
        a, b = slice(0, 8), slice(8, 15)
        apart = np.abs(cb[a, None] - cb[None, b]) + np.abs(cr[a, None] - cr[None, b])
        return float(apart.mean(axis=(2, 3)).min()) >= 0.5 * float(c1[t])

    return [
        t
        for t, level in zip(peaks.tolist(), levels.tolist(), strict=True)
        if c1[t] >= ratio * max(level, 0.1) and c1[t] >= share * y1[t] and stays(t)
    ]


def _change_at_sides(frames: FrameBatch, frame: int, before: int | None = None) -> bool:
    """Whether the change from ``before`` (``frame - 1`` by default) to ``frame`` (the model's rgb24
    frames) stays at the picture's left and right sides: the largest change of a pixel in the middle
    half of the width is under half the largest anywhere."""
    before = frame - 1 if before is None else before
    if not 0 <= before < frame < len(frames):
        return False
    change = np.abs(frames[frame].astype(np.int16) - frames[before].astype(np.int16)).max(axis=2)
    width = change.shape[1]
    return 2 * int(change[:, width // 4 : 3 * width // 4].max()) < int(change.max())


def _lit_before(luma: FloatArray, frame: int, longest: int, depart: float) -> int | None:
    """The frame before a flash that ends just before ``frame``: the latest frame ``f`` such that
    frames ``f + 1..frame - 1`` (at most ``longest`` of them) are each ``depart`` or more brighter
    than both frame ``f`` and frame ``frame`` (or each as much darker than both), or None where
    frame ``frame - 1`` ends no such flash. Only the mean luma: whether the flash's frames are the
    picture before it is the caller's question."""
    if not 0 < frame < len(luma):
        return None
    for f in range(frame - 2, max(frame - longest - 2, -1), -1):
        lit = luma[f + 1 : frame]
        ends = min(float(luma[f]), float(luma[frame])), max(float(luma[f]), float(luma[frame]))
        if float(lit.min()) - ends[1] >= depart or ends[0] - float(lit.max()) >= depart:
            return f
    return None


def _flash_pairs(
    frames: FrameBatch,
    luma: FloatArray,
    cuts: set[int],
    kinds: Mapping[int, str],
    longest: int,
    depart: float,
    level: float,
) -> set[int]:
    """The hard cuts to drop that end a flash another hard cut starts: cut ``c`` whose frames from
    the other cut to ``c - 1`` are a flash (:func:`_lit_before`: at most ``longest`` frames, each
    ``depart`` or more off both the frame before them and frame ``c``, the same way) and, with frame
    ``c``, the picture of the frame before the flash (:func:`_pixel_correlation` ``level`` or more:
    neither cut brought another picture). The two mark the flash's edges, one change at most."""
    dropped: set[int] = set()
    for c in sorted(cuts):
        if kinds.get(c) != "cut":
            continue
        lit = _lit_before(luma, c, longest, depart)
        if lit is None or lit + 1 not in cuts or kinds.get(lit + 1) != "cut":
            continue
        if min(_pixel_correlation(frames, lit, f) for f in range(lit + 1, c + 1)) >= level:
            dropped.add(c)
    return dropped


def _side_jump(frames: FrameBatch, a: int, b: int, ratio: float) -> bool:
    """Whether frames ``a..b`` (the model's rgb24 frames) hold a jump that stays at the picture's
    sides: a step ``t - 1 -> t`` (``a < t <= b``) of :func:`_change_at_sides` whose mean absolute
    change is ``ratio`` times the median of the window's other steps or more, and ``ratio`` times
    either step beside it (``t - 2 -> t - 1``, ``t -> t + 1``, where the video has them) or more."""
    if a < 0 or b >= len(frames) or b - a < 3:
        return False
    lo, hi = max(a - 1, 0), min(b + 2, len(frames))  # the window's frames and one beside each end
    steps = np.abs(np.diff(frames[lo:hi].astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    first = a + 1 - (lo + 1)  # steps[i] is the step into frame lo + 1 + i
    inner = steps[first : first + b - a]
    for j in range(b - a):
        i = first + j
        own = float(steps[i])
        beside = max(float(steps[k]) for k in (i - 1, i + 1) if 0 <= k < len(steps))
        if (
            own >= ratio * float(np.median(np.delete(inner, j)))
            and own >= ratio * beside
            and _change_at_sides(frames, a + 1 + j)
        ):
            return True
    return False


def _saturated_flash(
    luma: FloatArray, white: Sequence[tuple[int, int]], frame: int, longest: int, depart: float
) -> bool:
    """Whether a boundary at ``frame`` is a saturated flash: at most ``longest`` flat white frames
    (a run of ``white``, the runs of flat frames brighter than the fast pass's ``fade_bright``) at
    or next to it, entered in one step of ``depart`` or more from a steady level (within 5 over the
    3 frames before) and left in one step back to within 5 of it for two frames. A fade through white
    ramps in and out (steps of 15-25 a frame), and a cut leaves the level (also one frame after the
    white: dev-1301)."""
    n = len(luma)
    for s, t in white:
        if not (s - 1 <= frame <= t + 1) or t - s > longest or s < 3 or t >= n:
            continue
        level = float(luma[s - 1])
        steady = float(np.abs(luma[s - 3 : s] - level).max()) <= 5.0
        back = float(np.abs(luma[t : t + 2] - level).max())  # the level holds after it (a cut leaves it)
        if steady and float(luma[s:t].min()) - level >= depart and back <= 5.0:
            return True
    return False


def _still_flash(
    frames: FrameBatch,
    luma: FloatArray,
    frame: int,
    longest: int,
    depart: float,
    same: float,
    reach: int = 8,
    shot: tuple[int, int] | None = None,
) -> bool:
    """Whether a boundary at ``frame`` is a flash on a shot that stays one picture: at most
    ``longest`` frames ``first..last`` (``first - 1 <= frame <= last + 1``), each ``depart`` or more
    brighter than frame ``first - 1`` (or each as much darker), the frame after them back within 5
    of it; each of them that frame's picture lit differently and the frame after them its picture
    again (the model's frames' pixel correlation, :func:`_pixel_correlation`, 0.5 or more), and the
    pictures ``reach`` frames before and after the flash alike (``same`` or more): no transition
    around it. Unlike :func:`_flash` it compares the flash with the frames next to it, not with
    the medians of 7 frames either side, so a shot whose brightness drifts (a gradient breathing,
    +-3 grey levels a frame) keeps its flashes flashes; the picture tests stand in for the motion
    test. A dissolve with a flash inside changes the picture across it, and a fade's dark frames
    are not the picture before them. ``shot`` (its first and last frames; the whole video by
    default) bounds the pictures compared: within ``reach`` frames of the flash but inside its shot
    (a flash a few frames after a cut is compared with its own shot, not with the shot before the
    cut), and at least ``longest`` frames (or ``reach``, if less) from it on either side, or no
    flash by this test. A boundary on the frame before the flash (``frame == first - 1``) is the
    flash's only when that frame is the picture of the frame before it, by the pictures' structure
    (:func:`_picture_correlation` 0.3 or more): a cut just before a flash stays, though its two
    pictures are of one hue and so alike by :func:`_pixel_correlation` (held-out-1401
    mixed_720p_1408 331: a striped red texture to an orange landscape, 0.98 by the pixels, -0.02 by
    the structure; the one-frame steps inside the corpora's flashing shots 0.53-1.0)."""
    n = len(luma)
    lo, hi = shot if shot is not None else (0, n - 1)
    for first in range(frame - longest, frame + 2):
        before = min(reach, first - 1 - max(lo, 0))
        if before < min(reach, longest):
            continue
        base = float(luma[first - 1])
        for last in range(max(first, frame - 1), first + longest):
            after = min(reach, min(hi, n - 1) - last - 1)
            if after < min(reach, longest):
                break
            step = luma[first : last + 1] - base
            if not (bool(np.all(step >= depart)) or bool(np.all(step <= -depart))):
                break  # a frame that stayed at the level: no longer run from ``first`` either
            if abs(float(luma[last + 1]) - base) > 5.0:
                continue
            a, b = first - 1, last + 1
            if (
                min(_pixel_correlation(frames, a, f) for f in (*range(first, last + 1), b)) >= 0.5
                and _pixel_correlation(frames, a - before, b + after) >= same
                and (frame != a or _picture_correlation(frames, a - 1, a) >= 0.3)
            ):
                return True
    return False


def cascade_model() -> _Model:
    """The process-wide model the cascade runs: TransNetV2 in 8 bits on the CPU, one onnxruntime
    thread per call. The cascade runs its calls side by side itself (the model's thread beside the
    decode, then two at the end); a second thread inside each call only woke and waited at every
    node (measured: about a fifth of the process's CPU seconds on the 150 s 720p video, the same
    answers)."""
    from infra.media.transnet import load_model

    return load_model("cpu", int8=True, threads=1)


def _one_per_transition(cuts: list[int], ends: FloatArray, inside: FloatArray, level: float) -> list[int]:
    """Boundaries the model sees inside one transition without a break (its "inside" head at or
    above ``level`` on every frame from one to the next: a dissolve or fade found at both its
    ends) are one: the one where the model's "ends a shot" head is highest stays."""
    out: list[int] = []
    for c in cuts:
        if out and out[-1] > 1 and float(inside[out[-1] - 1 : c].min(initial=1.0)) >= level:
            if ends[c - 1] > ends[out[-1] - 1]:
                out[-1] = c
            continue
        out.append(c)
    return out


def _run_near(inside: FloatArray, frame: int, reach: int, level: float) -> tuple[int, int] | None:
    """The run of frames at or above ``level`` nearest ``frame`` within ``reach`` frames, as
    ``[start, end)``, or None."""
    for d in range(reach + 1):
        for f in (frame - d, frame + d):
            if 0 <= f < len(inside) and inside[f] >= level:
                return _extent(inside, f, level)
    return None


def _extent(inside: FloatArray, frame: int, level: float) -> tuple[int, int]:
    """The run of frames at or above ``level`` that holds ``frame``, as ``[start, end)`` (empty at
    ``frame`` when it is below)."""
    if not 0 <= frame < len(inside) or inside[frame] < level:
        return frame, frame
    below = np.flatnonzero(inside < level)
    start = int(below[below < frame].max()) + 1 if (below < frame).any() else 0
    end = int(below[below > frame].min()) if (below > frame).any() else len(inside)
    return start, end


def make_detector(kind: DetectorKind = "auto") -> ShotDetector:
    """The detector for the ``HEATERS_SHOT_DETECTOR`` setting: ``fast`` (hand-tuned, no model),
    ``cascade`` (fast proposals, TransNetV2 decisions, for CPUs), ``neural`` (TransNetV2 on every
    frame) or ``auto`` (neural where torch sees a GPU, the cascade otherwise)."""
    if kind == "fast":
        return HeatersDetector()
    if kind == "cascade":
        return CascadeDetector()
    if kind == "neural":
        return NeuralDetector()
    if kind == "auto":
        from infra.media.transnet import cuda_available

        return NeuralDetector(device="cuda") if cuda_available() else CascadeDetector()
    raise ValueError(f"unknown shot detector {kind!r} (auto, fast, cascade or neural)")
