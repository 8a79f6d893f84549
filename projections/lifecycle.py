"""Pure functions the read models share to follow a video's stages and a clip's state from event
payloads alone (they mirror the ``apply`` methods of :mod:`domain.video` and :mod:`domain.clip`)."""

from __future__ import annotations

from typing import Any

from domain.clip import CLIP_STAGES, RETIRED, Clip
from domain.video import PIPELINE_STAGES, Video

Stages = dict[str, dict[str, Any]]

#: Video topic → (stage, what happened): start, done, fail, retry.
VIDEO_STAGE_EVENTS: dict[str, tuple[str, str]] = {
    Video.DownloadStarted.TOPIC: ("download", "start"),
    Video.Downloaded.TOPIC: ("download", "done"),
    Video.DownloadFailed.TOPIC: ("download", "fail"),
    Video.ProxyStarted.TOPIC: ("proxy", "start"),
    Video.ProxyCreated.TOPIC: ("proxy", "done"),
    Video.ProxyFailed.TOPIC: ("proxy", "fail"),
    Video.SpritesStarted.TOPIC: ("sprites", "start"),
    Video.SpritesCreated.TOPIC: ("sprites", "done"),
    Video.SpritesFailed.TOPIC: ("sprites", "fail"),
    Video.ShotDetectionStarted.TOPIC: ("shots", "start"),
    Video.ShotsDetected.TOPIC: ("shots", "done"),
    Video.ShotDetectionFailed.TOPIC: ("shots", "fail"),
}

CLIP_STAGE_DONE: dict[str, str] = {
    Clip.KeyframesExtracted.TOPIC: "keyframes",
    Clip.Embedded.TOPIC: "embedding",
    Clip.Exported.TOPIC: "export",
}

#: Clip topic → the state it sets (DecisionUndone and SpriteReady are special).
CLIP_STATE_EVENTS: dict[str, str] = {
    Clip.Approved.TOPIC: "approved",
    Clip.Skipped.TOPIC: "skipped",
    Clip.Archived.TOPIC: "archived",
    Clip.Grouped.TOPIC: "approved",
    Clip.Split.TOPIC: "split",
    Clip.Merged.TOPIC: "merged",
    Clip.Retired.TOPIC: "retired",
    Clip.KeyframesExtracted.TOPIC: "keyframed",
    Clip.Embedded.TOPIC: "embedded",
    Clip.Exported.TOPIC: "exported",
}


def fresh_stages(names: tuple[str, ...]) -> Stages:
    return {s: {"status": "pending", "attempts": 0, "last_error": None} for s in names}


def video_stages() -> Stages:
    return fresh_stages(PIPELINE_STAGES)


def clip_stages() -> Stages:
    return fresh_stages(CLIP_STAGES)


def change_stage(stages: Stages, stage: str, op: str, event: Any) -> None:
    """Apply start/done/fail/retry to ``stages[stage]`` like :class:`domain.base.StageProgress`."""
    if stage not in stages:
        raise ValueError(f"unknown stage {stage!r}")
    progress = dict(stages[stage])
    if op == "start":
        progress["status"] = "running"
        progress["attempts"] = max(progress["attempts"], int(event.attempt))
    elif op == "done":
        progress["status"] = "done"
        progress["last_error"] = None
    elif op == "fail":
        progress["status"] = "failed"
        progress["last_error"] = event.reason
        progress["attempts"] = max(progress["attempts"], int(event.attempt))
    elif op == "retry":
        progress["status"] = "pending"
    else:
        raise ValueError(f"unknown stage change {op!r}")
    stages[stage] = progress


def video_state(stages: Stages) -> tuple[str, str | None, str | None, str | None]:
    """(state, current_stage, failed_stage, failure_reason) as :class:`domain.video.Video` derives them."""
    state = "clipped"
    for stage in PIPELINE_STAGES:
        status = stages[stage]["status"]
        if status == "done":
            continue
        state = (
            ("submitted" if stage == "download" else f"{stage}_pending")
            if status == "pending"
            else f"{stage}_{status}"
        )
        break
    current = next((s for s in PIPELINE_STAGES if stages[s]["status"] != "done"), None)
    failed = next((s for s in PIPELINE_STAGES if stages[s]["status"] == "failed"), None)
    return state, current, failed, stages[failed]["last_error"] if failed else None


def clip_failure(stages: Stages) -> tuple[str | None, str | None]:
    """(failed_stage, failure_reason) of a clip: its first failed stage."""
    failed = next((s for s in CLIP_STAGES if stages[s]["status"] == "failed"), None)
    return failed, stages[failed]["last_error"] if failed else None


def next_clip_state(state: str, topic: str, event: Any) -> str:
    """The clip's state after ``event`` (``Created`` gives ``created``)."""
    if topic == Clip.Created.TOPIC:
        return "created"
    if topic == Clip.SpriteReady.TOPIC:
        return "pending_review" if state == "created" else state
    if topic == Clip.DecisionUndone.TOPIC:
        return str(event.restored_state)
    return CLIP_STATE_EVENTS.get(topic, state)


def is_live(state: str) -> bool:
    return state not in RETIRED


def clip_stage_change(stages: Stages, topic: str, event: Any) -> bool:
    """Update a clip's stage progress for ``event``; True when it changed anything."""
    if topic in CLIP_STAGE_DONE:
        change_stage(stages, CLIP_STAGE_DONE[topic], "done", event)
    elif topic == Clip.StageFailed.TOPIC:
        change_stage(stages, event.stage, "fail", event)
    elif topic == Clip.RetryRequested.TOPIC:
        change_stage(stages, event.stage, "retry", event)
    elif topic == Clip.DecisionUndone.TOPIC and event.undone in ("approve", "group"):
        stages.clear()
        stages.update(clip_stages())
    else:
        return False
    return True


#: Clip topics that can change a clip's state (what read models counting clips by state follow).
CLIP_STATE_TOPICS: frozenset[str] = frozenset(
    {
        Clip.SpriteReady.TOPIC,
        Clip.Approved.TOPIC,
        Clip.Skipped.TOPIC,
        Clip.Archived.TOPIC,
        Clip.Grouped.TOPIC,
        Clip.Split.TOPIC,
        Clip.Merged.TOPIC,
        Clip.Retired.TOPIC,
        Clip.DecisionUndone.TOPIC,
        Clip.KeyframesExtracted.TOPIC,
        Clip.Embedded.TOPIC,
        Clip.Exported.TOPIC,
    }
)
