"""Media tools run as children that die with their worker.

A worker killed with SIGKILL cannot stop its children; without help ffmpeg runs on as an orphan,
writing into a temporary directory nobody will read. On Linux each child asks the kernel for SIGKILL
when its parent dies (``PR_SET_PDEATHSIG``) and runs in a process group of its own, so a worker's
shutdown can stop the whole group."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1
_libc: Any = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - a libc we cannot load: children just outlive a killed worker
        _libc = None


def _die_with_parent() -> None:  # runs in the child between fork and exec: no locks, no imports
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def child_options() -> dict[str, Any]:
    """``subprocess`` keyword arguments for a media tool: its own process group, killed with us."""
    options: dict[str, Any] = {"start_new_session": True}
    if _libc is not None:
        options["preexec_fn"] = _die_with_parent
    return options
