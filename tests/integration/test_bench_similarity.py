"""The similarity benchmark itself: its corpus is shaped as documented and its queries go through the
search page's query function, with recall measured against exact search."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from bench.similarity import CLIPS_PER_VIDEO, KEPT_BUILD, Corpus, measure

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


def test_a_kept_build_is_queried_again_without_loading_or_building(tmp_path: Path) -> None:
    """--keep leaves the database and the build's figures in DIR; --reuse opens it with another
    shared_buffers and runs only the queries, over the same corpus (same ids, same vectors)."""
    kept = tmp_path / "simdb"
    args = argparse.Namespace(
        n=2000, dimension=32, queries=20, index_type="halfvec", m=16, ef_construction=64,
        ef_search=[100], exact_queries=0, maintenance_work_mem="64MB", shared_buffers="32MB",
        warm_queries=5, keep=kept, reuse=None,
    )  # fmt: skip
    built = measure(args)
    assert (kept / KEPT_BUILD).exists() and (kept / "pgdata" / "PG_VERSION").exists()
    assert built["shared_buffers"] == "32MB" and not built["reused"]
    reuse = argparse.Namespace(
        n=100, dimension=8, queries=20, index_type="vector", m=8, ef_construction=8,
        ef_search=[100], exact_queries=0, shared_buffers="48MB", warm_queries=5, keep=None, reuse=kept,
    )  # fmt: skip
    again = measure(reuse)  # n, dimension, index type and build parameters: the kept ones
    assert again["reused"] and again["shared_buffers"] == "48MB"
    build_figures = ("n", "dimension", "index_type", "m", "ef_construction", "load_seconds", "build_seconds")
    assert {k: again[k] for k in build_figures} == {k: built[k] for k in build_figures}
    assert again["index_mb"] == built["index_mb"]
    # the same index searched for the same probes: the same neighbours
    assert again["nearest"][0]["recall_at_10"] == built["nearest"][0]["recall_at_10"] >= 0.9
    with pytest.raises(SystemExit, match="already holds a database"):
        measure(args)
    with pytest.raises(SystemExit, match="no kept build"):
        measure(argparse.Namespace(**{**vars(args), "keep": None, "reuse": tmp_path / "nothing"}))


def test_without_the_index_the_searches_are_exact() -> None:
    """--no-index: what the read model serves below INDEX_MIN_ROWS, every vector ranked exactly."""
    args = argparse.Namespace(
        n=800, dimension=32, queries=10, index_type="halfvec", m=16, ef_construction=64,
        ef_search=[200], exact_queries=0, maintenance_work_mem="64MB", no_index=True,
    )  # fmt: skip
    result = measure(args)
    assert result["indexed"] is False and result["index_mb"] == 0
    (nearest,) = result["nearest"]
    (least,) = result["least_similar"]
    assert nearest["recall_at_10"] == 1.0 and least["recall_at_10"] == 1.0
