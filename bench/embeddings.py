"""Embedding throughput: JPEG keyframes on disk → vectors, against the bare model forward pass.

    python -m bench.embeddings [--out bench/results/embeddings.json] [--images N] [--model ViT-B-32]

Everything runs in one process on the same images: synthetic 1280x720 JPEG keyframes (the size of a 720p
proxy's frames) and the same scaled to ``HEATERS_KEYFRAME_SHORT_SIDE`` (how the pipeline extracts them) are
generated into a temporary directory, then

* ``forward (baseline)``: ``model.encode_image`` on the pre-made, preprocessed tensors, batched, in the
  embedder's precision (fp16 on CUDA), i.e. the ceiling for this model on this device;
* ``decode+preprocess``: JPEG decode + open_clip's preprocess only, one thread (no model);
* ``end to end``: ``ClipEmbedder.embed_images(paths)`` with default settings (the device
  ``HEATERS_EMBEDDING_DEVICE`` picks, a decode pool of one thread per core, prefetch, JPEG draft; on CUDA
  fp16 and JPEG decode + resize on the GPU), on both keyframe sizes, and as before issue #11 (one thread,
  no prefetch, no draft, full-size keyframes); on CUDA also with the JPEGs decoded on the host.

The report records the device and both headline figures: the forward pass and end to end with default
settings (``end_to_end_ratio`` is their ratio).

The model has random weights (ViT-B-32 by default): throughput does not depend on the weights values.
Variants run round-robin ``--repeats`` times and the best wall time is kept; process CPU time is reported
too (images per CPU-second), which other processes' load disturbs much less. On a shared 2-core machine,
``--threads 1`` gives far steadier figures than torch's default of 2 threads (OpenMP stalls when a core is
taken away).
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from bench.harness import arguments, write_report
from infra.clip_embedder import ClipEmbedder
from infra.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("bench/results/embeddings.json")


@dataclass(frozen=True)
class Row:
    name: str
    images: int
    seconds: float
    images_per_second: float
    ratio_to_forward: float | None
    note: str = ""
    all_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    """Process CPU time of the best run: less sensitive than wall time to other processes' load."""
    images_per_cpu_second: float = 0.0


def make_keyframes(directory: Path, count: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """Deterministic frame-like JPEGs: gradients, a few shapes, mild sensor noise (quality 90)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for index in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack(
            [
                128 + 100 * np.sin(x / width * 3 + phase[0]),
                128 + 100 * np.sin(y / height * 2 + phase[1]),
                128 + 100 * np.sin((x + y) / (width + height) * 4 + phase[2]),
            ],
            axis=-1,
        )
        base += rng.normal(0, 6, base.shape)
        image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, width - 100)), int(rng.integers(0, height - 100))
            x1, y1 = x0 + int(rng.integers(40, 400)), y0 + int(rng.integers(40, 300))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            else:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
        path = directory / f"keyframe_{index:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def _timed_cpu(function: Callable[[], Any]) -> tuple[float, float, Any]:
    cpu_started = time.process_time()
    wall, result = _timed(function)
    return wall, time.process_time() - cpu_started, result


def run(
    *,
    images: int,
    model_name: str,
    batch_size: int,
    width: int,
    height: int,
    threads: int | None,
    repeats: int = 2,
) -> dict[str, Any]:
    if threads is not None:
        torch.set_num_threads(threads)
    settings = Settings()
    # Default settings: the device HEATERS_EMBEDDING_DEVICE picks (auto: CUDA when present), its
    # decode pool, prefetch, JPEG draft, fp16 and device-side JPEG decode on CUDA.
    embedder = ClipEmbedder.random_init(
        model_name, batch_size=batch_size, seed=0, device=settings.embedding_device,
        workers=settings.embedding_workers or None,
    )  # fmt: skip
    defaults: dict[str, Any] = {
        "prefetch": embedder.prefetch,
        "jpeg_draft": embedder.jpeg_draft,
        "workers": embedder.workers,
        "decode_on_device": embedder.decode_on_device,
    }
    short_side = settings.keyframe_short_side
    rows: list[Row] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emb-bench-") as tmp:
        generate_seconds, paths = _timed(lambda: make_keyframes(Path(tmp), images, width, height))
        logger.info("generated %d %dx%d JPEGs in %.1f s", images, width, height, generate_seconds)
        # Keyframes as the pipeline extracts them: scaled to the model's input size (short side).
        small_dir = Path(tmp) / "small"
        small_dir.mkdir()
        small = []
        for path in paths:
            with Image.open(path) as image:
                scale = short_side / min(image.size)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image.resize(size, Image.Resampling.BICUBIC).save(small_dir / path.name, quality=90)
            small.append(small_dir / path.name)
        small_size = Image.open(small[0]).size

        def decode_and_preprocess(draft: bool) -> torch.Tensor:
            embedder.jpeg_draft = draft
            try:
                return torch.stack([embedder.preprocess(embedder.load_image(p)) for p in paths])
            finally:
                embedder.jpeg_draft = defaults["jpeg_draft"]

        tensors = decode_and_preprocess(False)
        model: Any = embedder.model
        dtype = torch.float16 if embedder.half else torch.float32

        def forward() -> NDArray[np.float32]:
            outputs = []
            with torch.inference_mode():
                for start in range(0, images, batch_size):
                    batch = tensors[start : start + batch_size].to(embedder.device, dtype)
                    outputs.append(model.encode_image(batch))
            raw: NDArray[np.float32] = torch.cat(outputs).float().cpu().numpy()
            return raw

        def end_to_end(files: list[Path], **options: Any) -> Callable[[], NDArray[np.float32]]:
            def variant() -> NDArray[np.float32]:
                chosen = {**defaults, **options}
                embedder.close()  # the pool takes the variant's worker count
                embedder.prefetch = bool(chosen["prefetch"])
                embedder.jpeg_draft = bool(chosen["jpeg_draft"])
                embedder.workers = int(chosen["workers"])
                embedder.decode_on_device = bool(chosen["decode_on_device"])
                return embedder.embed_images(files)

            return variant

        full = f"{width}x{height} keyframes"
        scaled = f"{small_size[0]}x{small_size[1]} keyframes"
        # name, callable, is an end-to-end variant
        variants: list[tuple[str, Callable[[], Any], bool]] = [
            ("forward (baseline, pre-made tensors)", forward, False),
            ("decode+preprocess only, one thread", lambda: decode_and_preprocess(False), False),
            (f"end to end, default settings, {scaled}", end_to_end(small), True),
            (f"end to end, default settings, {full}", end_to_end(paths), True),
            (
                f"end to end, before #11 (1 thread, no prefetch/draft), {full}",
                end_to_end(paths, prefetch=False, jpeg_draft=False, workers=1, decode_on_device=False),
                True,
            ),
        ]
        if embedder.device.type == "cuda":
            variants.append(
                (f"end to end, host decode, {scaled}", end_to_end(small, decode_on_device=False), True)
            )

        # Warm-up (allocator, oneDNN kernels): one batch through the model and the full pipeline.
        embedder.embed_images(paths[:batch_size])

        # Round-robin repeats so that load from other processes hits every variant alike; keep the best.
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        cpu_times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        outputs: dict[str, Any] = {}
        for repeat in range(repeats):
            for name, function, _ in variants:
                seconds, cpu_seconds, outputs[name] = _timed_cpu(function)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
                logger.info("repeat %d: %-40s %.2f s (cpu %.2f s)", repeat + 1, name, seconds, cpu_seconds)

        raw = outputs[variants[0][0]]
        reference = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        forward_rate = images / min(times[variants[0][0]])
        for name, _, is_end_to_end in variants:
            best_index = int(np.argmin(times[name]))
            best = times[name][best_index]
            cpu = cpu_times[name][best_index]
            rate = images / best
            note = "no model" if name.startswith("decode") else ""
            if is_end_to_end:
                cosine = np.sum(outputs[name] * reference, axis=1)
                note = f"min cosine to baseline {float(cosine.min()):.6f}"
            ratio = rate / forward_rate if is_end_to_end or name == variants[0][0] else None
            rows.append(
                Row(
                    name,
                    images,
                    best,
                    rate,
                    ratio,
                    note,
                    [round(t, 3) for t in times[name]],
                    cpu,
                    images / cpu,
                )
            )

    return {
        "benchmark": "embeddings",
        "config": {
            "model": model_name,
            "weights": "random (seed 0)",
            "images": images,
            "image_size": [width, height],
            "jpeg_quality": 90,
            "batch_size": batch_size,
            "device": str(embedder.device),
            "device_name": torch.cuda.get_device_name(embedder.device)
            if embedder.device.type == "cuda"
            else platform.processor(),
            "precision": "fp16" if embedder.half else "fp32",
            "defaults": defaults,
            "keyframe_short_side": short_side,
            "torch_threads": torch.get_num_threads(),
            "dimension": embedder.dimension,
            "repeats": repeats,
            "statistic": "best of repeats (round-robin order)",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "open_clip": _open_clip_version(),
            "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "results": [asdict(row) for row in rows],
        "device": str(embedder.device),
        "forward_images_per_second": rows[0].images_per_second,
        "default_end_to_end_images_per_second": rows[2].images_per_second,
        "end_to_end_ratio": rows[2].ratio_to_forward,
        "best_end_to_end": min((r for r in rows if r.name.startswith("end")), key=lambda r: r.seconds).name,
    }


def _open_clip_version() -> str:
    import open_clip

    return str(getattr(open_clip, "__version__", "unknown"))


def format_table(report: dict[str, Any]) -> str:
    header = f"{'variant':<44} {'images':>6} {'seconds':>8} {'img/s':>8} {'vs fwd':>7} {'img/cpu-s':>9}  note"
    lines = [header, "-" * len(header)]
    for row in report["results"]:
        ratio = "" if row["ratio_to_forward"] is None else f"{row['ratio_to_forward']:.2f}"
        lines.append(
            f"{row['name']:<44} {row['images']:>6} {row['seconds']:>8.2f} "
            f"{row['images_per_second']:>8.1f} {ratio:>7} {row['images_per_cpu_second']:>9.1f}  {row['note']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--images", type=int, default=96, help="number of keyframes (default 96)")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: HEATERS_EMBEDDING_BATCH_SIZE (32)"
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=2, help="round-robin repeats, best kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    batch_size = args.batch_size or Settings().embedding_batch_size
    report = run(
        images=args.images,
        model_name=args.model,
        batch_size=batch_size,
        width=args.width,
        height=args.height,
        threads=args.threads,
        repeats=max(1, args.repeats),
    )
    print(format_table(report))
    print(
        f"device {report['device']}: forward {report['forward_images_per_second']:.1f} img/s, end to end with "
        f"default settings {report['default_end_to_end_images_per_second']:.1f} img/s, "
        f"ratio {report['end_to_end_ratio']:.2f}"
    )
    print(f"fastest end-to-end variant: {report['best_end_to_end']}")
    load = report["machine"]["load_average_1m_before_after"]
    print(f"1-min load average before/after: {load[0]} / {load[1]} on {os.cpu_count()} CPUs")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
