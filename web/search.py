"""The similarity search page: neighbours of a clip by cosine distance, with filters, a sort order
(most similar first, or least) and pages of 12. Result cards carry what the hover player needs."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from commands.errors import NotFound, parse_id
from domain.errors import short_id
from domain.stages import ClipState
from projections import views
from web.media import Manifests
from web.readmodels import ReadModels

log = logging.getLogger(__name__)

PAGE_SIZE = 12
#: ``desc``: most similar first (nearest neighbours); ``asc``: least similar first (nearest to the negated
#: vector); both through the HNSW index.
SORTS = ("desc", "asc")
#: Width in pixels of a result's sprite thumbnail.
THUMB_WIDTH = 200


def parse_sort(sort: str | None) -> str:
    if not sort:
        return "desc"
    if sort not in SORTS:
        raise ValueError(f"sort must be desc (most similar first) or asc (least similar first), got {sort!r}")
    return sort


def search_page(
    rm: ReadModels,
    manifests: Manifests,
    clip: str | None,
    model: str | None,
    strategy: str | None,
    video: str | None,
    page_number: int,
    sort: str | None = None,
) -> dict[str, Any]:
    """Everything the search template (and ``GET /api/search``) shows."""
    from projections.queries import SimilarClip, similar_clips

    order = parse_sort(sort)
    models, strategies = rm.embedding_options()
    video_id: UUID | None = parse_id(video, "video id") if video else None
    random_pick = not clip or clip == "random"
    clip_id = (
        rm.read(views.random_embedded_clip, model, strategy, video_id)
        if random_pick
        else parse_id(clip, "clip id")
    )
    results: list[dict[str, Any]] = []
    has_more = False
    main: dict[str, Any] | None = None
    why_none: str | None = None
    if clip_id is not None and not random_pick:
        row = rm.clip(clip_id)
        if row is None:
            raise NotFound("clip", clip_id)
        why_none = no_embedding_reason(row, rm.embeddings_of(clip_id), model, strategy)
    if clip_id is not None:
        offset = (page_number - 1) * PAGE_SIZE
        found: list[SimilarClip]
        with rm.tuple_connection() as conn:
            found = list(
                similar_clips(
                    conn,
                    rm.schema,
                    clip_id,
                    model,
                    strategy,
                    video_id,
                    PAGE_SIZE + 1,
                    offset,
                    least=order == "asc",
                )
            )
        has_more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        ids = [r.clip_id for r in found]
        rows = rm.clips_by_id([clip_id, *ids])
        main = _card(manifests, rows.get(clip_id), clip_id, None, None)
        for similar in found:
            results.append(
                _card(manifests, rows.get(similar.clip_id), similar.clip_id, similar.score, similar.video_id)
            )
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
        "sort": order,
        "why_none": why_none,
    }


def no_embedding_reason(
    row: dict[str, Any], embedded: list[tuple[str, str]], model: str | None, strategy: str | None
) -> str | None:
    """Why a clip has no embedding to search from (with these filters), or None when it has one."""
    if any((model is None or m == model) and (strategy is None or s == strategy) for m, s in embedded):
        return None
    name = f"clip {short_id(row['id'])}"
    if embedded:
        have = ", ".join(f"{m} / {s}" for m, s in embedded)
        return f"{name} has no embedding with these filters; it has {have}"
    if row.get("failed_stage"):
        return (
            f"{name} has no embedding: its {row['failed_stage']} stage failed: {row.get('failure_reason')} "
            "(ops can retry it on /ops)"
        )
    state = str(row["state"])
    if not row.get("live"):
        return f"{name} has no embedding: it was {state} (replaced by other clips)"
    if state in (ClipState.APPROVED, ClipState.KEYFRAMED):
        return f"{name} has no embedding yet: it is {state}, its embedding is on the way"
    if state in (ClipState.EMBEDDED, ClipState.EXPORTED):
        return f"{name} has no embedding in the read models yet (it is {state})"
    return f"{name} has no embedding: only approved clips are embedded, and it is {state.replace('_', ' ')}"


def _card(
    manifests: Manifests, row: dict[str, Any] | None, clip_id: UUID, score: float | None, video_id: Any
) -> dict[str, Any]:
    thumb = None
    play: dict[str, Any] | None = None
    if row is not None:
        key = row.get("sprite_manifest")
        thumb = manifests.thumb(key, (row["start_frame"] + row["end_frame"]) // 2, THUMB_WIDTH)
        player = manifests.player(key)
        if player is not None and thumb is not None:
            play = {
                **player, "start": int(row["start_frame"]), "end": int(row["end_frame"]),
                "width": thumb.width, "height": thumb.height,
            }  # fmt: skip
    return {
        "id": str(clip_id),
        "title": (row or {}).get("video_title"),
        "video_id": str((row or {}).get("video_id") or video_id or ""),
        "frames": f"{row['start_frame']}-{row['end_frame']}" if row else "",
        "state": (row or {}).get("state"),
        "score": None if score is None else round(max(0.0, min(1.0, score)) * 100, 1),
        "thumb_style": thumb.style if thumb else None,
        "play": play,
    }
