"""ClipEmbedder with random weights (no weights file, no network)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from infra.clip_embedder import (
    TINY_MODEL,
    ClipEmbedder,
    EmbeddingModelUnavailable,
    combine_keyframe_vectors,
    resolve_weights,
)
from infra.config import Settings

ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _modest_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one thread avoids OpenMP stalls under load
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test loudly (instead of hanging)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def embedder() -> ClipEmbedder:
    return ClipEmbedder.random_init(tiny=True, seed=0, batch_size=3, device="cpu")


def _image(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [_image(i) for i in range(5)]


def test_vectors_are_unit_norm_float32_of_the_model_dimension(
    embedder: ClipEmbedder, images: list[Image.Image]
) -> None:
    vectors = embedder.embed_images(images)
    assert embedder.model_name == TINY_MODEL
    assert embedder.pretrained is None
    assert embedder.dimension == 384
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(images), embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=ATOL)
    assert embedder.embed_images([]).shape == (0, embedder.dimension)


def test_batching_matches_one_by_one(embedder: ClipEmbedder, images: list[Image.Image]) -> None:
    batched = embedder.embed_images(images)  # batch_size 3: batches of 3 and 2
    single = np.stack([embedder.embed_image(image) for image in images])
    np.testing.assert_allclose(batched, single, atol=ATOL)


def test_prefetch_and_paths_match_in_memory_images(
    embedder: ClipEmbedder, images: list[Image.Image], tmp_path: Path
) -> None:
    paths = []
    for i, image in enumerate(images[:4]):
        path = tmp_path / f"{i}.png"
        image.save(path)
        paths.append(path)
    expected = embedder.embed_images(images[:4])
    embedder.prefetch = True
    try:
        from_files = embedder.embed_images(paths)
    finally:
        embedder.prefetch = False
    np.testing.assert_allclose(from_files, expected, atol=ATOL)
    with pytest.raises(ValueError, match="cannot read image"):
        embedder.embed_images([tmp_path / "missing.jpg"])


def test_identical_images_give_identical_vectors(embedder: ClipEmbedder) -> None:
    a, b, other = _image(42), _image(42), _image(43)
    vectors = embedder.embed_images([a, other, b])
    np.testing.assert_allclose(vectors[0], vectors[2], atol=ATOL)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)


def test_seeded_random_init_is_reproducible(embedder: ClipEmbedder, images: list[Image.Image]) -> None:
    again = ClipEmbedder.random_init(tiny=True, seed=0, device="cpu")
    np.testing.assert_allclose(again.embed_images(images[:2]), embedder.embed_images(images[:2]), atol=ATOL)


def test_strategies(embedder: ClipEmbedder, images: list[Image.Image]) -> None:
    keyframes = images[:3]
    vectors = embedder.embed_images(keyframes)

    (avg,) = embedder.embed_clip_keyframes(keyframes, "keyframe_multi_avg")
    mean = vectors.mean(axis=0)
    assert np.linalg.norm(mean) < 1 - 1e-4  # the mean alone is not a unit vector ...
    np.testing.assert_allclose(avg, mean / np.linalg.norm(mean), atol=ATOL)  # ... the result is
    assert avg.shape == (embedder.dimension,)
    assert avg.dtype == np.float32

    multi = embedder.embed_clip_keyframes(keyframes, "keyframe_multi")
    assert len(multi) == 3
    np.testing.assert_allclose(np.stack(multi), vectors, atol=ATOL)

    (single,) = embedder.embed_clip_keyframes(keyframes, "keyframe_single")
    np.testing.assert_allclose(single, vectors[1], atol=ATOL)

    (default,) = embedder.embed_clip_keyframes(keyframes)  # default strategy: keyframe_multi_avg
    np.testing.assert_allclose(default, avg, atol=ATOL)

    with pytest.raises(ValueError, match="at least one keyframe"):
        embedder.embed_clip_keyframes([])
    with pytest.raises(ValueError, match="unknown embedding strategy"):
        embedder.embed_clip_keyframes(keyframes, "keyframe_median")


def test_combine_keyframe_vectors_pure() -> None:
    vectors = np.eye(4, dtype=np.float32)[:2]  # two orthogonal unit vectors
    (avg,) = combine_keyframe_vectors(vectors, "keyframe_multi_avg")
    np.testing.assert_allclose(avg, np.array([1, 1, 0, 0]) / np.sqrt(2), atol=1e-6)
    assert [v.shape for v in combine_keyframe_vectors(vectors, "keyframe_multi")] == [(4,), (4,)]
    (single,) = combine_keyframe_vectors(np.eye(4, dtype=np.float32), "keyframe_single")
    np.testing.assert_array_equal(single, np.eye(4)[2])  # upper middle of 4
    with pytest.raises(ValueError):
        combine_keyframe_vectors(np.zeros((0, 4)), "keyframe_multi_avg")


def test_weights_file_round_trip(embedder: ClipEmbedder, images: list[Image.Image], tmp_path: Path) -> None:
    weights = tmp_path / "tiny.pt"
    torch.save(embedder.model.state_dict(), weights)
    loaded = ClipEmbedder(TINY_MODEL, str(weights), "cpu")
    assert loaded.pretrained == str(weights)
    np.testing.assert_allclose(loaded.embed_images(images[:2]), embedder.embed_images(images[:2]), atol=ATOL)


def test_local_dir_model(embedder: ClipEmbedder, images: list[Image.Image], tmp_path: Path) -> None:
    import open_clip

    config = {"model_cfg": open_clip.get_model_config(TINY_MODEL), "preprocess_cfg": {}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(embedder.model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    loaded = ClipEmbedder(f"local-dir:{tmp_path}", None, "cpu")
    np.testing.assert_allclose(loaded.embed_images(images[:1]), embedder.embed_images(images[:1]), atol=ATOL)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("pretrained", "reason"),
    [
        ("openai", "not in the local cache"),  # a real tag, nothing cached
        ("/nonexistent/heaters/clip.safetensors", "does not exist"),
        ("no-such-tag", "neither a weights file nor a known tag"),
        ("", "no pretrained tag"),
    ],
)
def test_missing_weights_fail_fast_naming_the_setting(pretrained: str, reason: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(EmbeddingModelUnavailable) as info:
        ClipEmbedder("ViT-B-32", pretrained, "cpu", cache_dir=tmp_path)
    assert time.perf_counter() - started < 5
    message = str(info.value)
    assert "HEATERS_CLIP_PRETRAINED" in message
    assert "HEATERS_CLIP_MODEL" in message
    assert reason in message


@pytest.mark.usefixtures("no_network")
def test_corrupt_weights_file_and_unknown_model_are_unavailable(tmp_path: Path) -> None:
    corrupt = tmp_path / "clip.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(EmbeddingModelUnavailable, match="HEATERS_CLIP_PRETRAINED"):
        ClipEmbedder(TINY_MODEL, str(corrupt), "cpu")
    with pytest.raises(EmbeddingModelUnavailable, match="unknown open_clip architecture"):
        ClipEmbedder("ViT-Nope-1", "openai", "cpu")
    with pytest.raises(EmbeddingModelUnavailable, match="not in the local Hugging Face cache"):
        ClipEmbedder("hf-hub:laion/not-cached", None, "cpu", cache_dir=tmp_path)


def test_from_settings_uses_heaters_settings(no_network: None, tmp_path: Path) -> None:
    settings = Settings(clip_model="ViT-B-32", clip_pretrained="openai")
    with pytest.raises(EmbeddingModelUnavailable, match="HEATERS_CLIP_PRETRAINED='openai'") as info:
        ClipEmbedder.from_settings(settings, cache_dir=tmp_path)
    assert "ViT-B-32-quickgelu" in str(info.value)  # OpenAI weights need QuickGELU


def test_cached_tag_resolves_to_local_files_only(no_network: None, tmp_path: Path) -> None:
    # open_clip's URL cache layout: <cache>/<basename of the tag's url>
    url_file = tmp_path / "vit_b_32-laion2b_e16-af8dbd0c.pth"
    url_file.write_bytes(b"")
    resolved = resolve_weights("ViT-B-32", "laion2b_e16", cache_dir=tmp_path)
    assert resolved.checkpoint == str(url_file)
    assert resolved.tag == "laion2b_e16"
    assert not resolved.quick_gelu

    # Hugging Face hub cache layout, preferred over the URL cache, with open_clip's safetensors twin.
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"")
    resolved = resolve_weights("ViT-B-32", "openai", cache_dir=tmp_path)
    assert resolved.checkpoint is not None
    assert Path(resolved.checkpoint).name == "open_clip_model.safetensors"
    assert resolved.quick_gelu


def test_default_architecture_dimension() -> None:
    full = ClipEmbedder.random_init("ViT-B-32", device="cpu")
    assert full.model_name == "ViT-B-32"
    assert full.dimension == 512
    vector = full.embed_image(_image(1))
    assert vector.shape == (512,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < ATOL
