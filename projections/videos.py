"""``rm_videos``: one row per video, where it is in the pipeline, and how many live clips it has and how
many of them wait for review.

Clip events do not carry their video id, so this projection keeps a private table
``rm_videos_clip_state`` (clip → video, state) from which ``clip_count`` and ``pending_count`` are
kept right through splits, merges and undo: at the end of each batch, every clip whose liveness or
pending-ness changed moves its video's counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.clip import Clip, clip_state_after
from domain.stages import ClipState
from domain.video import Video
from projections.base import Cursor, EventRecord, Projection, RowCache
from projections.lifecycle import (
    CLIP_STATE_TOPICS,
    VIDEO_STAGE_TOPICS,
    is_live,
    video_stage_change,
    video_stages,
    video_state,
)

COLUMNS = (
    "id",
    "source",
    "title",
    "state",
    "current_stage",
    "failed_stage",
    "failure_reason",
    "stages",
    "media",
    "frame_count",
    "fps",
    "width",
    "height",
    "duration",
    "clip_count",
    "pending_count",
    "submitted_by",
    "submitted_at",
    "updated_at",
    "version",
)

CLIP_STATE_DDL = """
    CREATE TABLE IF NOT EXISTS {t} (
        clip_id uuid PRIMARY KEY,
        video_id uuid NOT NULL,
        state text NOT NULL
    )"""

_MEDIA = {
    Video.Downloaded.TOPIC: "source",
    Video.ProxyCreated.TOPIC: "proxy",
    Video.SpritesCreated.TOPIC: "sprites",
}


def _counts(clip: dict[str, Any] | None) -> tuple[int, int]:
    if clip is None or not is_live(clip["state"]):
        return 0, 0
    return 1, int(clip["state"] == ClipState.PENDING_REVIEW)


class VideosProjection(Projection):
    name = "videos"
    private_tables = {"rm_videos_clip_state": CLIP_STATE_DDL}

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.videos = RowCache(self.table("rm_videos"), "id", COLUMNS)
        self.clips = RowCache(self.table("rm_videos_clip_state"), "clip_id", ("clip_id", "video_id", "state"))
        self.caches = [self.videos, self.clips]
        self._handlers = {
            Video.Created.TOPIC: self._submitted,
            Video.LayoutChanged.TOPIC: self._video_changed,
            Clip.Created.TOPIC: self._clip_created,
        }
        for topic in VIDEO_STAGE_TOPICS:
            self._handlers[topic] = self._video_changed
        for topic in CLIP_STATE_TOPICS:
            self._handlers[topic] = self._clip_changed

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:
        self.clips.load(cur, [e.originator_id for e in events if e.topic in CLIP_STATE_TOPICS])
        video_ids = [e.originator_id for e in events if e.kind == "video"]
        video_ids += [c["video_id"] for c in self.clips.rows.values() if c is not None]
        video_ids += [
            e.event.video_id for e in events if e.topic == Clip.Created.TOPIC and e.event is not None
        ]
        self.videos.load(cur, video_ids)

    def flush(self, cur: Cursor) -> None:
        for before, after in self.clips.changes():
            clip = after or before
            assert clip is not None
            (live_before, pending_before), (live_after, pending_after) = _counts(before), _counts(after)
            if (live_before, pending_before) == (live_after, pending_after):
                continue
            video = self.videos.edit(clip["video_id"])
            video["clip_count"] += live_after - live_before
            video["pending_count"] += pending_after - pending_before
        self.clips.flush(cur)
        self.videos.flush(cur)

    # -- handlers --------------------------------------------------------------------------------------

    def _submitted(self, record: EventRecord) -> None:
        e: Any = record.event
        stages = video_stages()
        state, current, failed, reason = video_state(stages)
        self.videos.put(
            record.originator_id,
            {
                "id": record.originator_id,
                "source": e.source,
                "title": None,
                "state": state,
                "current_stage": current,
                "failed_stage": failed,
                "failure_reason": reason,
                "stages": stages,
                "media": {},
                "frame_count": None,
                "fps": None,
                "width": None,
                "height": None,
                "duration": None,
                "clip_count": 0,
                "pending_count": 0,
                "submitted_by": e.actor,
                "submitted_at": e.timestamp,
                "updated_at": e.timestamp,
                "version": record.originator_version,
            },
        )

    def _video_changed(self, record: EventRecord) -> None:
        e: Any = record.event
        row = self.videos.edit(record.originator_id)
        stages = dict(row["stages"])
        video_stage_change(stages, e)
        row["stages"] = stages
        row["state"], row["current_stage"], row["failed_stage"], row["failure_reason"] = video_state(stages)
        if record.topic in _MEDIA:
            row["media"] = {
                **row["media"],
                _MEDIA[record.topic]: e.media_key if hasattr(e, "media_key") else e.manifest_key,
            }
        if record.topic == Video.Downloaded.TOPIC:
            row.update(
                title=e.title,
                frame_count=e.frame_count,
                fps=e.fps,
                width=e.width,
                height=e.height,
                duration=e.duration,
            )
        if record.topic == Video.ProxyCreated.TOPIC and e.frame_count is not None:
            row["frame_count"] = e.frame_count  # clips index the proxy when its count differs
        row["updated_at"] = e.timestamp
        row["version"] = record.originator_version

    def _clip_created(self, record: EventRecord) -> None:
        e: Any = record.event
        self.clips.put(
            record.originator_id,
            {"clip_id": record.originator_id, "video_id": e.video_id, "state": ClipState.CREATED},
        )
        self._touch(e.video_id, e.timestamp)

    def _clip_changed(self, record: EventRecord) -> None:
        e: Any = record.event
        clip = self.clips.edit(record.originator_id)
        state = clip_state_after(clip["state"], e)
        if state != clip["state"]:
            clip["state"] = state
            self._touch(clip["video_id"], e.timestamp)

    def _touch(self, video_id: Any, timestamp: Any) -> None:
        video = self.videos.edit(video_id)
        video["updated_at"] = max(video["updated_at"], timestamp)
