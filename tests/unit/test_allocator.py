"""A media process keeps its freed arrays: after :func:`keep_freed_arrays` a loop of batch-sized
numpy temporaries stops faulting its pages in again for every batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BATCHES = """
import resource, sys
import numpy as np
from infra.media.allocator import keep_freed_arrays

print(keep_freed_arrays() if sys.argv[1] == "tuned" else "untuned")
rng = np.random.default_rng(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):  # a batch's temporaries: a few arrays of 12 MB, freed before the next batch
    x = rng.random((1500, 1000))
    y = x * 2.0
    z = y + x
    del x, y, z
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", BATCHES, mode], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_batches_after_the_first_reuse_the_memory_freed_before_them() -> None:
    took, tuned = page_faults("tuned")
    _, untuned = page_faults("untuned")
    assert took == "True"
    # 30 batches of 3 arrays of 12 MB are ~260k pages; untuned, most are faulted in again (~4 MB a
    # batch, the ends glibc trimmed); tuned, only the first batch's
    assert tuned * 3 < untuned, (tuned, untuned)


def test_elsewhere_it_says_it_did_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.media import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_arrays() is False


def test_switched_off_it_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.media import allocator

    def refuse() -> None:
        raise AssertionError("mallopt looked up although the tuning is switched off")

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: refuse())
    assert allocator.keep_freed_arrays(wanted=False) is False
