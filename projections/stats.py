"""``rm_stage_stats``: counts for the ops page. Rows (kind, state, count):

- ``video`` / a video state (``submitted``, ``download_running``, ``proxy_failed``, …, ``clipped``): videos
  in that state now;
- ``clip`` / a clip state (``pending_review``, ``approved``, ``split``, …): clips in that state now;
- ``video_stage_failed`` / ``clip_stage_failed`` / a stage: videos or clips whose stage is failed now;
- ``video_failures`` / ``clip_failures`` / a stage: failure events ever recorded for that stage.

Rows with a zero count are removed. A private table ``rm_stage_stats_members`` remembers each video's
and clip's state and stage progress so counters can be moved from its old to its new state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from domain.clip import Clip, clip_state_after
from domain.stages import ClipState, StageMove, StageStatus
from domain.video import Video
from projections.base import BatchList, Cursor, EventRecord, Projection, RowCache
from projections.lifecycle import (
    CLIP_STAGE_TOPICS,
    CLIP_STATE_TOPICS,
    VIDEO_STAGE_TOPICS,
    clip_stage_change,
    clip_stages,
    video_stage_change,
    video_stages,
    video_state,
)

MEMBERS_DDL = """
    CREATE TABLE IF NOT EXISTS {t} (
        id uuid PRIMARY KEY,
        kind text NOT NULL,
        state text NOT NULL,
        stages jsonb NOT NULL
    )"""

#: The clip topics this projection follows: state changes, and failures and retries for the counts.
_CLIP_TOPICS = CLIP_STATE_TOPICS | CLIP_STAGE_TOPICS


def _keys(member: dict[str, Any] | None) -> list[tuple[str, str]]:
    if member is None:
        return []
    kind = member["kind"]
    keys = [(kind, member["state"])]
    keys += [
        (f"{kind}_stage_failed", s) for s, p in member["stages"].items() if p["status"] == StageStatus.FAILED
    ]
    return keys


class StatsProjection(Projection):
    name = "stats"
    private_tables = {"rm_stage_stats_members": MEMBERS_DDL}

    def __init__(self, suffix: str = "") -> None:
        super().__init__(suffix)
        self.members = RowCache(self.table("rm_stage_stats_members"), "id", ("id", "kind", "state", "stages"))
        self.failures: BatchList[tuple[str, str]] = BatchList()
        self.caches = [self.members, self.failures]
        self._handlers = {
            Video.Created.TOPIC: self._video_created,
            Clip.Created.TOPIC: self._clip_created,
        }
        for topic in VIDEO_STAGE_TOPICS:
            self._handlers[topic] = self._video_changed
        for topic in _CLIP_TOPICS:
            self._handlers[topic] = self._clip_changed

    def load(self, cur: Cursor, events: Sequence[EventRecord]) -> None:
        self.members.load(cur, [e.originator_id for e in events if e.topic in self._handlers])

    def _video_created(self, record: EventRecord) -> None:
        stages = video_stages()
        self.members.put(
            record.originator_id,
            {"id": record.originator_id, "kind": "video", "state": video_state(stages)[0], "stages": stages},
        )

    def _video_changed(self, record: EventRecord) -> None:
        e: Any = record.event
        member = self.members.edit(record.originator_id)
        stages = dict(member["stages"])
        moved = video_stage_change(stages, e)
        if moved is not None and moved[1] is StageMove.FAIL:
            self.failures.append(("video_failures", moved[0]))
        member["stages"] = stages
        member["state"] = video_state(stages)[0]

    def _clip_created(self, record: EventRecord) -> None:
        self.members.put(
            record.originator_id,
            {"id": record.originator_id, "kind": "clip", "state": ClipState.CREATED, "stages": clip_stages()},
        )

    def _clip_changed(self, record: EventRecord) -> None:
        e: Any = record.event
        member = self.members.edit(record.originator_id)
        member["state"] = clip_state_after(member["state"], e)
        stages = dict(member["stages"])
        if clip_stage_change(stages, e):
            member["stages"] = stages
        if record.topic == Clip.StageFailed.TOPIC:
            self.failures.append(("clip_failures", e.stage))

    def flush(self, cur: Cursor) -> None:
        deltas: Counter[tuple[str, str]] = Counter(self.failures)
        for before, after in self.members.changes():
            deltas.subtract(_keys(before))
            deltas.update(_keys(after))
        self.members.flush(cur)
        self.failures.clear()
        changed = [(kind, state, n) for (kind, state), n in deltas.items() if n]
        if not changed:
            return
        table = sql.Identifier(self.table("rm_stage_stats"))
        cur.executemany(
            sql.SQL(
                "INSERT INTO {t} AS s (kind, state, count) VALUES (%s, %s, %s) "
                "ON CONFLICT (kind, state) DO UPDATE SET count = s.count + EXCLUDED.count"
            ).format(t=table),
            changed,
        )
        cur.execute(sql.SQL("DELETE FROM {} WHERE count = 0").format(table))


__all__ = ["Jsonb", "StatsProjection"]
