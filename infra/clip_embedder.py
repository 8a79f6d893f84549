"""CLIP image embeddings for keyframes of approved clips (open_clip, CPU or CUDA).

Weights are loaded **only** from local files: open_clip's cache (the Hugging Face hub cache
``$HF_HUB_CACHE`` / ``~/.cache/huggingface/hub`` and open_clip's URL cache ``~/.cache/clip``) or a
weights file named by ``HEATERS_CLIP_PRETRAINED``. The pretrained tag is resolved to a file here, before
open_clip is called, so open_clip never gets a chance to download anything; model creation additionally
runs with the Hugging Face hub in offline mode. A missing or unreadable weights file raises
:class:`EmbeddingModelUnavailable` at once instead of hanging on a network attempt.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, get_args

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from infra.config import EmbeddingStrategy, Settings

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

ImageInput: TypeAlias = Image.Image | str | os.PathLike[str]
"""A decoded PIL image or the path of an image file."""

FloatArray: TypeAlias = npt.NDArray[np.float32]

EMBEDDING_STRATEGIES: Final[tuple[str, ...]] = get_args(EmbeddingStrategy)
DEFAULT_STRATEGY: Final[EmbeddingStrategy] = "keyframe_multi_avg"
TINY_MODEL: Final[str] = "ViT-S-32"
"""Smallest built-in open_clip ViT (384 wide, 384-d output): about 3-4x faster than ViT-B-32 on CPU."""
DEFAULT_BATCH_SIZE: Final[int] = 32

_WEIGHT_SUFFIXES: Final[frozenset[str]] = frozenset({".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt"})
_HF_WEIGHTS_NAME: Final[str] = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME: Final[str] = "open_clip_model.safetensors"
_PREPROCESS_KEYS: Final[tuple[str, ...]] = ("mean", "std", "interpolation", "resize_mode")
_OFFLINE_LOCK = threading.Lock()


class EmbeddingModelUnavailable(RuntimeError):
    """The configured CLIP model or its weights cannot be loaded from local files."""


# --------------------------------------------------------------------------------------------------
# Weight resolution (local files only)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedWeights:
    """What open_clip must be called with so that it only reads local files."""

    model_name: str
    """Built-in architecture name, or ``local-dir:<dir>`` for a hub snapshot resolved from the cache."""
    checkpoint: str | None
    """Weights file path (None for ``local-dir:`` models, whose directory holds the weights)."""
    tag: str | None = None
    """The open_clip pretrained tag the checkpoint was found for, if any."""
    quick_gelu: bool = False
    """The tag was trained with QuickGELU (e.g. OpenAI weights): the model must use it too."""
    preprocess: dict[str, Any] = field(default_factory=dict)
    """Preprocessing overrides (mean, std, interpolation, resize_mode) from the tag's config."""


def _default_url_cache_dir() -> Path:
    return Path("~/.cache/clip").expanduser()


def _hf_cache_description(cache_dir: str | Path | None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _unavailable(
    model_name: str, pretrained: str, reason: str, *, hint: str = ""
) -> EmbeddingModelUnavailable:
    message = (
        f"CLIP weights for HEATERS_CLIP_MODEL={model_name!r} / HEATERS_CLIP_PRETRAINED={pretrained!r} "
        f"cannot be loaded: {reason}. No download is attempted (Heaters runs offline). To fix: put the "
        "open_clip weights file (.safetensors/.bin/.pt/.pth) on this machine and set "
        "HEATERS_CLIP_PRETRAINED=/path/to/weights-file (with HEATERS_CLIP_MODEL naming its architecture), "
        "or pre-populate open_clip's cache (Hugging Face hub cache / ~/.cache/clip) for that tag."
    )
    if hint:
        message = f"{message} {hint}"
    return EmbeddingModelUnavailable(message)


def _safe_alternatives(filename: str) -> list[str]:
    """Mirror of open_clip's preference for .safetensors twins of hub weight files."""
    if filename == _HF_WEIGHTS_NAME:
        return [_HF_SAFE_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors"]
    return []


def _find_cached_tag_file(cfg: dict[str, Any], cache_dir: str | Path | None) -> tuple[str | None, list[str]]:
    """Look a tag's weights file up in the local caches; return (path or None, places looked at)."""
    from huggingface_hub import try_to_load_from_cache

    looked: list[str] = []
    hf_hub = str(cfg.get("hf_hub") or "")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)
        filename = filename or _HF_WEIGHTS_NAME
        for candidate in [*_safe_alternatives(filename), filename]:
            looked.append(f"hf-hub {repo_id}/{candidate} in {_hf_cache_description(cache_dir)}")
            found = try_to_load_from_cache(repo_id, candidate, cache_dir=cache_dir)
            if isinstance(found, str) and Path(found).is_file():
                return found, looked
    url = str(cfg.get("url") or "")
    if url:
        target = Path(cache_dir) if cache_dir is not None else _default_url_cache_dir()
        target = target / url.rsplit("/", 1)[-1]
        looked.append(str(target))
        if target.is_file():
            return str(target), looked
    return None, looked


def _resolve_hub_model(model_name: str, cache_dir: str | Path | None) -> ResolvedWeights:
    """``hf-hub:org/repo`` → ``local-dir:<cached snapshot>`` (never touches the network)."""
    from huggingface_hub import snapshot_download

    repo_id = model_name.removeprefix("hf-hub:")
    try:
        snapshot = Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except Exception as exc:
        raise _unavailable(
            model_name,
            "",
            f"the hub repository {repo_id!r} is not in the local Hugging Face cache "
            f"({_hf_cache_description(cache_dir)}): {exc}",
        ) from exc
    return _resolve_local_dir(f"local-dir:{snapshot}", original=model_name)


def _resolve_local_dir(model_name: str, *, original: str | None = None) -> ResolvedWeights:
    directory = Path(model_name.removeprefix("local-dir:")).expanduser()
    shown = original or model_name
    if not (directory / "open_clip_config.json").is_file():
        raise _unavailable(shown, "", f"{directory} has no open_clip_config.json")
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in directory.iterdir() if p.is_file()):
        raise _unavailable(shown, "", f"{directory} holds no weights file")
    return ResolvedWeights(model_name=f"local-dir:{directory}", checkpoint=None)


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith(("~", "."))
        or Path(value).suffix.lower() in _WEIGHT_SUFFIXES
    )


def resolve_weights(
    model_name: str, pretrained: str, *, cache_dir: str | Path | None = None
) -> ResolvedWeights:
    """Resolve (model, pretrained tag or file) to local files, or raise :class:`EmbeddingModelUnavailable`.

    ``pretrained`` is an open_clip tag for ``model_name`` (looked up in the Hugging Face hub cache, then in
    open_clip's URL cache; ``cache_dir`` replaces both roots, as in open_clip) or the path of a weights
    file. ``model_name`` may also be ``local-dir:<dir>`` or ``hf-hub:<org/repo>`` (cached snapshot only);
    then ``pretrained`` is ignored.
    """
    import open_clip

    if model_name.startswith("local-dir:"):
        return _resolve_local_dir(model_name)
    if model_name.startswith("hf-hub:"):
        return _resolve_hub_model(model_name, cache_dir)
    if model_name not in open_clip.list_models():
        raise _unavailable(
            model_name,
            pretrained,
            "unknown open_clip architecture",
            hint="HEATERS_CLIP_MODEL must be one of open_clip.list_models(), e.g. 'ViT-B-32'.",
        )
    pretrained = pretrained.strip()
    if not pretrained:
        raise _unavailable(model_name, pretrained, "no pretrained tag or weights file is configured")

    tag_cfg: dict[str, Any] = open_clip.get_pretrained_cfg(model_name, pretrained)
    if tag_cfg:
        found, looked = _find_cached_tag_file(tag_cfg, cache_dir)
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        if found is None:
            hint = ""
            if quick_gelu and not model_name.endswith("-quickgelu"):
                hint = (
                    f"These weights use QuickGELU: when pointing HEATERS_CLIP_PRETRAINED at a copy of the "
                    f"file, set HEATERS_CLIP_MODEL={model_name}-quickgelu."
                )
            raise _unavailable(
                model_name,
                pretrained,
                f"the tag's weights are not in the local cache (looked at: {'; '.join(looked)})",
                hint=hint,
            )
        preprocess = {k: tag_cfg[k] for k in _PREPROCESS_KEYS if tag_cfg.get(k) is not None}
        return ResolvedWeights(model_name, found, pretrained, quick_gelu, preprocess)

    path = Path(pretrained).expanduser()
    if path.is_file():
        return ResolvedWeights(model_name, str(path))
    if path.exists():
        raise _unavailable(model_name, pretrained, f"{path} is not a regular file")
    if _looks_like_path(pretrained):
        raise _unavailable(model_name, pretrained, f"the weights file {path} does not exist")
    known = open_clip.list_pretrained_tags_by_model(model_name)
    raise _unavailable(
        model_name,
        pretrained,
        f"{pretrained!r} is neither a weights file nor a known tag for {model_name} (known tags: {known})",
    )


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Force the Hugging Face hub offline while open_clip builds a model (belt and braces)."""
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        previous_const = constants.HF_HUB_OFFLINE
        previous_env = os.environ.get("HF_HUB_OFFLINE")
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = previous_const
            if previous_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous_env


# --------------------------------------------------------------------------------------------------
# Keyframe strategies (pure numpy)
# --------------------------------------------------------------------------------------------------


def _check_strategy(strategy: str) -> EmbeddingStrategy:
    if strategy not in EMBEDDING_STRATEGIES:
        raise ValueError(f"unknown embedding strategy {strategy!r}; expected one of {EMBEDDING_STRATEGIES}")
    return strategy  # type: ignore[return-value]


def middle_index(count: int) -> int:
    """Index of the middle keyframe (the upper middle for an even count)."""
    if count < 1:
        raise ValueError("at least one keyframe is needed")
    return count // 2


def l2_normalize(vectors: npt.ArrayLike, *, eps: float = 1e-12) -> FloatArray:
    """Row-wise L2 normalisation to float32 (rows of norm < eps are left as they are)."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    result: FloatArray = (array / np.maximum(norms, eps)).astype(np.float32, copy=False)
    return result


def combine_keyframe_vectors(vectors: npt.ArrayLike, strategy: str = DEFAULT_STRATEGY) -> list[FloatArray]:
    """Apply an embedding strategy to the (n, dim) unit vectors of one clip's keyframes, in order.

    ``keyframe_multi_avg``: one vector, the mean re-normalised to unit length; ``keyframe_multi``: one
    vector per keyframe; ``keyframe_single``: the middle keyframe's vector.
    """
    chosen = _check_strategy(strategy)
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"expected an (n >= 1, dim) array of keyframe vectors, got shape {array.shape}")
    if chosen == "keyframe_multi":
        return [row.copy() for row in array]
    if chosen == "keyframe_single":
        return [array[middle_index(array.shape[0])].copy()]
    mean = array.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        # Keyframe vectors that cancel out: no direction to keep, fall back to the middle keyframe.
        logger.warning("keyframe vectors average to ~0; using the middle keyframe's vector instead")
        return [array[middle_index(array.shape[0])].copy()]
    return [(mean / norm).astype(np.float32)]


# --------------------------------------------------------------------------------------------------
# The embedder
# --------------------------------------------------------------------------------------------------


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ClipEmbedder:
    """Image embedder around an open_clip model: L2-normalised float32 vectors of ``dimension``.

    ``pretrained`` is an open_clip tag (found in the local cache only) or a weights file path; ``None``
    builds a built-in architecture with random weights (tests and benchmarks only; see :meth:`random_init`);
    ``hf-hub:`` / ``local-dir:`` model names carry their own weights and ignore ``pretrained``.
    """

    model_name: str
    pretrained: str | None
    device: torch.device
    batch_size: int
    default_strategy: EmbeddingStrategy

    def __init__(
        self,
        model_name: str,
        pretrained: str | None,
        device: str | torch.device | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        default_strategy: EmbeddingStrategy = DEFAULT_STRATEGY,
        cache_dir: str | Path | None = None,
        jpeg_draft: bool = False,
        prefetch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = torch.device(device if device is not None else _default_device())
        self.batch_size = batch_size
        self.default_strategy = _check_strategy(default_strategy)
        self.jpeg_draft = jpeg_draft
        """Let libjpeg decode JPEG files at a reduced scale (still >= the model's input size): faster,
        but vectors then differ slightly from those of the full-size decode."""
        self.prefetch = prefetch
        """Decode + preprocess the next batch in a helper thread while the model runs on the current one."""

        started = time.perf_counter()
        self._model, self._preprocess = self._build(cache_dir)
        self._model.eval()
        self._model.requires_grad_(False)
        self._dimension = self._probe_dimension()
        self._input_size = self._probe_input_size()
        logger.info(
            "CLIP model %s (%s) ready on %s: %d-d vectors, built in %.1f s",
            model_name,
            pretrained if pretrained is not None else "random weights",
            self.device,
            self._dimension,
            time.perf_counter() - started,
        )

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, device: str | torch.device | None = None, **kwargs: Any
    ) -> ClipEmbedder:
        """The embedder configured by ``HEATERS_CLIP_MODEL`` / ``HEATERS_CLIP_PRETRAINED`` & co."""
        settings = settings or Settings()
        return cls(
            settings.clip_model,
            settings.clip_pretrained,
            device,
            batch_size=settings.embedding_batch_size,
            default_strategy=settings.embedding_strategy,
            **kwargs,
        )

    @classmethod
    def random_init(
        cls,
        model_name: str = "ViT-B-32",
        *,
        tiny: bool = False,
        seed: int | None = 0,
        device: str | torch.device | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> ClipEmbedder:
        """Same architecture with RANDOM weights (no file needed): for tests and benchmarks.

        ``tiny=True`` swaps in :data:`TINY_MODEL` (ViT-S-32) for speed. ``seed`` makes the weights
        reproducible without touching the global RNG state.
        """
        name = TINY_MODEL if tiny else model_name
        if seed is None:
            return cls(name, None, device, batch_size=batch_size, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(name, None, device, batch_size=batch_size, **kwargs)

    def _build(self, cache_dir: str | Path | None) -> tuple[nn.Module, Callable[[Image.Image], torch.Tensor]]:
        import open_clip

        kwargs: dict[str, Any] = {"device": self.device, "pretrained_text": False}
        has_schema = self.model_name.startswith(("hf-hub:", "local-dir:"))
        if self.pretrained is None and not has_schema:
            if self.model_name not in open_clip.list_models():
                raise _unavailable(self.model_name, "", "unknown open_clip architecture")
            logger.warning("building %s with RANDOM weights (tests/benchmarks only)", self.model_name)
            model_name, checkpoint = self.model_name, None
        else:
            resolved = resolve_weights(self.model_name, self.pretrained or "", cache_dir=cache_dir)
            model_name, checkpoint = resolved.model_name, resolved.checkpoint
            kwargs["require_pretrained"] = True
            if resolved.quick_gelu:
                kwargs["force_quick_gelu"] = True
            for key, value in resolved.preprocess.items():
                kwargs[f"image_{key}"] = value
            logger.info(
                "loading CLIP weights for %s from %s",
                self.model_name,
                checkpoint or model_name.removeprefix("local-dir:"),
            )
        try:
            with _hub_offline():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=checkpoint, **kwargs
                )
        except EmbeddingModelUnavailable:
            raise
        except Exception as exc:
            raise _unavailable(
                self.model_name,
                self.pretrained or "",
                f"open_clip could not build the model from local files ({type(exc).__name__}: {exc})",
            ) from exc
        return model, preprocess

    def _probe_dimension(self) -> int:
        visual: Any = getattr(self._model, "visual", None)
        output_dim = getattr(visual, "output_dim", None)
        if isinstance(output_dim, int):
            return output_dim
        size = self._probe_input_size()
        with torch.inference_mode():
            out = self._encode(torch.zeros(1, 3, size, size, device=self.device))
        return int(out.shape[-1])

    def _probe_input_size(self) -> int:
        visual: Any = getattr(self._model, "visual", None)
        image_size = getattr(visual, "image_size", 224)
        if isinstance(image_size, tuple | list):
            return int(min(image_size))
        return int(image_size)

    # -- public properties ------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        """Length of every embedding vector."""
        return self._dimension

    @property
    def model(self) -> nn.Module:
        """The underlying open_clip model (eval mode)."""
        return self._model

    @property
    def preprocess(self) -> Callable[[Image.Image], torch.Tensor]:
        """open_clip's inference transform: PIL image → (3, H, W) float tensor."""
        return self._preprocess

    # -- embedding --------------------------------------------------------------------------------

    def load_image(self, image: ImageInput) -> Image.Image:
        """Decode one image (path or PIL image) to RGB, honouring ``jpeg_draft``."""
        if isinstance(image, Image.Image):
            return image if image.mode == "RGB" else image.convert("RGB")
        try:
            with Image.open(image) as opened:
                if self.jpeg_draft and opened.format == "JPEG":
                    opened.draft("RGB", (self._input_size, self._input_size))
                return opened.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read image {os.fspath(image)!r}: {exc}") from exc

    def _prepare(self, images: Sequence[ImageInput]) -> torch.Tensor:
        return torch.stack([self._preprocess(self.load_image(image)) for image in images])

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        encode: Any = getattr(self._model, "encode_image")  # noqa: B009 - open_clip is untyped
        features: torch.Tensor = encode(batch)
        return features

    def embed_tensors(self, batch: torch.Tensor) -> FloatArray:
        """Embed an already preprocessed (n, 3, H, W) batch in one forward pass; rows are unit vectors."""
        with torch.inference_mode():
            features = self._encode(batch.to(self.device, non_blocking=True))
            features = torch.nn.functional.normalize(features.float(), dim=-1)
            result: FloatArray = features.cpu().numpy().astype(np.float32, copy=False)
            return result

    def embed_images(self, images: Sequence[ImageInput]) -> FloatArray:
        """Embed images (PIL images or image file paths): float32 (n, dimension), unit L2 norm rows.

        Images are decoded and preprocessed one batch (``batch_size``) at a time, so memory stays bounded.
        An empty sequence gives an empty (0, dimension) array.
        """
        if isinstance(images, str | os.PathLike | Image.Image):
            raise TypeError("embed_images takes a sequence of images; wrap a single image in a list")
        count = len(images)
        out = np.empty((count, self._dimension), dtype=np.float32)
        if count == 0:
            return out
        starts = list(range(0, count, self.batch_size))
        if not self.prefetch or len(starts) == 1:
            for start in starts:
                chunk = images[start : start + self.batch_size]
                out[start : start + len(chunk)] = self.embed_tensors(self._prepare(chunk))
            return out
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-prefetch") as pool:
            pending: Future[torch.Tensor] = pool.submit(self._prepare, images[0 : self.batch_size])
            for index, start in enumerate(starts):
                batch = pending.result()
                if index + 1 < len(starts):
                    following = starts[index + 1]
                    pending = pool.submit(self._prepare, images[following : following + self.batch_size])
                out[start : start + batch.shape[0]] = self.embed_tensors(batch)
        return out

    def embed_image(self, image: ImageInput) -> FloatArray:
        """One image → one (dimension,) unit vector."""
        vector: FloatArray = self.embed_images([image])[0]
        return vector

    def embed_clip_keyframes(
        self, keyframes: Sequence[ImageInput], strategy: str | None = None
    ) -> list[FloatArray]:
        """Embed one clip's keyframes (in temporal order) with an embedding strategy.

        ``keyframe_multi_avg`` (default): one vector, the re-normalised mean of the keyframe vectors;
        ``keyframe_multi``: one vector per keyframe, in order; ``keyframe_single``: one vector, the middle
        keyframe's (only that keyframe is decoded and embedded). ``strategy=None`` uses the embedder's
        default (``HEATERS_EMBEDDING_STRATEGY`` when built with :meth:`from_settings`).
        """
        chosen = _check_strategy(strategy if strategy is not None else self.default_strategy)
        if isinstance(keyframes, str | os.PathLike | Image.Image):
            raise TypeError("keyframes must be a sequence of images, not a single image")
        if len(keyframes) == 0:
            raise ValueError("a clip needs at least one keyframe to be embedded; got an empty list")
        if chosen == "keyframe_single":
            return [self.embed_image(keyframes[middle_index(len(keyframes))])]
        return combine_keyframe_vectors(self.embed_images(keyframes), chosen)

    def __repr__(self) -> str:
        return (
            f"ClipEmbedder(model_name={self.model_name!r}, pretrained={self.pretrained!r}, "
            f"device={str(self.device)!r}, dimension={self._dimension})"
        )
