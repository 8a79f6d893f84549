"""Concurrent embedding stages share forward passes: batches span clips, results go back to their clip."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from processors.embedding_batches import EmbeddingBatcher, Vectors


def _fake_embed(calls: list[list[int]]) -> object:
    def embed_clips(clips: Sequence[Sequence[Path]], strategy: str) -> list[Vectors]:
        numbers = [int(Path(c[0]).stem) for c in clips]
        calls.append(numbers)
        if 13 in numbers:
            raise ValueError("clip 13 has an unreadable keyframe")
        return [[np.full(4, n, dtype=np.float32)] for n in numbers]

    return embed_clips


def _run_threads(batcher: EmbeddingBatcher, numbers: list[int]) -> dict[int, object]:
    results: dict[int, object] = {}
    start = threading.Barrier(len(numbers))

    def stage(n: int) -> None:
        start.wait()
        try:
            results[n] = float(batcher.embed([Path(f"{n}.jpg")], "keyframe_multi_avg")[0][0])
        except ValueError as error:
            results[n] = str(error)

    threads = [threading.Thread(target=stage, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return results


def test_concurrent_clips_share_a_batch_and_get_their_own_vectors() -> None:
    calls: list[list[int]] = []
    batcher = EmbeddingBatcher(_fake_embed(calls), max_clips=4, linger=0.2)  # type: ignore[arg-type]
    results = _run_threads(batcher, list(range(10)))
    assert results == {n: float(n) for n in range(10)}
    assert sum(len(c) for c in calls) == 10 and len(calls) <= 4  # 10 clips in batches of <= 4
    assert max(len(c) for c in calls) == 4


def test_a_bad_clip_fails_alone() -> None:
    calls: list[list[int]] = []
    batcher = EmbeddingBatcher(_fake_embed(calls), max_clips=8, linger=0.2)  # type: ignore[arg-type]
    results = _run_threads(batcher, [11, 12, 13, 14])
    assert results[13] == "clip 13 has an unreadable keyframe"
    assert {n: results[n] for n in (11, 12, 14)} == {11: 11.0, 12: 12.0, 14: 14.0}


def test_a_lone_clip_is_embedded_at_once_and_bad_settings_refused() -> None:
    calls: list[list[int]] = []
    batcher = EmbeddingBatcher(_fake_embed(calls), linger=0.0)  # type: ignore[arg-type]
    assert float(batcher.embed([Path("5.jpg")], "keyframe_single")[0][0]) == 5.0
    assert calls == [[5]]
    with pytest.raises(ValueError):
        EmbeddingBatcher(_fake_embed(calls), max_clips=0)  # type: ignore[arg-type]
