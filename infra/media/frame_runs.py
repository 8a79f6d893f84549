"""Runs of frames: where a per-frame condition holds for consecutive frames (a fade's held colour,
the cascade's dips, TransNetV2's transitions)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def true_runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The runs of consecutive true values in ``mask``, as ``[start, end)``."""
    runs: list[tuple[int, int]] = []
    t, n = 0, len(mask)
    while t < n:
        if not mask[t]:
            t += 1
            continue
        s = t
        while t < n and mask[t]:
            t += 1
        runs.append((s, t))
    return runs
