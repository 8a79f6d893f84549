"""Shared pieces of the pipeline's end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.corpus import Shot, Transition, make_video
from commands.service import HeatersApplication
from infra.clip_embedder import ClipEmbedder

#: Three shots with hard cuts at frames 40 and 85 (25 fps, 120 frames).
SHOTS = [Shot("landscape", 40, scene=1), Shot("city", 45, scene=2), Shot("shapes", 35, scene=3)]
CUTS = [40, 85]


def known_cuts_video(path: Path) -> Path:
    make_video(path, SHOTS, [Transition("cut"), Transition("cut")], fps=25.0, size=(320, 180), seed=7)
    return path


def tiny_embedder() -> ClipEmbedder:
    return ClipEmbedder.random_init(tiny=True, seed=0)


def wait_until(
    condition: Callable[[], bool], timeout: float, step: Callable[[], object] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def video_settled(app: HeatersApplication, video_id: object) -> bool:
    state = app.get_video(video_id).state
    return state == "clipped" or state.endswith("_failed")
