"""Runs of frames: where a per-frame condition holds for consecutive frames (a fade's held colour,
the cascade's dips, TransNetV2's transitions)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def true_runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The runs of consecutive true values in ``mask``, as ``[start, end)``."""
    edges = np.diff(np.concatenate(([False], np.asarray(mask, bool), [False])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends, strict=True))
