"""Which Dramatiq queue each stage's work goes to.

Separate queues keep long downloads from starving review-critical work: ``ingest`` (downloads),
``media`` (proxy, sprites, shots, keyframes, export, purge) and ``embeddings``. Dramatiq-free, so the
work ledger and the operators' views read it without importing the actors.
"""

from __future__ import annotations

from domain.stages import PURGE, ClipStage, VideoStage

STAGE_QUEUES: dict[str, str] = {
    VideoStage.DOWNLOAD: "ingest",
    VideoStage.PROXY: "media",
    VideoStage.SPRITES: "media",
    VideoStage.SHOTS: "media",
    ClipStage.KEYFRAMES: "media",
    ClipStage.EMBEDDING: "embeddings",
    ClipStage.EXPORT: "media",
    PURGE: "media",
}

QUEUES: frozenset[str] = frozenset(STAGE_QUEUES.values())
