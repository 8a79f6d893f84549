"""glibc's allocator kept from handing the media work's large arrays back to the kernel.

The shot detectors allocate and free numpy arrays of a few to a few tens of MB for every batch of
frames. glibc serves those from ``mmap`` or trims its heap after each free, so every batch faults
its pages in again: on the 150 s 720p bench video about 0.2 s of the cascade's main thread went to
page faults in the fast pass's first pass alone, and the process used 0.4 CPU s more
(docs/measurements.md, stop 21). Raising the mmap threshold to 32 MiB and the trim threshold to
256 MiB keeps the freed memory for the next batch; the price is up to that much memory a process
keeps after a video. Process-wide, so it is called where a process that does media work starts
(the pipeline's workers, ``heaters shots``), and switched off by ``HEATERS_MEDIA_ALLOCATOR_TUNING``.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_arrays"]

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap, not from ``mmap`` (glibc's dynamic limit's ceiling).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top kept up to this much instead of being given back.
TRIM_THRESHOLD = 256 << 20


def keep_freed_arrays(wanted: bool = True) -> bool:
    """Tune this process's allocator (glibc on Linux; elsewhere nothing) unless ``wanted`` is false
    (``Settings.media_allocator_tuning``): whether it took effect."""
    if not wanted or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0
    done: bool = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
    if done:
        logger.info(
            "allocator: arrays under %d MiB from the heap, up to %d MiB kept after frees",
            MMAP_THRESHOLD >> 20,
            TRIM_THRESHOLD >> 20,
        )
    return done
