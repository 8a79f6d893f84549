"""The similarity benchmark itself: its corpus is shaped as documented and its queries go through the
search page's query function, with recall measured against exact search."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench.similarity import CLIPS_PER_VIDEO, Corpus, measure

pytestmark = pytest.mark.integration


def test_corpus_is_clustered_unit_vectors_and_exact_search_leaves_out_the_own_video() -> None:
    corpus = Corpus(800, 64)
    for _ in corpus.chunks():
        pass
    assert np.allclose(np.linalg.norm(corpus.vectors, axis=1), 1.0, atol=1e-5)
    nearest = corpus.exact_rows(3, 10)
    assert len(nearest) == 10 and all(corpus.video_of(i) != corpus.video_of(3) for i in nearest)
    sims = corpus.vectors @ corpus.vectors[3]
    own = sims[:CLIPS_PER_VIDEO]  # clip 3's video: its near duplicates
    assert own.min() > sims[nearest[-1]] > np.median(sims)
    farthest = corpus.exact_rows(3, 10, least=True)
    assert sims[farthest].max() <= np.sort(sims)[10]


def test_small_run_reports_latency_recall_and_index_size() -> None:
    args = argparse.Namespace(
        n=2000, dimension=32, queries=20, index_type="halfvec", m=16, ef_construction=64,
        ef_search=[200], exact_queries=2, maintenance_work_mem="64MB",
    )  # fmt: skip
    result = measure(args)
    (nearest,) = result["nearest"]
    assert nearest["queries"] == 20 and nearest["recall_at_10"] >= 0.9
    assert 0 < nearest["p50_ms"] <= nearest["p95_ms"]
    assert result["index_mb"] > 0 and result["build_seconds"] >= 0
    (least,) = result["least_similar"]
    assert least["mean_cosine_gap_to_exact"] < 0.2  # far-away clips, if not the exact farthest
