"""Batches of keyframes that span clips: concurrent embedding stages in one worker share a forward pass.

Each approved clip is still its own message, claim and ``Embedded`` event; the worker's embedding
threads hand their clip's keyframes to one :class:`EmbeddingBatcher`. The first to arrive waits a
moment (``linger``) for others, then embeds everything queued, up to ``max_clips`` clips per call,
and hands each thread its vectors; clips queued meanwhile go in the next call. So a device sees
batches of many clips' keyframes instead of three images at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

Vectors = list[NDArray[np.float32]]
EmbedClips = Callable[[Sequence[Sequence[Path]], str], list[Vectors]]


@dataclass
class _Request:
    keyframes: list[Path]
    strategy: str
    result: Future[Vectors] = field(default_factory=Future)


class EmbeddingBatcher:
    """Coalesce concurrent :meth:`embed` calls into calls of ``embed_clips`` (see the module doc)."""

    def __init__(self, embed_clips: EmbedClips, *, max_clips: int = 32, linger: float = 0.05) -> None:
        if max_clips < 1:
            raise ValueError("max_clips must be >= 1")
        self._embed_clips = embed_clips
        self.max_clips = max_clips
        self.linger = linger
        self._queue: list[_Request] = []
        self._lock = threading.Lock()
        self._leading = False
        self.batches: list[int] = []  # clips per call, for logs and tests

    def embed(self, keyframes: Sequence[Path], strategy: str) -> Vectors:
        """The clip's vectors, computed in a batch with whatever other clips are waiting."""
        request = _Request(list(keyframes), strategy)
        with self._lock:
            self._queue.append(request)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        return request.result.result()

    def _lead(self) -> None:
        if self.linger > 0:
            time.sleep(self.linger)  # let the other threads' clips join the first batch
        while True:
            with self._lock:
                if not self._queue:
                    self._leading = False
                    return
                strategy = self._queue[0].strategy
                batch = [r for r in self._queue if r.strategy == strategy][: self.max_clips]
                taken = {id(r) for r in batch}
                self._queue = [r for r in self._queue if id(r) not in taken]
            self._run(batch, strategy)

    def _run(self, batch: list[_Request], strategy: str) -> None:
        self.batches.append(len(batch))
        try:
            results = self._embed_clips([r.keyframes for r in batch], strategy)
        except Exception as error:  # one bad clip must not fail the others: retry each on its own
            if len(batch) == 1:
                batch[0].result.set_exception(error)
                return
            log.warning(
                "embedding a batch of %d clips failed (%s); embedding them one by one", len(batch), error
            )
            for request in batch:
                self._run([request], strategy)
            return
        log.info(
            "embedded %d clips (%d keyframes) in one batch", len(batch), sum(len(r.keyframes) for r in batch)
        )
        for request, vectors in zip(batch, results, strict=True):
            request.result.set_result(vectors)
