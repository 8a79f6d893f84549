"""The Video aggregate: a source video's way through the pipeline, and the layout of its clips.

Stages run in order: download → proxy → sprites → shots (:class:`domain.stages.VideoStage`). Each has a
``…Started`` event (with the attempt number), a success event and a ``…Failed`` event (reason, attempt),
paired with their stage once, in :data:`VIDEO_STAGE_EVENTS`. Results are idempotent: reporting a
stage's result once it is done triggers no event. After shots are detected the video owns the clip
layout, whose invariant (:mod:`domain.partition`) every split, merge and undo keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from domain.base import HeatersAggregate, StageProgress
from domain.errors import DomainError
from domain.partition import Segment, check_partition, layout_from_cuts
from domain.stages import StageEvents, StageStatus, StageTable, VideoStage, VideoState


class Video(HeatersAggregate):
    TOPIC = "heaters.video:Video"

    class Created(HeatersAggregate.Created):
        """Submitted: someone asked for this source to be ingested."""

        TOPIC = "heaters.video:Submitted"
        source: str

    class DownloadStarted(HeatersAggregate.Event):
        TOPIC = "heaters.video:DownloadStarted"
        attempt: int

        def apply(self, video: Video) -> None:
            video._move(self)

    class Downloaded(HeatersAggregate.Event):
        """The source is stored and probed (``media_key`` names it in object storage)."""

        TOPIC = "heaters.video:Downloaded"
        attempt: int
        media_key: str
        title: str
        original_url: str | None
        checksum: str
        duration: float
        fps: float
        frame_count: int
        width: int
        height: int
        codec: str

        def apply(self, video: Video) -> None:
            video.media["source"] = self.media_key
            video.metadata = {
                "title": self.title,
                "original_url": self.original_url,
                "checksum": self.checksum,
                "duration": self.duration,
                "fps": self.fps,
                "frame_count": self.frame_count,
                "width": self.width,
                "height": self.height,
                "codec": self.codec,
            }
            video._move(self)

    class DownloadFailed(HeatersAggregate.Event):
        TOPIC = "heaters.video:DownloadFailed"
        attempt: int
        reason: str

        def apply(self, video: Video) -> None:
            video._move(self)

    class ProxyStarted(HeatersAggregate.Event):
        TOPIC = "heaters.video:ProxyStarted"
        attempt: int

        def apply(self, video: Video) -> None:
            video._move(self)

    class ProxyCreated(HeatersAggregate.Event):
        """An all-intra proxy (every frame a keyframe) for frame-accurate review and export.

        ``frame_count`` is the proxy's own count when it differs from the source's (a variable frame
        rate source made constant): clips, sprites and exports all index the proxy, so it is the truth."""

        TOPIC = "heaters.video:ProxyCreated"
        class_version = 2
        attempt: int
        media_key: str
        width: int
        height: int
        frame_count: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 proxies had the source's frame count."""
            state["frame_count"] = None

        def apply(self, video: Video) -> None:
            video.media["proxy"] = self.media_key
            if self.frame_count is not None:
                video.metadata["proxy_frame_count"] = self.frame_count
            video._move(self)

    class ProxyFailed(HeatersAggregate.Event):
        TOPIC = "heaters.video:ProxyFailed"
        attempt: int
        reason: str

        def apply(self, video: Video) -> None:
            video._move(self)

    class SpritesStarted(HeatersAggregate.Event):
        TOPIC = "heaters.video:SpritesStarted"
        attempt: int

        def apply(self, video: Video) -> None:
            video._move(self)

    class SpritesCreated(HeatersAggregate.Event):
        """Sprite sheets of the whole video; any clip's frame range indexes into them."""

        TOPIC = "heaters.video:SpritesCreated"
        attempt: int
        manifest_key: str

        def apply(self, video: Video) -> None:
            video.media["sprites"] = self.manifest_key
            video._move(self)

    class SpritesFailed(HeatersAggregate.Event):
        TOPIC = "heaters.video:SpritesFailed"
        attempt: int
        reason: str

        def apply(self, video: Video) -> None:
            video._move(self)

    class ShotDetectionStarted(HeatersAggregate.Event):
        TOPIC = "heaters.video:ShotDetectionStarted"
        attempt: int

        def apply(self, video: Video) -> None:
            video._move(self)

    class ShotsDetected(HeatersAggregate.Event):
        """Shot boundaries (first frame of each new shot) and the clips they make."""

        TOPIC = "heaters.video:ShotsDetected"
        attempt: int
        cuts: list[int]
        detector: str
        params: dict[str, Any]
        clips: list[dict[str, Any]]

        def apply(self, video: Video) -> None:
            video.layout = [Segment.from_payload(c) for c in self.clips]
            video.cuts = list(self.cuts)
            video.detector = {"name": self.detector, "params": dict(self.params)}
            video._move(self)

    class ShotDetectionFailed(HeatersAggregate.Event):
        TOPIC = "heaters.video:ShotDetectionFailed"
        attempt: int
        reason: str

        def apply(self, video: Video) -> None:
            video._move(self)

    class RetryRequested(HeatersAggregate.Event):
        TOPIC = "heaters.video:RetryRequested"
        stage: str

        def apply(self, video: Video) -> None:
            video._move(self)

    class LayoutChanged(HeatersAggregate.Event):
        """Clips replaced by others over the same frames: a split, a merge, or the undo of one.

        ``change`` is ``split``, ``merge``, ``split_undone`` or ``merge_undone``; ``clip_id`` is the clip
        the reviewer acted on; ``frame`` is the split frame (or ``None``)."""

        TOPIC = "heaters.video:LayoutChanged"
        change: str
        clip_id: UUID
        frame: int | None
        removed: list[UUID]
        added: list[dict[str, Any]]

        def apply(self, video: Video) -> None:
            removed = set(self.removed)
            kept = [s for s in video.layout if s.clip_id not in removed]
            video.layout = sorted(kept + [Segment.from_payload(a) for a in self.added])

    def __init__(self, source: str) -> None:
        self.source = source
        self.stages: dict[str, StageProgress] = {s: StageProgress() for s in VideoStage}
        self.media: dict[str, str] = {}
        self.metadata: dict[str, Any] = {}
        self.layout: list[Segment] = []
        self.cuts: list[int] = []
        self.detector: dict[str, Any] = {}

    # -- creation ---------------------------------------------------------------------------------

    @classmethod
    def submit(cls, video_id: UUID, source: str, actor: str) -> Video:
        source = source.strip()
        if not source:
            raise DomainError("a video needs a source: a http(s) URL or a local file path")
        return cls._create(cls.Created, id=video_id, source=source, actor=actor)

    # -- derived state ----------------------------------------------------------------------------

    @property
    def frame_count(self) -> int:
        """Frames of the video as clips index them: the proxy's count once it differs from the source's."""
        return int(self.metadata.get("proxy_frame_count") or self.metadata.get("frame_count", 0))

    @property
    def fps(self) -> float:
        return float(self.metadata.get("fps", 0.0))

    @property
    def state(self) -> VideoState:
        """``submitted``, ``<stage>_running``, ``<stage>_failed`` or ``clipped`` once every stage is done."""
        return video_state(self.stages)

    @property
    def current_stage(self) -> VideoStage | None:
        """The first stage that is not done, or ``None`` when all are."""
        return video_current_stage(self.stages)

    @property
    def failed_stage(self) -> VideoStage | None:
        return video_failed_stage(self.stages)

    def clip_ids(self) -> list[UUID]:
        return [s.clip_id for s in self.layout]

    def previous_clip(self, clip_id: UUID) -> UUID | None:
        ids = self.clip_ids()
        if clip_id not in ids:
            raise DomainError(f"clip {clip_id} is not a live clip of video {self.id}")
        index = ids.index(clip_id)
        return ids[index - 1] if index > 0 else None

    # -- pipeline commands ------------------------------------------------------------------------

    def start_stage(self, stage: str, actor: str) -> int:
        """Record that a stage's work begins; returns the attempt number."""
        self._require_stage_ready(stage)
        attempt = self.stages[stage].attempts + 1
        started = VIDEO_STAGE_EVENTS.events[VideoStage(stage)].started
        assert started is not None  # every video stage records its start
        self.trigger_event(started, attempt=attempt, actor=actor)
        return attempt

    def record_downloaded(self, actor: str, attempt: int, **metadata: Any) -> bool:
        if self._already_done(VideoStage.DOWNLOAD):
            return False
        progress = self.stages[VideoStage.DOWNLOAD]
        if progress.status == StageStatus.FAILED and progress.attempts >= attempt:
            return False  # the result of an attempt that was cancelled or given up on meanwhile
        if int(metadata.get("frame_count", 0)) <= 0:
            raise DomainError(f"video {self.id}: a downloaded video must have frames")
        self.trigger_event(self.Downloaded, attempt=attempt, actor=actor, **metadata)
        return True

    def record_proxy(
        self,
        actor: str,
        attempt: int,
        media_key: str,
        width: int,
        height: int,
        frame_count: int | None = None,
    ) -> bool:
        self._require_done(VideoStage.DOWNLOAD, before=VideoStage.PROXY)
        if self._already_done(VideoStage.PROXY):
            return False
        if frame_count is not None and frame_count <= 0:
            raise DomainError(f"video {self.id}: a proxy must have frames, not {frame_count}")
        differs = frame_count if frame_count is not None and frame_count != self.frame_count else None
        self.trigger_event(
            self.ProxyCreated,
            attempt=attempt,
            media_key=media_key,
            width=width,
            height=height,
            frame_count=differs,
            actor=actor,
        )
        return True

    def record_sprites(self, actor: str, attempt: int, manifest_key: str) -> bool:
        self._require_done(VideoStage.PROXY, before=VideoStage.SPRITES)
        if self._already_done(VideoStage.SPRITES):
            return False
        self.trigger_event(self.SpritesCreated, attempt=attempt, manifest_key=manifest_key, actor=actor)
        return True

    def record_shots(
        self,
        actor: str,
        attempt: int,
        cuts: Sequence[int],
        detector: str,
        params: dict[str, Any],
        clip_ids: Sequence[UUID],
    ) -> list[Segment] | None:
        """Record shot boundaries; returns the new clip layout, or ``None`` when already recorded."""
        self._require_done(VideoStage.SPRITES, before=VideoStage.SHOTS)
        if self._already_done(VideoStage.SHOTS):
            return None
        layout = layout_from_cuts(cuts, self.frame_count, clip_ids)
        self.trigger_event(
            self.ShotsDetected,
            attempt=attempt,
            cuts=[s.start for s in layout[1:]],
            detector=detector,
            params=dict(params),
            clips=[s.as_payload() for s in layout],
            actor=actor,
        )
        return layout

    def record_failure(self, stage: str, attempt: int, reason: str, actor: str) -> bool:
        self._require_known(stage)
        if not self.stages[stage].takes_failure(attempt, reason):
            return False
        self.trigger_event(
            VIDEO_STAGE_EVENTS.events[VideoStage(stage)].failed, attempt=attempt, reason=reason, actor=actor
        )
        return True

    def cancel_download(self, actor: str, reason: str | None = None) -> str:
        """A person stops a download that is waiting or running: it ends as ``DownloadFailed`` whose
        reason says who cancelled it and why (``heaters retry`` starts it again). Returns the reason."""
        progress = self.stages[VideoStage.DOWNLOAD]
        if progress.status not in (StageStatus.PENDING, StageStatus.RUNNING):
            raise DomainError(
                f"video {self.id}: there is no download to cancel (download is {progress.status}, state: {self.state})"
            )
        name = actor.removeprefix("user:")
        why = " ".join((reason or "").split())[:300]
        text = f"cancelled by {name}" + (f": {why}" if why else "")
        self.trigger_event(self.DownloadFailed, attempt=progress.attempts, reason=text, actor=actor)
        return text

    def request_retry(self, actor: str) -> str:
        stage = self.failed_stage
        if stage is None:
            raise DomainError(f"video {self.id} has no failed stage to retry (state: {self.state})")
        self.trigger_event(self.RetryRequested, stage=stage, actor=actor)
        return stage

    # -- layout commands --------------------------------------------------------------------------

    def change_layout(
        self,
        change: str,
        clip_id: UUID,
        new_layout: list[Segment],
        actor: str,
        frame: int | None = None,
    ) -> None:
        """Record a layout built by :mod:`domain.partition` (which checked the invariant)."""
        if self.stages[VideoStage.SHOTS].status != StageStatus.DONE:
            raise DomainError(f"video {self.id} has no clips yet (state: {self.state})")
        check_partition(new_layout, self.frame_count)
        before = {s.clip_id: s for s in self.layout}
        after = {s.clip_id: s for s in new_layout}
        self.trigger_event(
            self.LayoutChanged,
            change=change,
            clip_id=clip_id,
            frame=frame,
            removed=[cid for cid in before if cid not in after],
            added=[s.as_payload() for cid, s in after.items() if cid not in before],
            actor=actor,
        )

    # -- helpers for apply() ----------------------------------------------------------------------

    def _move(self, event: HeatersAggregate.Event) -> None:
        """Move the stage ``event`` moves, as :data:`VIDEO_STAGE_EVENTS` pairs them."""
        moved = VIDEO_STAGE_EVENTS.move(event)
        assert moved is not None, f"{type(event).__name__} moves no video stage"
        stage, move = moved
        self.stages[stage] = self.stages[stage].moved(move, event)

    def _already_done(self, stage: str) -> bool:
        return self.stages[stage].status == StageStatus.DONE

    def _require_done(self, stage: str, before: str) -> None:
        if self.stages[stage].status != StageStatus.DONE:
            raise DomainError(f"video {self.id}: {before} needs {stage} done first (state: {self.state})")

    @staticmethod
    def _require_known(stage: str) -> None:
        if stage not in tuple(VideoStage):
            raise DomainError(f"unknown video stage {stage!r}; stages are {', '.join(VideoStage)}")

    def _require_stage_ready(self, stage: str) -> None:
        self._require_known(stage)
        stages = list(VideoStage)
        index = stages.index(VideoStage(stage))
        if index > 0:
            self._require_done(stages[index - 1], before=stage)
        if self.stages[stage].status == StageStatus.DONE:
            raise DomainError(f"video {self.id}: {stage} is already done")
        if self.stages[stage].status == StageStatus.FAILED:
            raise DomainError(
                f"video {self.id}: {stage} failed ({self.stages[stage].last_error}); "
                f"run `heaters retry video {self.id}` to try again"
            )


#: Each video stage and the events that move it (the only place that pairs them).
VIDEO_STAGE_EVENTS = StageTable(
    VideoStage,
    {
        VideoStage.DOWNLOAD: StageEvents(Video.DownloadStarted, Video.Downloaded, Video.DownloadFailed),
        VideoStage.PROXY: StageEvents(Video.ProxyStarted, Video.ProxyCreated, Video.ProxyFailed),
        VideoStage.SPRITES: StageEvents(Video.SpritesStarted, Video.SpritesCreated, Video.SpritesFailed),
        VideoStage.SHOTS: StageEvents(
            Video.ShotDetectionStarted, Video.ShotsDetected, Video.ShotDetectionFailed
        ),
    },
    retry=Video.RetryRequested,
)


def video_state(stages: Mapping[str, StageProgress]) -> VideoState:
    """The state of a video whose stages have got this far (:attr:`Video.state`; read models too)."""
    stage = video_current_stage(stages)
    return VideoState.at(stage, StageStatus.DONE if stage is None else stages[stage].status)


def video_current_stage(stages: Mapping[str, StageProgress]) -> VideoStage | None:
    """The first stage that is not done, or ``None`` when all are."""
    return next((s for s in VideoStage if stages[s].status != StageStatus.DONE), None)


def video_failed_stage(stages: Mapping[str, StageProgress]) -> VideoStage | None:
    return next((s for s in VideoStage if stages[s].status == StageStatus.FAILED), None)
