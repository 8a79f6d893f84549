"""Review decisions that change more than one aggregate: split, merge, group and their undo.

Each function takes the aggregates it touches, checks every rule before triggering anything, and
returns the aggregates whose pending events must be saved together in one atomic save.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from domain.base import HeatersAggregate
from domain.clip import Clip
from domain.errors import Conflict, DomainError, person, short_id, when
from domain.partition import Segment, merge_layout, replace_segments, split_layout
from domain.stages import ClipOrigin, Decision, LayoutChange
from domain.video import Video


def _check_belongs(video: Video, *clips: Clip) -> None:
    for clip in clips:
        if clip.video_id != video.id:
            raise DomainError(f"clip {clip.id} does not belong to video {video.id}")


def _new_clip(video: Video, segment: Segment, origin: str, parents: list[UUID], actor: str) -> Clip:
    clip = Clip.create(segment.clip_id, video.id, segment.start, segment.end, origin, actor, parents)
    if video.media.get("sprites"):
        clip.mark_sprite_ready(video.media["sprites"], actor)
    return clip


def create_clips_for_shots(video: Video, layout: list[Segment], actor: str) -> list[Clip]:
    """The clips a fresh layout of detected shots makes; pending review since sprites exist."""
    return [_new_clip(video, segment, ClipOrigin.SHOTS, [], actor) for segment in layout]


def split_clip(
    video: Video,
    clip: Clip,
    frame: int,
    left_id: UUID,
    right_id: UUID,
    min_clip_frames: int,
    actor: str,
) -> list[HeatersAggregate]:
    """Split ``clip`` at ``frame`` (the first frame of the right-hand part)."""
    _check_belongs(video, clip)
    clip.require_reviewable(Decision.SPLIT, actor)
    clip.require_ungrouped(Decision.SPLIT, actor)
    layout = split_layout(video.layout, video.frame_count, clip.id, frame, left_id, right_id, min_clip_frames)
    clip.split_into(frame, left_id, right_id, actor)
    video.change_layout(LayoutChange.SPLIT, clip.id, layout, actor, frame=frame)
    left = _new_clip(video, Segment(clip.start, frame, left_id), ClipOrigin.SPLIT, [clip.id], actor)
    right = _new_clip(video, Segment(frame, clip.end, right_id), ClipOrigin.SPLIT, [clip.id], actor)
    return [video, clip, left, right]


def merge_clips(video: Video, clip: Clip, other: Clip, merged_id: UUID, actor: str) -> list[HeatersAggregate]:
    """Merge ``clip`` with its adjacent clip ``other`` into one new clip."""
    if clip.video_id != other.video_id:
        raise DomainError(
            f"cannot merge clip {clip.id} with clip {other.id}: they belong to different videos"
        )
    _check_belongs(video, clip, other)
    clip.check_merge(other, actor)
    layout = merge_layout(video.layout, video.frame_count, clip.id, other.id, merged_id)
    clip.merge_into(other, merged_id, actor)
    video.change_layout(LayoutChange.MERGE, clip.id, layout, actor)
    first, second = sorted([clip, other], key=lambda c: c.start)
    merged = _new_clip(
        video, Segment(first.start, second.end, merged_id), ClipOrigin.MERGE, [first.id, second.id], actor
    )
    return [video, clip, other, merged]


def group_clips(clip: Clip, other: Clip, actor: str) -> list[HeatersAggregate]:
    """Approve ``clip`` as grouped with ``other`` (a link both clips record)."""
    clip.group_with(other, actor)
    return [clip, other]


def undo_target(clip: Clip) -> UUID:
    """The clip whose last decision an undo on ``clip`` reverses.

    A live clip with no decision of its own that was made by a split or merge undoes that split or merge
    (it is what the reviewer last did to these frames)."""
    if clip.decisions or clip.origin == ClipOrigin.SHOTS or not clip.is_live:
        return clip.id
    return clip.parent_ids[0]


def related_clip_ids(clip: Clip) -> list[UUID]:
    """The other clips an undo of ``clip``'s last decision needs loaded."""
    decision = clip.last_decision
    if decision is None:
        return []
    kind = decision["kind"]
    if kind == Decision.SPLIT:
        return list(decision["into"])
    if kind == Decision.MERGE:
        return [decision["with_clip_id"], decision["into"]]
    if kind == Decision.GROUP:
        return [decision["with_clip_id"]]
    return []


def _refuse_if_decided(undone: str, clip: Clip, other: Clip, actor: str) -> None:
    """An undo never reverses a later decision someone made on a clip it would remove."""
    doing = f"undo the {undone} of clip {short_id(clip.id)}"
    if not other.is_live or other.decisions:
        raise other.refusal(doing, actor, "it depends on that")
    if other.grouped_with:  # a reviewer grouped another clip with it: removing it would break the group
        partners = ", ".join(short_id(c) for c in sorted(other.grouped_with))
        raise other.refusal(doing, actor, f"clip {partners} is grouped with it; undo that grouping first")


def check_author(clip: Clip, actor: str, any_author: bool = False) -> None:
    """Only a decision's author (or ops, ``any_author``) undoes it."""
    decision = clip.last_decision
    if decision is None:
        raise DomainError(f"clip {short_id(clip.id)} has nothing to undo (state: {clip.state})")
    by, at = decision.get("by"), decision.get("at")
    if any_author or by == actor:
        return
    raise Conflict(
        f"cannot undo the {decision['kind']} of clip {short_id(clip.id)}: {person(by)} made it at {when(at)}; "
        f"only {person(by)} or ops can undo it",
        clip.id,
        clip.state,
        by,
        at,
    )


def undo_last_decision(
    video: Video, clip: Clip, related: Mapping[UUID, Clip], actor: str, *, any_author: bool = False
) -> list[HeatersAggregate]:
    """Reverse ``clip``'s last decision by compensating events on every aggregate it touched. Only its
    author may, or ops (``any_author``); the events name whoever undid it."""
    _check_belongs(video, clip)
    check_author(clip, actor, any_author)
    decision = clip.last_decision
    assert decision is not None
    kind = decision["kind"]
    if kind == Decision.SPLIT:
        return _undo_split(video, clip, [related[c] for c in decision["into"]], actor)
    if kind == Decision.MERGE:
        return _undo_merge(video, clip, related[decision["with_clip_id"]], related[decision["into"]], actor)
    if kind == Decision.GROUP:
        other = related[decision["with_clip_id"]]
        if not other.is_live:
            raise other.refusal(f"undo the grouping of clip {short_id(clip.id)}", actor, "it depends on that")
        clip.undo_decision(actor)
        other.leave_group(clip.id, actor)
        return [clip, other]
    if not clip.is_live:
        raise clip.refusal(f"undo the {kind} of clip {short_id(clip.id)}", actor)
    clip.undo_decision(actor)
    return [clip]


def _undo_split(video: Video, clip: Clip, children: list[Clip], actor: str) -> list[HeatersAggregate]:
    for child in children:
        _refuse_if_decided(Decision.SPLIT, clip, child, actor)
    layout = replace_segments(
        video.layout,
        video.frame_count,
        remove=[c.id for c in children],
        add=[Segment(clip.start, clip.end, clip.id)],
    )
    clip.undo_decision(actor)
    for child in children:
        child.retire(f"the split of clip {clip.id} was undone", actor)
    video.change_layout(LayoutChange.SPLIT_UNDONE, clip.id, layout, actor)
    return [video, clip, *children]


def _undo_merge(video: Video, clip: Clip, partner: Clip, merged: Clip, actor: str) -> list[HeatersAggregate]:
    _refuse_if_decided(Decision.MERGE, clip, merged, actor)
    layout = replace_segments(
        video.layout,
        video.frame_count,
        remove=[merged.id],
        add=[Segment(c.start, c.end, c.id) for c in (clip, partner)],
    )
    clip.undo_decision(actor)
    partner.undo_decision(actor)
    merged.retire(f"the merge of clips {clip.id} and {partner.id} was undone", actor)
    video.change_layout(LayoutChange.MERGE_UNDONE, clip.id, layout, actor)
    return [video, clip, partner, merged]
