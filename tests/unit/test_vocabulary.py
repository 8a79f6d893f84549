"""The pipeline's and review's vocabulary (``domain/stages.py``) and the tables that pair stages with
events are declared once; the read models and the process manager derive theirs from them and agree
with the aggregates, and the stored words never change."""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands.service import HeatersApplication
from domain.base import HeatersAggregate
from domain.clip import CLIP_STAGE_EVENTS, CLIP_STATE_AFTER, Clip, clip_state_after
from domain.errors import DomainError
from domain.stages import (
    PURGE,
    WORK_STAGES,
    ClipOrigin,
    ClipStage,
    ClipState,
    Decision,
    LayoutChange,
    StageEvents,
    StageMove,
    StageStatus,
    StageTable,
    VideoStage,
    VideoState,
)
from domain.video import VIDEO_STAGE_EVENTS, Video
from processors.actors import STAGE_ACTORS
from processors.process_manager import NEXT_VIDEO_STAGE, TOPICS, Reaction, reactions
from processors.queues import STAGE_QUEUES
from projections.lifecycle import (
    CLIP_STAGE_TOPICS,
    CLIP_STATE_TOPICS,
    Stages,
    clip_failure,
    clip_stage_change,
    clip_stages,
    is_live,
    video_stage_change,
    video_stages,
    video_state,
)
from tests.helpers import PIPELINE, clipped_video

ALICE = "user:alice"


def test_the_stored_words_never_change() -> None:
    """Events and read-model rows hold these strings: renaming a member must not change its value."""
    assert [*StageStatus] == ["pending", "running", "done", "failed"]
    assert [*VideoStage] == ["download", "proxy", "sprites", "shots"]
    assert [*ClipStage] == ["keyframes", "embedding", "export"]
    assert PURGE == "purge"
    assert [*VideoState] == [
        "submitted",
        "download_running",
        "download_failed",
        "proxy_pending",
        "proxy_running",
        "proxy_failed",
        "sprites_pending",
        "sprites_running",
        "sprites_failed",
        "shots_pending",
        "shots_running",
        "shots_failed",
        "clipped",
    ]
    assert [*ClipState] == [
        "created",
        "pending_review",
        "skipped",
        "approved",
        "keyframed",
        "embedded",
        "exported",
        "archived",
        "split",
        "merged",
        "retired",
    ]
    assert [*Decision] == ["approve", "skip", "archive", "group", "split", "merge"]
    assert [*ClipOrigin] == ["shots", "split", "merge"]
    assert [*LayoutChange] == ["split", "merge", "split_undone", "merge_undone"]


def _events_of(aggregate: type[HeatersAggregate]) -> list[type[Any]]:
    return [
        c for c in vars(aggregate).values() if isinstance(c, type) and issubclass(c, HeatersAggregate.Event)
    ]


def test_every_stage_has_exactly_one_entry() -> None:
    assert list(VIDEO_STAGE_EVENTS.events) == list(VideoStage)
    assert list(CLIP_STAGE_EVENTS.events) == list(ClipStage)
    # Every video event named for starting or failing a stage belongs to exactly one stage.
    for cls in _events_of(Video):
        if cls.__name__.endswith(("Started", "Failed")):
            owners = [s for s, e in VIDEO_STAGE_EVENTS.events.items() if cls in (e.started, e.done, e.failed)]
            assert len(owners) == 1, f"{cls.__name__} belongs to {owners}"
    # A video's result events are one per stage; a clip's stages share StageFailed, which names its stage.
    assert len({e.done for e in VIDEO_STAGE_EVENTS.events.values()}) == len(VideoStage)
    assert len({e.done for e in CLIP_STAGE_EVENTS.events.values()}) == len(ClipStage)
    assert VIDEO_STAGE_EVENTS.moves[Video.RetryRequested] == (None, StageMove.RETRY)
    assert CLIP_STAGE_EVENTS.moves[Clip.StageFailed] == (None, StageMove.FAIL)
    assert set(WORK_STAGES) == {*VideoStage, *ClipStage, PURGE}


def test_a_table_missing_a_stage_or_giving_an_event_two_roles_is_refused() -> None:
    events = dict(VIDEO_STAGE_EVENTS.events)
    del events[VideoStage.SPRITES]
    with pytest.raises(DomainError, match="every VideoStage needs one entry"):
        StageTable(VideoStage, events, Video.RetryRequested)
    twisted = {
        **VIDEO_STAGE_EVENTS.events,
        VideoStage.SHOTS: StageEvents(
            Video.ShotDetectionStarted, Video.ProxyFailed, Video.ShotDetectionFailed
        ),
    }
    with pytest.raises(DomainError, match="ProxyFailed cannot both"):
        StageTable(VideoStage, twisted, Video.RetryRequested)
    shared = {
        **VIDEO_STAGE_EVENTS.events,
        VideoStage.SHOTS: StageEvents(
            Video.ShotDetectionStarted, Video.SpritesCreated, Video.ShotDetectionFailed
        ),
    }
    with pytest.raises(DomainError, match="SpritesCreated serves two stages but names neither"):
        StageTable(VideoStage, shared, Video.RetryRequested)


def test_video_states_are_exactly_those_the_stages_reach() -> None:
    reachable = {VideoState.CLIPPED} | {
        VideoState.at(stage, status)
        for stage in VideoStage
        for status in (StageStatus.PENDING, StageStatus.RUNNING, StageStatus.FAILED)
    }
    assert reachable == set(VideoState)
    assert VideoState.at(VideoStage.DOWNLOAD, StageStatus.PENDING) is VideoState.SUBMITTED


def test_every_clip_state_is_one_an_event_leaves() -> None:
    assert set(CLIP_STATE_AFTER.values()) | {ClipState.PENDING_REVIEW} == set(ClipState)


def test_the_process_manager_asks_for_each_stage_after_the_one_before() -> None:
    assert {
        Video.Created: VideoStage.DOWNLOAD,
        Video.Downloaded: VideoStage.PROXY,
        Video.ProxyCreated: VideoStage.SPRITES,
        Video.SpritesCreated: VideoStage.SHOTS,
    } == NEXT_VIDEO_STAGE


def test_every_work_stage_has_one_actor_on_one_queue() -> None:
    assert set(STAGE_ACTORS) == set(WORK_STAGES) == set(STAGE_QUEUES)
    for stage, actor in STAGE_ACTORS.items():
        assert actor.actor_name == f"heaters_{stage}"  # queued messages name their actor
        assert actor.queue_name == STAGE_QUEUES[stage]


# -- the read models' derivation agrees with the aggregates, for random histories ----------------------


def _progress(aggregate: Video | Clip) -> Stages:
    return {s: p.as_dict() for s, p in aggregate.stages.items()}


class LifecycleMachine(RuleBasedStateMachine):
    """A video through its stages (with failures, retries and a cancel), its clips reviewed, and the
    approved ones through theirs; the read models' functions, fed the stored events, say what the
    aggregates say, and the process manager's reactions move the stages the tables name."""

    def __init__(self) -> None:
        super().__init__()
        self.app = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, min_clip_frames=2)
        self.video_id: UUID

    def teardown(self) -> None:
        self.app.close()

    @initialize(clipped=st.booleans())
    def submit(self, clipped: bool) -> None:
        """A video just submitted, or (to reach its clips' stages sooner) one whose clips are made."""
        if clipped:
            self.video_id, _ = clipped_video(self.app, cuts=[60, 120, 180, 240])
        else:
            self.video_id = self.app.submit("/videos/test.mp4", ALICE)

    # -- the video's stages ------------------------------------------------------------------------

    @rule(fail=st.booleans())
    def advance_video(self, fail: bool) -> None:
        video = self.app.get_video(self.video_id)
        if video.failed_stage is not None:
            self.app.request_retry(self.video_id, ALICE)
            return
        stage = video.current_stage
        if stage is None:
            return
        progress = video.stages[stage]
        if progress.status == StageStatus.PENDING:
            self.app.start_video_stage(self.video_id, stage, PIPELINE)
        elif fail:
            self.app.record_video_failure(self.video_id, stage, progress.attempts, "it broke", PIPELINE)
        else:
            self._record_result(stage, progress.attempts)

    def _record_result(self, stage: VideoStage, attempt: int) -> None:
        vid = self.video_id
        if stage == VideoStage.DOWNLOAD:
            self.app.record_downloaded(
                vid, attempt, PIPELINE, media_key="s", title="t", original_url=None, checksum="0" * 64,
                duration=12.0, fps=25.0, frame_count=300, width=320, height=240, codec="h264",
            )  # fmt: skip
        elif stage == VideoStage.PROXY:
            self.app.record_proxy(vid, attempt, "p", 320, 240, PIPELINE)
        elif stage == VideoStage.SPRITES:
            self.app.record_sprites(vid, attempt, "m", PIPELINE)
        else:
            self.app.record_shots(vid, attempt, [60, 120, 180, 240], "test", {}, PIPELINE)

    @rule()
    def cancel_download(self) -> None:
        with contextlib.suppress(DomainError):
            self.app.cancel_download(self.video_id, ALICE, "wrong video")

    # -- the clips ---------------------------------------------------------------------------------

    def _clip(self, index: int) -> UUID | None:
        clips = self.app.clips_of(self.video_id)
        return clips[index % len(clips)].id if clips else None

    @rule(
        index=st.integers(min_value=0, max_value=5),
        action=st.sampled_from(["approve", "skip", "archive", "group", "split", "merge", "undo"]),
    )
    def review(self, index: int, action: str) -> None:
        clip_id = self._clip(index)
        if clip_id is None:
            return
        args: tuple[object, ...] = ()
        if action in ("group", "merge"):
            args = (None,)
        elif action == "split":
            clip = self.app.get_clip(clip_id)
            args = ((clip.start + clip.end) // 2,)
        with contextlib.suppress(DomainError):
            getattr(self.app, action)(clip_id, *args, ALICE)

    @rule(index=st.integers(min_value=0, max_value=5), fail=st.booleans())
    def clip_stage(self, index: int, fail: bool) -> None:
        clip_id = self._clip(index)
        if clip_id is None:
            return
        clip = self.app.get_clip(clip_id)
        stage = next((s for s in ClipStage if clip.stages[s].status != StageStatus.DONE), None)
        try:
            if clip.state == ClipState.ARCHIVED:
                self.app.record_media_purged(clip_id, ["k"], PIPELINE)
            elif stage is None:
                return
            elif clip.stages[stage].status == StageStatus.FAILED:
                self.app.request_retry(clip_id, ALICE)
            elif fail:
                attempt = clip.stages[stage].attempts + 1
                self.app.record_clip_failure(clip_id, stage, attempt, "it broke", PIPELINE)
            elif stage == ClipStage.KEYFRAMES:
                self.app.record_keyframes(clip_id, "middle", ["k"], [clip.start], PIPELINE)
            elif stage == ClipStage.EMBEDDING:
                self.app.record_embedding(clip_id, "m", "p", "middle", [[1.0, 0.0]], PIPELINE)
            else:
                self.app.record_export(clip_id, "e", PIPELINE)
        except DomainError:
            pass

    # -- what the read models and the process manager make of the log ------------------------------

    @invariant()
    def read_models_agree_with_the_aggregates(self) -> None:
        videos: dict[UUID, Stages] = {}
        clips: dict[UUID, tuple[str, Stages]] = {}
        for event in self.app.iter_events():
            oid, topic = event.originator_id, type(event).TOPIC  # type: ignore[attr-defined]
            self._check_reactions(event)
            if isinstance(event, Video.Created):
                videos[oid] = video_stages()
            elif isinstance(event, Video.Event):
                video_stage_change(videos[oid], event)
            elif isinstance(event, Clip.Created):
                clips[oid] = (ClipState.CREATED, clip_stages())
            else:
                state, stages = clips[oid]
                if topic in CLIP_STATE_TOPICS:
                    state = clip_state_after(state, event)
                if topic in CLIP_STAGE_TOPICS or isinstance(event, Clip.DecisionUndone):
                    clip_stage_change(stages, event)
                clips[oid] = (state, stages)
        for video_id, stages in videos.items():
            video = self.app.get_video(video_id)
            assert stages == _progress(video)
            failed = video.failed_stage
            reason = video.stages[failed].last_error if failed else None
            assert video_state(stages) == (video.state, video.current_stage, failed, reason)
        for clip_id, (state, stages) in clips.items():
            clip = self.app.get_clip(clip_id)
            assert (state, is_live(state), stages) == (clip.state, clip.is_live, _progress(clip))
            failed_stage = next((s for s in ClipStage if clip.stages[s].status == StageStatus.FAILED), None)
            assert clip_failure(stages)[0] == failed_stage

    @staticmethod
    def _check_reactions(event: Any) -> None:
        """Every result and failure moves the work row of the stage the tables pair it with."""
        table = VIDEO_STAGE_EVENTS if isinstance(event, Video.Event) else CLIP_STAGE_EVENTS
        moved = table.move(event)
        made = reactions(event, archive_grace_seconds=60.0)
        if moved is None or moved[1] is StageMove.START:
            return
        stage, move = moved
        state = {StageMove.DONE: "done", StageMove.FAIL: "failed", StageMove.RETRY: "dispatched"}[move]
        assert Reaction(event.originator_id, stage, state) in made
        assert type(event).TOPIC in TOPICS


LifecycleMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycle = LifecycleMachine.TestCase
