"""The pipeline's and review's words, declared once: the stages of a video and of a clip, how far a
stage has got, the states of a video and of a clip, the review decisions, and what made a clip or
changed a layout.

Each is a ``StrEnum`` whose values are the strings stored in events and read models; a member equals
its string (``ClipState.PENDING_REVIEW == "pending_review"``), so stored data never changes with the
names here. Which events move each stage is declared beside the events, once per aggregate:
:data:`domain.video.VIDEO_STAGE_EVENTS` and :data:`domain.clip.CLIP_STAGE_EVENTS` (a :class:`StageTable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Generic, TypeVar

from domain.errors import DomainError


class StageStatus(StrEnum):
    """How far one stage of an aggregate has got."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class VideoStage(StrEnum):
    """A video's pipeline stages, in the order they run."""

    DOWNLOAD = "download"
    PROXY = "proxy"
    SPRITES = "sprites"
    SHOTS = "shots"


class ClipStage(StrEnum):
    """An approved clip's pipeline stages, in the order they run."""

    KEYFRAMES = "keyframes"
    EMBEDDING = "embedding"
    EXPORT = "export"


#: Pipeline work no stage progress tracks: an archived clip's media purge after the grace period.
PURGE = "purge"

#: Every name pipeline work goes by (the work ledger's and the actors' ``stage``).
WORK_STAGES: tuple[str, ...] = (*VideoStage, *ClipStage, PURGE)


class VideoState(StrEnum):
    """Where a video is: ``submitted``, then ``<stage>_<status>`` of its first stage not done (a
    download not started yet is ``submitted``), ``clipped`` once every stage is done."""

    SUBMITTED = "submitted"
    DOWNLOAD_RUNNING = "download_running"
    DOWNLOAD_FAILED = "download_failed"
    PROXY_PENDING = "proxy_pending"
    PROXY_RUNNING = "proxy_running"
    PROXY_FAILED = "proxy_failed"
    SPRITES_PENDING = "sprites_pending"
    SPRITES_RUNNING = "sprites_running"
    SPRITES_FAILED = "sprites_failed"
    SHOTS_PENDING = "shots_pending"
    SHOTS_RUNNING = "shots_running"
    SHOTS_FAILED = "shots_failed"
    CLIPPED = "clipped"

    @classmethod
    def at(cls, stage: VideoStage | None, status: StageStatus) -> VideoState:
        """The state of a video whose first stage not done is ``stage`` (``None``: all are done)."""
        if stage is None:
            return cls.CLIPPED
        if stage == VideoStage.DOWNLOAD and status == StageStatus.PENDING:
            return cls.SUBMITTED
        return cls(f"{stage}_{status}")


class ClipState(StrEnum):
    """Where a clip is in review and, once approved, in the pipeline."""

    CREATED = "created"  # its sprites are not ready yet
    PENDING_REVIEW = "pending_review"
    SKIPPED = "skipped"  # put off: it comes back after the clips pending review
    APPROVED = "approved"  # approved alone or grouped
    KEYFRAMED = "keyframed"
    EMBEDDED = "embedded"
    EXPORTED = "exported"
    ARCHIVED = "archived"
    SPLIT = "split"  # replaced by two clips
    MERGED = "merged"  # replaced, with its neighbour, by one clip
    RETIRED = "retired"  # made by a split or merge that was undone


class Decision(StrEnum):
    """A reviewer's decision on a clip (what ``DecisionUndone.undone`` names)."""

    APPROVE = "approve"
    SKIP = "skip"
    ARCHIVE = "archive"
    GROUP = "group"
    SPLIT = "split"
    MERGE = "merge"


class ClipOrigin(StrEnum):
    """What made a clip."""

    SHOTS = "shots"  # detected shots
    SPLIT = "split"  # a split of another clip
    MERGE = "merge"  # a merge of two clips


class LayoutChange(StrEnum):
    """What changed a video's clip layout (``LayoutChanged.change``)."""

    SPLIT = "split"
    MERGE = "merge"
    SPLIT_UNDONE = "split_undone"
    MERGE_UNDONE = "merge_undone"


class StageMove(StrEnum):
    """What an event does to a stage's progress."""

    START = "start"
    DONE = "done"
    FAIL = "fail"
    RETRY = "retry"


@dataclass(frozen=True)
class StageEvents:
    """The events that move one stage: its ``…Started`` (``None`` where the stage records no start),
    its result, its ``…Failed``."""

    started: type[Any] | None
    done: type[Any]
    failed: type[Any]


S = TypeVar("S", bound=StrEnum)


class StageTable(Generic[S]):
    """One aggregate's stages and the events that move each: the one place that pairs them.

    An event class serving several stages (a clip's ``StageFailed``) names its stage in its ``stage``
    field, as ``retry`` (the aggregate's ``RetryRequested``) does."""

    def __init__(self, stages: type[S], events: Mapping[S, StageEvents], retry: type[Any]) -> None:
        if list(events) != list(stages):
            raise DomainError(f"every {stages.__name__} needs one entry, in order; got {list(events)}")
        self.stages = stages
        self.events: dict[S, StageEvents] = dict(events)
        self.retry = retry
        moves: dict[type[Any], tuple[S | None, StageMove]] = {retry: (None, StageMove.RETRY)}
        for stage, each in self.events.items():
            for cls, move in (
                (each.started, StageMove.START),
                (each.done, StageMove.DONE),
                (each.failed, StageMove.FAIL),
            ):
                if cls is None:
                    continue
                known = moves.get(cls)
                if known is not None and known[1] is not move:
                    raise DomainError(f"{cls.__name__} cannot both {known[1]} and {move} a stage")
                if known is not None and "stage" not in {f.name for f in fields(cls)}:
                    raise DomainError(f"{cls.__name__} serves two stages but names neither")
                moves[cls] = (None, move) if known is not None else (stage, move)
        #: Each stage event → its stage (``None``: the event's ``stage`` field says) and move.
        self.moves = moves

    def move(self, event: Any) -> tuple[S, StageMove] | None:
        """The stage ``event`` moves and how, or ``None`` for an event that moves no stage."""
        found = self.moves.get(type(event))
        if found is None:
            return None
        stage, move = found
        return (self.stages(event.stage) if stage is None else stage), move
