"""``heaters shots VIDEO``: a video file's shot boundaries, without ingesting it (for tuning the
detector). It must start fast, so it loads neither the event store nor the web app."""

from __future__ import annotations

from pathlib import Path

import click

from entrypoints.cli_support import CliError, Context, echo, pass_context, print_json


@click.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--detector",
    type=click.Choice(["auto", "fast", "cascade", "neural"]),
    default=None,
    help="Override HEATERS_SHOT_DETECTOR (default auto: neural on a GPU, cascade otherwise).",
)
@pass_context
def shots(obj: Context, video: Path, as_json: bool, detector: str | None) -> None:
    """Print a video file's shot boundaries (first frame of each new shot); ingests nothing."""
    # Imported here, not at the top: the detectors bring numpy (and torch or onnxruntime when a
    # neural one is made), which `heaters shots --help` and a usage error must not wait for.
    from infra.media.allocator import keep_freed_arrays
    from infra.media.ffmpeg import MediaError
    from infra.media.shot_detection import detect_shots, make_detector

    keep_freed_arrays(obj.settings.media_allocator_tuning)
    kind = detector or obj.settings.shot_detector
    try:
        result = detect_shots(video, make_detector(kind))  # type: ignore[arg-type]
    except MediaError as error:
        raise CliError(str(error)) from None
    if as_json:
        print_json(
            {
                "video": str(video),
                "frame_count": result.frame_count,
                "fps": result.fps,
                "cuts": result.cuts,
                "shots": [{"start": s, "end": e} for s, e in result.shots],
                "detector": result.detector,
                "params": result.params,
            }
        )
        return
    echo(f"{video}: {result.frame_count} frames at {result.fps:.3f} fps, {len(result.shots)} shots")
    for start, end in result.shots:
        echo(f"{start:>8} {end:>8}  {start / result.fps:9.3f}s")
