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
    FastPreprocess,
    choose_device,
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


# -- throughput: the parallel decode pool, the device path, fp16, batches spanning clips ------------


def _jpegs(tmp_path: Path, count: int, size: tuple[int, int] = (320, 180)) -> list[Path]:
    paths = []
    for i in range(count):
        path = tmp_path / f"kf{i}.jpg"
        _image(100 + i, size).resize((size[0] * 2, size[1] * 2)).save(path, quality=92)
        paths.append(path)
    return paths


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1))


def test_split_preprocess_matches_open_clips_transform(embedder: ClipEmbedder) -> None:
    fast = FastPreprocess.of(embedder.preprocess)
    assert fast is not None and (fast.resize, fast.crop) == (224, 224)
    for size in [(96, 64), (64, 96), (640, 360)]:
        image = _image(7, size)
        expected = embedder.preprocess(image)
        ours = fast.normalise(fast.host(image).unsqueeze(0), torch.float32)[0]
        assert ours.shape == expected.shape
        # uint8 rounding of the resized pixels is the only difference: under one grey level
        assert float((ours - expected).abs().max()) < 1.0 / 255 / min(fast.std) + 1e-4


def test_the_device_decode_path_runs_on_the_cpu_and_agrees(embedder: ClipEmbedder, tmp_path: Path) -> None:
    paths = _jpegs(tmp_path, 5)
    png = tmp_path / "still.png"
    _image(9, (200, 120)).save(png)
    host = embedder.embed_images([*paths, png])
    on_device = ClipEmbedder.random_init(tiny=True, seed=0, batch_size=4, device="cpu", decode_on_device=True)
    assert on_device.decode_on_device and not on_device.half
    vectors = on_device.embed_images([*paths, png])  # torchvision decode_jpeg + resize as tensors
    assert vectors.shape == host.shape
    assert _cosines(vectors, host).min() > 0.99
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:200])
    with pytest.raises(ValueError, match="JPEG"):
        on_device.embed_images([broken])


def test_the_decode_pool_gives_the_same_vectors_as_one_thread(tmp_path: Path) -> None:
    paths = _jpegs(tmp_path, 7)
    one = ClipEmbedder.random_init(tiny=True, seed=0, batch_size=3, device="cpu", workers=1, prefetch=False)
    many = ClipEmbedder.random_init(tiny=True, seed=0, batch_size=3, device="cpu", workers=4, prefetch=True)
    np.testing.assert_allclose(many.embed_images(paths), one.embed_images(paths), atol=ATOL)
    many.close()


def test_fp16_path_on_the_cpu_agrees_with_fp32(embedder: ClipEmbedder, images: list[Image.Image]) -> None:
    half = ClipEmbedder.random_init(tiny=True, seed=0, device="cpu", half=True)
    assert half.half
    vectors = half.embed_images(images)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert _cosines(vectors, embedder.embed_images(images)).min() > 0.99


def test_device_setting(tmp_path: Path) -> None:
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(EmbeddingModelUnavailable, match="HEATERS_EMBEDDING_DEVICE"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EmbeddingModelUnavailable, match="no CUDA device"):
            choose_device("cuda")
    settings = Settings(home=tmp_path, clip_pretrained=str(tmp_path / "none.pt"), embedding_device="cpu")
    assert settings.embedding_device == "cpu" and settings.embedding_workers == 0


def test_batches_span_clips_and_match_clip_by_clip(embedder: ClipEmbedder, images: list[Image.Image]) -> None:
    clips = [images[0:3], images[3:5], images[1:2]]
    for strategy in ("keyframe_multi_avg", "keyframe_multi", "keyframe_single"):
        together = embedder.embed_clips(clips, strategy)
        apart = [embedder.embed_clip_keyframes(c, strategy) for c in clips]
        assert [len(v) for v in together] == [len(v) for v in apart]
        for a, b in zip(together, apart, strict=True):
            np.testing.assert_allclose(np.stack(a), np.stack(b), atol=ATOL)
    with pytest.raises(ValueError, match="at least one keyframe"):
        embedder.embed_clips([images[:1], []])
