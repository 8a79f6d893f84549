"""Running the ffmpeg binary: argument lists, timeouts, stderr folded into :class:`MediaError`."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from infra.media.children import child_options
from infra.media.ffmpeg import MediaError, ffmpeg_exe

logger = logging.getLogger(__name__)

__all__ = ["default_timeout", "run_ffmpeg", "stderr_tail"]


def stderr_tail(text: str, lines: int = 3, width: int = 300) -> str:
    """The last few non-empty lines of ffmpeg's stderr, for error messages."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not kept:
        return "no output"
    return " | ".join(kept[-lines:])[-width:]


def default_timeout(duration_s: float, *, factor: float = 4.0, floor: float = 300.0) -> float:
    """A generous wall-clock limit for work proportional to a media duration."""
    return floor + factor * max(0.0, duration_s)


def run_ffmpeg(
    args: Sequence[str],
    *,
    what: str,
    path: Path | str | None = None,
    timeout: float = 600.0,
) -> str:
    """Run ``ffmpeg <args>`` (no shell) and return its stderr.

    ``what`` names the operation ("making proxy") for logs and errors. A non-zero exit or a timeout
    raises :class:`MediaError` whose reason carries the tail of ffmpeg's stderr.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    logger.debug("ffmpeg (%s): %s", what, cmd)
    started = time.monotonic()
    try:
        proc: subprocess.CompletedProcess[bytes] = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            **child_options(),
        )
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{what} timed out after {timeout:.0f} s", path) from exc
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise MediaError(f"{what} failed: ffmpeg exit {proc.returncode} ({stderr_tail(err)})", path)
    logger.info("%s took %.2f s", what, time.monotonic() - started)
    return err
