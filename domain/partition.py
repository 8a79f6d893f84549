"""The clip layout of a video and its invariant.

**Invariant:** the live clips of a video partition ``[0, frame_count)`` exactly: sorted by start, the
first starts at 0, each starts where the previous ends, the last ends at ``frame_count``, and none is
empty. Every change of layout (shots detected, split, merge, and their undo) goes through the pure
functions here, which build the new layout and check the invariant before any event is triggered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.errors import DomainError, PartitionError


@dataclass(frozen=True, order=True)
class Segment:
    """One clip's frame range ``[start, end)`` within its video."""

    start: int
    end: int
    clip_id: UUID

    @property
    def length(self) -> int:
        return self.end - self.start

    def __deepcopy__(self, memo: dict[int, Any]) -> Segment:
        """Immutable: a copy of a video (the aggregate cache copies each one it hands out) shares it."""
        return self

    def as_payload(self) -> dict[str, Any]:
        return {"clip_id": self.clip_id, "start": self.start, "end": self.end}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Segment:
        return cls(start=int(payload["start"]), end=int(payload["end"]), clip_id=payload["clip_id"])


def check_partition(segments: Sequence[Segment], frame_count: int) -> None:
    """Raise :class:`PartitionError` unless ``segments`` partition ``[0, frame_count)`` exactly."""
    if frame_count <= 0:
        raise PartitionError(f"a video needs at least one frame, not {frame_count}")
    if not segments:
        raise PartitionError(f"no clips cover [0, {frame_count})")
    position = 0
    seen: set[UUID] = set()
    for segment in sorted(segments):
        if segment.clip_id in seen:
            raise PartitionError(f"clip {segment.clip_id} appears twice in the layout")
        seen.add(segment.clip_id)
        if segment.start < position:
            raise PartitionError(f"clip {segment.clip_id} overlaps frames [{segment.start}, {position})")
        if segment.start > position:
            raise PartitionError(f"frames [{position}, {segment.start}) are covered by no clip")
        if segment.end <= segment.start:
            raise PartitionError(f"clip {segment.clip_id} is empty: [{segment.start}, {segment.end})")
        position = segment.end
    if position != frame_count:
        raise PartitionError(f"the last clip ends at frame {position}, not at frame_count {frame_count}")


def layout_from_cuts(cuts: Iterable[int], frame_count: int, clip_ids: Sequence[UUID]) -> list[Segment]:
    """The layout given by shot boundaries: each cut is the first frame of a new shot."""
    boundaries = sorted({int(c) for c in cuts if 0 < int(c) < frame_count})
    starts = [0, *boundaries]
    ends = [*boundaries, frame_count]
    if len(clip_ids) != len(starts):
        raise DomainError(f"{len(starts)} shots need {len(starts)} clip ids, got {len(clip_ids)}")
    layout = [Segment(s, e, cid) for s, e, cid in zip(starts, ends, clip_ids, strict=True)]
    check_partition(layout, frame_count)
    return layout


def find(segments: Sequence[Segment], clip_id: UUID) -> Segment:
    for segment in segments:
        if segment.clip_id == clip_id:
            return segment
    raise DomainError(f"clip {clip_id} is not a live clip of this video")


def split_layout(
    segments: Sequence[Segment],
    frame_count: int,
    clip_id: UUID,
    frame: int,
    left_id: UUID,
    right_id: UUID,
    min_clip_frames: int,
) -> list[Segment]:
    """Replace one clip by two that meet at ``frame`` (the first frame of the right-hand clip)."""
    target = find(segments, clip_id)
    if not target.start < frame < target.end:
        raise DomainError(
            f"cannot split clip {clip_id} at frame {frame}: "
            f"the frame must lie strictly inside ({target.start}, {target.end})"
        )
    if frame - target.start < min_clip_frames or target.end - frame < min_clip_frames:
        raise DomainError(
            f"cannot split clip {clip_id} at frame {frame}: each part must keep at least "
            f"{min_clip_frames} frames (clip is [{target.start}, {target.end}))"
        )
    layout = [s for s in segments if s.clip_id != clip_id]
    layout += [Segment(target.start, frame, left_id), Segment(frame, target.end, right_id)]
    layout.sort()
    check_partition(layout, frame_count)
    return layout


def merge_layout(
    segments: Sequence[Segment], frame_count: int, first_id: UUID, second_id: UUID, merged_id: UUID
) -> list[Segment]:
    """Replace two adjacent clips by one covering both."""
    if first_id == second_id:
        raise DomainError(f"cannot merge clip {first_id} with itself")
    a, b = sorted([find(segments, first_id), find(segments, second_id)])
    if a.end != b.start:
        raise DomainError(
            f"cannot merge clips {a.clip_id} [{a.start}, {a.end}) and {b.clip_id} [{b.start}, {b.end}): "
            "they are not adjacent"
        )
    layout = [s for s in segments if s.clip_id not in (first_id, second_id)]
    layout.append(Segment(a.start, b.end, merged_id))
    layout.sort()
    check_partition(layout, frame_count)
    return layout


def replace_segments(
    segments: Sequence[Segment], frame_count: int, remove: Iterable[UUID], add: Iterable[Segment]
) -> list[Segment]:
    """Swap clips for others covering the same frames (how an undo restores a layout)."""
    removed = set(remove)
    missing = removed - {s.clip_id for s in segments}
    if missing:
        raise DomainError(f"clips {sorted(map(str, missing))} are not live clips of this video")
    layout = sorted([s for s in segments if s.clip_id not in removed] + list(add))
    check_partition(layout, frame_count)
    return layout
