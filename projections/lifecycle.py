"""What the read models share to follow a video's stages and a clip's state: the domain's own rules
(:data:`domain.video.VIDEO_STAGE_EVENTS`, :data:`domain.clip.CLIP_STAGE_EVENTS`,
:func:`domain.clip.clip_state_after`, :class:`domain.base.StageProgress`) applied to the JSON copies of
stage progress the read models keep, and the topics they follow, derived from the same tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from domain.base import StageProgress
from domain.clip import (
    CLIP_STAGE_EVENTS,
    CLIP_STATE_EVENTS,
    RETIRED,
    UNAPPROVING,
    Clip,
    clip_failed_stage,
)
from domain.stages import ClipStage, StageMove, VideoStage, VideoState
from domain.video import VIDEO_STAGE_EVENTS, video_current_stage, video_failed_stage
from domain.video import video_state as domain_video_state

Stages = dict[str, dict[str, Any]]

#: Video topics that move a stage: each stage's Started, result and Failed, and RetryRequested.
VIDEO_STAGE_TOPICS: frozenset[str] = frozenset(cls.TOPIC for cls in VIDEO_STAGE_EVENTS.moves)

#: Clip topics that move a stage: results, StageFailed and RetryRequested.
CLIP_STAGE_TOPICS: frozenset[str] = frozenset(cls.TOPIC for cls in CLIP_STAGE_EVENTS.moves)

#: Clip topics that can change a clip's state (what read models counting clips by state follow).
CLIP_STATE_TOPICS: frozenset[str] = frozenset(cls.TOPIC for cls in CLIP_STATE_EVENTS)


def fresh_stages(names: Iterable[str]) -> Stages:
    return {s: StageProgress().as_dict() for s in names}


_FRESH_VIDEO = fresh_stages(VideoStage)
_FRESH_CLIP = fresh_stages(ClipStage)


def video_stages() -> Stages:
    """Every video stage pending (a new dict; the progress dicts inside are shared: read models never
    change one in place, they replace it)."""
    return dict(_FRESH_VIDEO)


def clip_stages() -> Stages:
    """Every clip stage pending (shared progress dicts, as :func:`video_stages`)."""
    return dict(_FRESH_CLIP)


def _progress(stages: Stages) -> dict[str, StageProgress]:
    return {s: StageProgress.from_dict(p) for s, p in stages.items()}


#: Results of the domain's rules by what they depend on: a read model applies the same few moves
#: to the same few progress values over and over (each worked out anew cost ~8 % of the read side's
#: time). The values are shared, so never changed in place (the read models' convention anyway).
_MOVES: dict[tuple[Any, ...], dict[str, Any]] = {}
_VIDEO_STATES: dict[tuple[tuple[str, str], ...], tuple[VideoState, VideoStage | None, VideoStage | None]] = {}
_CLIP_FAILURES: dict[tuple[tuple[str, str], ...], ClipStage | None] = {}
_REMEMBERED = 4096


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _REMEMBERED:
        cache.clear()
    cache[key] = value


def _move(stages: Stages, stage: str, move: StageMove, event: Any) -> None:
    if stage not in stages:
        raise ValueError(f"unknown stage {stage!r}")
    p = stages[stage]
    # What StageProgress.moved reads of the event: the attempt of a start or failure, a failure's reason.
    key = (
        p["status"],
        p["attempts"],
        p["last_error"],
        move,
        getattr(event, "attempt", None),
        getattr(event, "reason", None),
    )
    moved = _MOVES.get(key)
    if moved is None:
        moved = StageProgress.from_dict(p).moved(move, event).as_dict()
        _remember(_MOVES, key, moved)
    stages[stage] = moved


def video_stage_change(stages: Stages, event: Any) -> tuple[VideoStage, StageMove] | None:
    """Move the stage ``event`` moves in ``stages`` as the video does; returns which and how (or
    ``None`` for an event that moves no stage)."""
    moved = VIDEO_STAGE_EVENTS.move(event)
    if moved is not None:
        _move(stages, *moved, event)
    return moved


def video_state(stages: Stages) -> tuple[VideoState, VideoStage | None, VideoStage | None, str | None]:
    """(state, current_stage, failed_stage, failure_reason) as :class:`domain.video.Video` derives them."""
    key = tuple([(s, p["status"]) for s, p in stages.items()])  # all they depend on
    known = _VIDEO_STATES.get(key)
    if known is None:
        progress = _progress(stages)
        known = (domain_video_state(progress), video_current_stage(progress), video_failed_stage(progress))
        _remember(_VIDEO_STATES, key, known)
    state, current, failed = known
    return state, current, failed, stages[failed]["last_error"] if failed else None


def clip_failure(stages: Stages) -> tuple[ClipStage | None, str | None]:
    """(failed_stage, failure_reason) of a clip: its first failed stage."""
    key = tuple([(s, p["status"]) for s, p in stages.items()])
    if key in _CLIP_FAILURES:
        failed = _CLIP_FAILURES[key]
    else:
        failed = clip_failed_stage(_progress(stages))
        _remember(_CLIP_FAILURES, key, failed)
    return failed, stages[failed]["last_error"] if failed else None


def is_live(state: str) -> bool:
    return state not in RETIRED


def clip_stage_change(stages: Stages, event: Any) -> bool:
    """Update a clip's stage progress for ``event`` as the clip does; True when it changed anything."""
    moved = CLIP_STAGE_EVENTS.move(event)
    if moved is not None:
        _move(stages, *moved, event)
    elif type(event) is Clip.DecisionUndone and event.undone in UNAPPROVING:
        stages.clear()
        stages.update(clip_stages())
    else:
        return False
    return True
