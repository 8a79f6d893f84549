"""The similarity search page: neighbours of a clip by cosine distance, with filters and pages of 12."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from commands.errors import parse_id
from web.readmodels import Manifests, ReadModels

log = logging.getLogger(__name__)

PAGE_SIZE = 12


def _field(row: Any, *names: str) -> Any:
    for name in names:
        if isinstance(row, dict) and name in row:
            return row[name]
        if hasattr(row, name):
            return getattr(row, name)
    return None


def _score(row: Any) -> float | None:
    similarity = _field(row, "similarity", "score")
    if similarity is not None:
        return float(similarity)
    distance = _field(row, "distance", "cosine_distance")
    return None if distance is None else 1.0 - float(distance)


def search_page(
    rm: ReadModels,
    manifests: Manifests,
    clip: str | None,
    model: str | None,
    strategy: str | None,
    video: str | None,
    page_number: int,
) -> dict[str, Any]:
    """Everything the search template shows."""
    from projections.queries import similar_clips

    models, strategies = rm.embedding_options()
    video_id: UUID | None = parse_id(video, "video id") if video else None
    random_pick = not clip or clip == "random"
    clip_id = rm.random_embedded_clip(model, strategy, video_id) if random_pick else parse_id(clip, "clip id")
    results: list[dict[str, Any]] = []
    has_more = False
    main: dict[str, Any] | None = None
    if clip_id is not None:
        offset = (page_number - 1) * PAGE_SIZE
        with rm.tuple_connection() as conn:
            found: list[Any] = list(
                similar_clips(conn, rm.schema, clip_id, model, strategy, video_id, PAGE_SIZE + 1, offset)
            )
        has_more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        ids = [parse_id(_field(r, "clip_id", "id"), "clip id") for r in found]
        rows = rm.clips_by_id([clip_id, *ids])
        main = _card(manifests, rows.get(clip_id), clip_id, None, None)
        for row, cid in zip(found, ids, strict=True):
            score = _score(row)
            results.append(_card(manifests, rows.get(cid), cid, score, _field(row, "video_id")))
    return {
        "models": models,
        "strategies": strategies,
        "videos": rm.videos(),
        "model": model,
        "strategy": strategy,
        "video": str(video_id) if video_id else None,
        "clip": str(clip_id) if clip_id else None,
        "main": main,
        "results": results,
        "page_number": page_number,
        "has_more": has_more,
    }


def _card(
    manifests: Manifests, row: dict[str, Any] | None, clip_id: UUID, score: float | None, video_id: Any
) -> dict[str, Any]:
    thumb = None
    if row is not None:
        thumb = manifests.thumb(row.get("sprite_manifest"), (row["start_frame"] + row["end_frame"]) // 2, 200)
    return {
        "id": str(clip_id),
        "title": (row or {}).get("video_title"),
        "video_id": str((row or {}).get("video_id") or video_id or ""),
        "frames": f"{row['start_frame']}-{row['end_frame']}" if row else "",
        "state": (row or {}).get("state"),
        "score": None if score is None else round(max(0.0, min(1.0, score)) * 100, 1),
        "thumb_style": thumb.style if thumb else None,
    }
