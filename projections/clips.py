"""``rm_clips``: one row per clip ever created (retired ones too, with ``live = false``): its frames,
review state, group links, pipeline results and failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.clip import UNAPPROVING, Clip, clip_state_after
from domain.stages import ClipState, Decision
from projections.base import Cursor, EventRecord, Projection, RowCache
from projections.lifecycle import (
    CLIP_STAGE_TOPICS,
    CLIP_STATE_TOPICS,
    clip_failure,
    clip_stage_change,
    clip_stages,
    is_live,
)

COLUMNS = (
    "id",
    "video_id",
    "start_frame",
    "end_frame",
    "state",
    "live",
    "origin",
    "parent_ids",
    "grouped_with",
    "sprite_manifest",
    "keyframes",
    "export_key",
    "failed_stage",
    "failure_reason",
    "last_actor",
    "stages",
    "decisions",
    "created_at",
    "updated_at",
    "version",
)

_DECISION = {
    Clip.Approved.TOPIC: Decision.APPROVE,
    Clip.Skipped.TOPIC: Decision.SKIP,
    Clip.Archived.TOPIC: Decision.ARCHIVE,
    Clip.Grouped.TOPIC: Decision.GROUP,
    Clip.Split.TOPIC: Decision.SPLIT,
    Clip.Merged.TOPIC: Decision.MERGE,
}


class ClipsProjection(Projection):
    name = "clips"

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.rows = RowCache(self.table("rm_clips"), "id", COLUMNS)
        self.caches = [self.rows]
        self._handlers = {Clip.Created.TOPIC: self._created}
        for topic in (
            *CLIP_STATE_TOPICS,
            *CLIP_STAGE_TOPICS,
            Clip.GroupJoined.TOPIC,
            Clip.GroupLeft.TOPIC,
            Clip.MediaPurged.TOPIC,
        ):
            self._handlers[topic] = self._changed

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:
        self.rows.load(cur, [e.originator_id for e in events if e.topic in self._handlers])

    def flush(self, cur: Cursor) -> None:
        self.rows.flush(cur)

    def _created(self, record: EventRecord) -> None:
        e: Any = record.event
        self.rows.put(
            record.originator_id,
            {
                "id": record.originator_id,
                "video_id": e.video_id,
                "start_frame": e.start,
                "end_frame": e.end,
                "state": ClipState.CREATED,
                "live": True,
                "origin": e.origin,
                "parent_ids": list(e.parent_ids),
                "grouped_with": [],
                "sprite_manifest": None,
                "keyframes": {},
                "export_key": None,
                "failed_stage": None,
                "failure_reason": None,
                "last_actor": e.actor,
                "stages": clip_stages(),
                "decisions": [],
                "created_at": e.timestamp,
                "updated_at": e.timestamp,
                "version": record.originator_version,
            },
        )

    def _changed(self, record: EventRecord) -> None:
        e: Any = record.event
        topic = record.topic
        row = self.rows.edit(record.originator_id)
        previous_state = row["state"]
        row["state"] = clip_state_after(previous_state, e)
        row["live"] = is_live(row["state"])
        if topic in _DECISION:
            decision: dict[str, Any] = {"kind": _DECISION[topic], "previous_state": previous_state}
            if hasattr(e, "with_clip_id"):
                decision["with_clip_id"] = str(e.with_clip_id)
            row["decisions"] = [*row["decisions"], decision]
        if (
            topic in (Clip.Grouped.TOPIC, Clip.GroupJoined.TOPIC)
            and e.with_clip_id not in row["grouped_with"]
        ):
            row["grouped_with"] = [*row["grouped_with"], e.with_clip_id]
        elif topic == Clip.GroupLeft.TOPIC:
            row["grouped_with"] = [c for c in row["grouped_with"] if c != e.with_clip_id]
        elif topic == Clip.SpriteReady.TOPIC:
            row["sprite_manifest"] = e.manifest_key
        elif topic == Clip.DecisionUndone.TOPIC:
            self._undone(row, e)
        elif topic == Clip.KeyframesExtracted.TOPIC:
            row["keyframes"] = {"strategy": e.strategy, "keys": list(e.keys), "frames": list(e.frames)}
        elif topic == Clip.Exported.TOPIC:
            row["export_key"] = e.media_key
        elif topic == Clip.MediaPurged.TOPIC:
            row["keyframes"] = {}
            row["export_key"] = None
        stages = dict(row["stages"])
        if clip_stage_change(stages, e):
            row["stages"] = stages
            row["failed_stage"], row["failure_reason"] = clip_failure(stages)
        row["last_actor"] = e.actor
        row["updated_at"] = e.timestamp
        row["version"] = record.originator_version

    @staticmethod
    def _undone(row: dict[str, Any], e: Any) -> None:
        decisions = list(row["decisions"])
        last = decisions.pop() if decisions else {"kind": e.undone}
        row["decisions"] = decisions
        if last.get("kind") == Decision.GROUP and last.get("with_clip_id"):
            row["grouped_with"] = [c for c in row["grouped_with"] if str(c) != last["with_clip_id"]]
        if e.undone in UNAPPROVING:
            row["keyframes"] = {}
            row["export_key"] = None
