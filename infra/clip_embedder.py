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


EmbeddingDevice: TypeAlias = str
"""``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_device(setting: EmbeddingDevice | torch.device | None) -> torch.device:
    """The device for ``HEATERS_EMBEDDING_DEVICE``: ``auto``/``None`` picks CUDA when present; asking
    for CUDA on a machine without it raises :class:`EmbeddingModelUnavailable` naming the setting."""
    if isinstance(setting, torch.device):
        return setting
    if setting is None or setting == "auto":
        return torch.device(_default_device())
    try:
        device = torch.device(setting)
    except RuntimeError as exc:
        raise EmbeddingModelUnavailable(
            f"HEATERS_EMBEDDING_DEVICE={setting!r} is not a device: {exc}"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmbeddingModelUnavailable(
            f"HEATERS_EMBEDDING_DEVICE={setting!r} but this machine has no CUDA device; use 'auto' or 'cpu'"
        )
    return device


@dataclass(frozen=True, slots=True)
class FastPreprocess:
    """open_clip's standard inference transform (shortest side to ``resize`` with bicubic, centre crop
    to ``crop``, normalise) split in two: a uint8 part that runs in the decode pool (or on the device)
    and a batched float part (scale, normalise, dtype) on the model's device."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, preprocess: Callable[[Image.Image], torch.Tensor]) -> FastPreprocess | None:
        """The split form of ``preprocess`` when it is the standard transform, else ``None``."""
        from torchvision import transforms

        steps = list(getattr(preprocess, "transforms", []))
        resizes = [t for t in steps if isinstance(t, transforms.Resize)]
        crops = [t for t in steps if isinstance(t, transforms.CenterCrop)]
        norms = [t for t in steps if isinstance(t, transforms.Normalize)]
        if len(steps) != 5 or not (len(resizes) == len(crops) == len(norms) == 1):
            return None
        resize, crop, norm = resizes[0], crops[0], norms[0]
        size = resize.size if isinstance(resize.size, int) else None
        if isinstance(resize.size, list | tuple) and len(resize.size) == 1:
            size = int(resize.size[0])
        crop_size = tuple(crop.size)
        if size is None or len(crop_size) != 2 or crop_size[0] != crop_size[1]:
            return None
        if resize.interpolation != transforms.InterpolationMode.BICUBIC:
            return None
        mean, std = tuple(float(x) for x in norm.mean), tuple(float(x) for x in norm.std)
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(size, int(crop_size[0]), (mean[0], mean[1], mean[2]), (std[0], std[1], std[2]))

    def host(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image → (3, crop, crop) uint8, resized as torchvision resizes PIL images."""
        w, h = image.size
        if w <= h:
            size = (self.resize, max(1, int(self.resize * h / w)))
        else:
            size = (max(1, int(self.resize * w / h)), self.resize)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = round((size[0] - self.crop) / 2.0), round((size[1] - self.crop) / 2.0)
        image = image.crop((left, top, left + self.crop, top + self.crop))
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)

    def device(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 on any device → (3, crop, crop) uint8 on that device (bicubic, antialiased)."""
        from torchvision.transforms.v2 import InterpolationMode, functional

        resized = functional.resize(
            image, [self.resize], interpolation=InterpolationMode.BICUBIC, antialias=True
        )
        cropped: torch.Tensor = functional.center_crop(resized, [self.crop, self.crop])
        return cropped

    def normalise(self, batch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(n, 3, crop, crop) uint8 → normalised float of ``dtype`` on the batch's device."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1) * 255.0
        return ((batch.float() - mean) / std).to(dtype)


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
        jpeg_draft: bool = True,
        prefetch: bool = True,
        workers: int | None = None,
        half: bool | None = None,
        decode_on_device: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = choose_device(device)
        self.batch_size = batch_size
        self.default_strategy = _check_strategy(default_strategy)
        self.jpeg_draft = jpeg_draft
        """Let libjpeg decode JPEG files at a reduced scale (still >= the model's input size): faster,
        but vectors then differ slightly from those of the full-size decode."""
        self.prefetch = prefetch
        """Decode + preprocess the next batch while the model runs on the current one."""
        self.workers = workers or max(1, os.cpu_count() or 1)
        """Threads decoding and preprocessing images in parallel (PIL and libjpeg release the GIL)."""
        on_cuda = self.device.type == "cuda"
        self.half = on_cuda if half is None else half
        """fp16 weights and inputs (the default on CUDA; slower than fp32 on most CPUs)."""
        self.decode_on_device = on_cuda if decode_on_device is None else decode_on_device
        """Decode JPEG files with ``torchvision.io.decode_jpeg`` on the model's device and resize there
        (the default on CUDA; on the CPU the same code path runs, for tests)."""
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

        started = time.perf_counter()
        self._model, self._preprocess = self._build(cache_dir)
        self._model.eval()
        self._model.requires_grad_(False)
        self._dtype = torch.float16 if self.half else torch.float32
        if self.half:
            self._model.half()
        self._fast = FastPreprocess.of(self._preprocess)
        self._dimension = self._probe_dimension()
        self._input_size = self._probe_input_size()
        logger.info(
            "CLIP model %s (%s) ready on %s (%s, %d decode threads%s): %d-d vectors, built in %.1f s",
            model_name,
            pretrained if pretrained is not None else "random weights",
            self.device,
            "fp16" if self.half else "fp32",
            self.workers,
            ", JPEG decode on the device" if self.decode_on_device else "",
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
        kwargs.setdefault("workers", settings.embedding_workers or None)
        return cls(
            settings.clip_model,
            settings.clip_pretrained,
            device if device is not None else settings.embedding_device,
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
            out = self._encode(torch.zeros(1, 3, size, size, device=self.device, dtype=self._dtype))
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

    def _decode_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="clip-decode")
            return self._pool

    def close(self) -> None:
        """Stop the decode threads (a later call starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _host_uint8(self, image: ImageInput) -> torch.Tensor:
        assert self._fast is not None
        return self._fast.host(self.load_image(image))

    def _read_jpeg(self, image: ImageInput) -> torch.Tensor | Image.Image:
        """A JPEG file's bytes (to decode on the device); anything else decoded here."""
        if not isinstance(image, Image.Image):
            try:
                data = Path(image).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read image {os.fspath(image)!r}: {exc}") from exc
            if data[:3] == b"\xff\xd8\xff":
                return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return self.load_image(image)

    def _prepare(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Decode and preprocess ``images`` into one model-ready batch on the model's device."""
        fast = self._fast
        if fast is None:  # a non-standard transform: open_clip's own, image by image, in the pool
            tensors = list(self._decode_pool().map(lambda im: self._preprocess(self.load_image(im)), images))
            return torch.stack(tensors).to(self.device, self._dtype, non_blocking=True)
        if self.decode_on_device:
            return fast.normalise(self._prepare_on_device(fast, images), self._dtype)
        crops = list(self._decode_pool().map(self._host_uint8, images))
        return fast.normalise(torch.stack(crops).to(self.device, non_blocking=True), self._dtype)

    def _prepare_on_device(self, fast: FastPreprocess, images: Sequence[ImageInput]) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        read = list(self._decode_pool().map(self._read_jpeg, images))
        jpegs = [i for i, item in enumerate(read) if isinstance(item, torch.Tensor)]
        crops: list[torch.Tensor | None] = [None] * len(read)
        if jpegs:
            try:
                decoded = decode_jpeg(
                    [read[i] for i in jpegs],  # type: ignore[misc]
                    mode=ImageReadMode.RGB,
                    device=self.device,
                )
            except RuntimeError as exc:
                raise ValueError(f"cannot decode a JPEG keyframe: {exc}") from exc
            for i, image in zip(jpegs, decoded, strict=True):
                crops[i] = fast.device(image)
        for i, item in enumerate(read):
            if isinstance(item, Image.Image):
                crops[i] = fast.host(item).to(self.device)
        return torch.stack([c for c in crops if c is not None])

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        encode: Any = getattr(self._model, "encode_image")  # noqa: B009 - open_clip is untyped
        features: torch.Tensor = encode(batch)
        return features

    def embed_tensors(self, batch: torch.Tensor) -> FloatArray:
        """Embed an already preprocessed (n, 3, H, W) batch in one forward pass; rows are unit vectors."""
        with torch.inference_mode():
            features = self._encode(batch.to(self.device, self._dtype, non_blocking=True))
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
        if isinstance(keyframes, str | os.PathLike | Image.Image):
            raise TypeError("keyframes must be a sequence of images, not a single image")
        return self.embed_clips([keyframes], strategy)[0]

    def embed_clips(
        self, clips: Sequence[Sequence[ImageInput]], strategy: str | None = None
    ) -> list[list[FloatArray]]:
        """:meth:`embed_clip_keyframes` for several clips at once: their keyframes share batches, so a
        device gets full batches even when each clip has three keyframes."""
        chosen = _check_strategy(strategy if strategy is not None else self.default_strategy)
        picked: list[list[ImageInput]] = []
        for keyframes in clips:
            if len(keyframes) == 0:
                raise ValueError("a clip needs at least one keyframe to be embedded; got an empty list")
            if chosen == "keyframe_single":
                picked.append([keyframes[middle_index(len(keyframes))]])
            else:
                picked.append(list(keyframes))
        vectors = self.embed_images([image for keyframes in picked for image in keyframes])
        out: list[list[FloatArray]] = []
        start = 0
        for keyframes in picked:
            part = vectors[start : start + len(keyframes)]
            start += len(keyframes)
            out.append(
                [part[0].copy()] if chosen == "keyframe_single" else combine_keyframe_vectors(part, chosen)
            )
        return out

    def __repr__(self) -> str:
        return (
            f"ClipEmbedder(model_name={self.model_name!r}, pretrained={self.pretrained!r}, "
            f"device={str(self.device)!r}, dimension={self._dimension})"
        )
