"""How fast frames reach a shot detector: ffmpeg's decode to the model's 48x27, option by option.

    python -m bench.decode_rates VIDEO [VIDEO ...] [--out bench/results/decode_rates.json] [--repeats 2]

For each video: Heaters' own decode (``decode_batches``, the frames read into Python, as the neural
detector gets them) and ffmpeg alone writing the same frames to nowhere with: the options Heaters
uses; Heaters' decode in time ranges, one single-threaded ffmpeg per core (``decode_in_ranges``, as
``detect_shots`` decodes); the scaler on threads of its own (``threads=0``, swscale's slices); the decoder on one thread;
no scaling at all (the decode alone, the ceiling); and the video cut in ``--pieces`` time ranges decoded
by as many ffmpeg processes at once (what a split decode could reach). With ``--gpu``, NVIDIA's decoder
too (ffmpeg built with CUDA, as imageio-ffmpeg 0.8's is): its frames halved on the GPU and finished
with ``area`` on the host, scaled with ``area`` on the host from full size, its decode alone, and
``--pieces`` time ranges on as many decoder sessions, or half of them beside the CPU's. Best
of ``--repeats`` wall times, frames per second. On a GPU machine this says whether the decode keeps up
with the model (issue #10: >= 3,000 frames/s end to end on 720p). A variant that cannot run here (no
GPU decoder) is reported as failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra.media.ffmpeg import (
    MediaError,
    PacketTimes,
    VideoInfo,
    decode_batches,
    ffmpeg_exe,
    ffmpeg_version,
    probe_with_packets,
)
from infra.media.range_decode import decode_in_ranges, usable_cores, video_ranges

WIDTH, HEIGHT = 48, 27  # TransNetV2's input
FAST = ["-skip_loop_filter", "all", "-flags2", "+fast"]
NVDEC = ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]  # decoded frames stay on the GPU


def _ffmpeg(path: Path, *, threads: int = 0, scale: str = ":flags=area", start: float = 0.0,
            duration: float | None = None, scaled: bool = True, hwaccel: list[str] | None = None,
            before: str = "") -> None:  # fmt: skip
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-threads", str(threads), *FAST]
    cmd += hwaccel or []
    if start > 0:
        cmd += ["-ss", f"{start:.3f}"]
    if duration is not None:
        cmd += ["-t", f"{duration:.3f}"]
    cmd += ["-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn"]
    if scaled:
        cmd += ["-vf", f"{before}scale={WIDTH}:{HEIGHT}{scale},format=rgb24", "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    else:
        cmd += ["-f", "null", "-"]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)


def _pieces(path: Path, info: VideoInfo, count: int, gpu: Sequence[bool] = ()) -> None:
    """``count`` equal time ranges decoded at once; range ``i`` on the GPU's decoder where ``gpu[i]``
    (halved there), the CPU's threads shared among the others."""
    step = info.duration / count
    on_gpu = [i < len(gpu) and gpu[i] for i in range(count)]
    threads = max(1, (os.cpu_count() or 1) // max(1, count - sum(on_gpu)))
    halved = _halved((info.width, info.height))
    with ThreadPoolExecutor(count) as pool:
        jobs = [
            pool.submit(_ffmpeg, path, start=i * step, duration=step, hwaccel=NVDEC, before=halved)
            if on_gpu[i]
            else pool.submit(_ffmpeg, path, threads=threads, start=i * step, duration=step)
            for i in range(count)
        ]
        for job in jobs:
            job.result()


def _halved(source: tuple[int, int]) -> str:
    """Filters before ``scale=48:27:flags=area`` for NVDEC's frames: halved on the GPU (bilinear at
    exactly half size: a 2x2 box) while at least twice the target, then brought to the host."""
    w, h = source
    steps = []
    while w % 2 == 0 and h % 2 == 0 and w // 2 >= 2 * WIDTH and h // 2 >= 2 * HEIGHT:
        w, h = w // 2, h // 2
        steps.append(f"scale_cuda={w}:{h}:interp_algo=bilinear")
    return ",".join([*steps, "hwdownload", "format=nv12", ""])


def variants(
    path: Path, info: VideoInfo, pieces: int, gpu: bool = False, packets: PacketTimes | None = None
) -> dict[str, Callable[[], Any]]:
    """The timed variants for ``path`` (``info``, ``packets``: its probe, made once, outside the
    timings)."""
    cores = usable_cores()
    ranges = video_ranges(info, packets, cores)
    out: dict[str, Callable[[], Any]] = {
        "heaters decode_batches (into Python)": lambda: sum(
            len(b) for b in decode_batches(path, WIDTH, HEIGHT, "rgb24")
        ),
        # as detect_shots decodes: one single-threaded ffmpeg per core, each on its time range
        f"heaters decode_in_ranges, {len(ranges)} on {cores} cores": lambda: sum(
            len(b) for b in decode_in_ranges(path, WIDTH, HEIGHT, "rgb24", ranges, parallel=cores)
        ),
        "ffmpeg, Heaters' options": lambda: _ffmpeg(path),
        "ffmpeg, scaler on its own threads": lambda: _ffmpeg(path, scale=":flags=area:threads=0"),
        "ffmpeg, one decoder thread": lambda: _ffmpeg(path, threads=1),
        "ffmpeg, decode only (no scale)": lambda: _ffmpeg(path, scaled=False),
    }
    split = pieces > 1 and info.duration > 0
    if split:
        out[f"ffmpeg, {pieces} time ranges at once"] = lambda: _pieces(path, info, pieces)
    if gpu:
        halved = _halved((info.width, info.height))
        out["ffmpeg, GPU decoder, halved there, area on host"] = lambda: _ffmpeg(
            path, hwaccel=NVDEC, before=halved
        )
        out["ffmpeg, GPU decoder, area from full size on host"] = lambda: _ffmpeg(
            path, hwaccel=["-hwaccel", "cuda"]
        )
        out["ffmpeg, GPU decoder only (frames stay there)"] = lambda: _ffmpeg(
            path, hwaccel=NVDEC, scaled=False
        )
        if split:
            # several decoder sessions at once (an H100 or H200 has seven NVDEC engines), alone and
            # beside the CPU's: for the next lease, the ways past one session's ~1,200 720p frames/s
            out[f"ffmpeg, GPU decoder, {pieces} time ranges at once"] = lambda: _pieces(
                path, info, pieces, [True] * pieces
            )
            out[f"ffmpeg, {pieces} time ranges, half on the GPU's decoder"] = lambda: _pieces(
                path, info, pieces, [i % 2 == 0 for i in range(pieces)]
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results/decode_rates.json"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pieces", type=int, default=4)
    parser.add_argument("--gpu", action="store_true", help="also NVDEC, the GPU's decoder (ffmpeg with CUDA)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "ffmpeg": ffmpeg_version(),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor()},
        "load_average_before": os.getloadavg(),
        "size": [WIDTH, HEIGHT],
        "statistic": f"best of {args.repeats} (round-robin)",
        "videos": {},
    }
    for path in args.videos:
        frames = sum(len(b) for b in decode_batches(path, WIDTH, HEIGHT, "rgb24"))  # also warms the cache
        info, _, packets = probe_with_packets(path)
        runs = variants(path, info, args.pieces, args.gpu, packets)
        times: dict[str, list[float]] = {name: [] for name in runs}
        failed: dict[str, str] = {}
        for _ in range(max(1, args.repeats)):
            for name, run in runs.items():
                if name in failed:
                    continue
                started = time.perf_counter()
                try:
                    run()
                except (subprocess.CalledProcessError, MediaError) as exc:  # e.g. no GPU decoder here
                    failed[name] = str(exc)[:300]
                    continue
                times[name].append(time.perf_counter() - started)
        print(f"\n{path.name}: {info.width}x{info.height}, {frames} frames")
        print(f"  {'variant':<48} {'frames/s':>9} {'best s':>7}")
        rows: dict[str, Any] = {}
        for name, seconds in times.items():
            if name in failed:
                rows[name] = {"failed": failed[name]}
                print(f"  {name:<48} failed: {failed[name][:80]}")
                continue
            best = min(seconds)
            rows[name] = {"seconds": seconds, "fps": frames / best}
            print(f"  {name:<48} {frames / best:9.0f} {best:7.2f}")
        report["videos"][path.name] = {
            "width": info.width,
            "height": info.height,
            "frames": frames,
            "rows": rows,
        }
        # after every video: a run cut short by its time limit (a lease) keeps what it measured
        report["load_average_after"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
