"""Which Dramatiq queue each stage's work goes to.

Separate queues keep long downloads from starving review-critical work: ``ingest`` (downloads),
``media`` (proxy, sprites, shots, keyframes, export, purge) and ``embeddings``. Dramatiq-free, so the
work ledger and the operators' views read it without importing the actors.
"""

from __future__ import annotations

STAGE_QUEUES: dict[str, str] = {
    "download": "ingest",
    "proxy": "media",
    "sprites": "media",
    "shots": "media",
    "keyframes": "media",
    "embedding": "embeddings",
    "export": "media",
    "purge": "media",
}

QUEUES: frozenset[str] = frozenset(STAGE_QUEUES.values())
