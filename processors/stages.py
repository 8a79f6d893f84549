"""The media work of each pipeline stage, reported back to the application as commands.

Each function is idempotent: it returns at once when its stage is already done, and a result reported
twice stores one event. A failure a person must act on (404, a non-video file, a forbidden scheme) is
recorded at once as a ``…Failed`` event and raised as ``PermanentFailure``, which the actors' ``throws``
keeps Dramatiq from retrying; anything else is raised for Dramatiq to retry with backoff, and
``StageFailures`` (processors/middleware.py) records it when Dramatiq gives up.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from commands.service import HeatersApplication
from domain.base import stage_actor
from domain.errors import DomainError
from infra.config import Settings
from infra.media.ffmpeg import MediaError
from infra.media.sprites import content_type as sprite_content_type
from infra.object_storage import ObjectStorage
from processors.embedding_batches import EmbeddingBatcher
from processors.work_ledger import SupersededAttempt, ensure_current

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from domain.video import Video
    from infra.clip_embedder import ClipEmbedder
    from infra.media.inspect import MediaInfo
    from infra.media.shot_detection import ShotDetector

log = logging.getLogger(__name__)


@dataclass
class PipelineContext:
    """What the stages need: the application, media storage, settings and (lazily) the embedder."""

    app: HeatersApplication
    storage: ObjectStorage
    settings: Settings
    embedder_factory: Callable[[], ClipEmbedder] | None = None
    _embedder: ClipEmbedder | None = field(default=None, init=False, repr=False)
    _batcher: EmbeddingBatcher | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def embedder(self) -> ClipEmbedder:
        with self._lock:  # worker threads share one model
            if self._embedder is None:
                if self.embedder_factory is not None:
                    self._embedder = self.embedder_factory()
                else:
                    from infra.clip_embedder import ClipEmbedder

                    self._embedder = ClipEmbedder.from_settings(self.settings)
            return self._embedder

    def embedding_batcher(self) -> EmbeddingBatcher:
        """Where this worker's embedding threads pool their clips (batches that span clips)."""
        embedder = self.embedder()
        with self._lock:
            if self._batcher is None:
                self._batcher = EmbeddingBatcher(
                    lambda clips, strategy: embedder.embed_clips(clips, strategy),
                    max_clips=self.settings.embedding_clips_per_batch,
                )
            return self._batcher


class PermanentFailure(Exception):
    """The stage cannot succeed by retrying; the reason is recorded for a person to act on."""


_started_attempt: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "heaters_started_attempt", default=None
)


def started_attempt() -> int | None:
    """The attempt the stage running in this thread started (the number its events record); None
    before it started one (skipped, or failed before it began)."""
    return _started_attempt.get()


def forget_started_attempt() -> None:
    """A new message begins on this thread: no attempt started yet."""
    _started_attempt.set(None)


def record_failure(ctx: PipelineContext, stage: str, aggregate_id: UUID, attempt: int, reason: str) -> None:
    """Record the ``…Failed`` event of a video or clip stage's attempt (a purge has none)."""
    actor = stage_actor(stage)
    try:
        if stage in VIDEO_STAGES:
            ctx.app.record_video_failure(aggregate_id, stage, attempt, reason, actor)
        elif stage in CLIP_STAGES:
            ctx.app.record_clip_failure(aggregate_id, stage, attempt, reason, actor)
    except DomainError as error:  # e.g. a person cancelled or retried it meanwhile
        log.info("%s %s: failure of attempt %d not recorded: %s", stage, aggregate_id, attempt, error)


@contextmanager
def _workdir(settings: Settings) -> Iterator[Path]:
    base = settings.resolved_home / "work"
    base.mkdir(parents=True, exist_ok=True)
    # Named after this process: a worker starting later removes what a dead one left (clean_workdirs).
    with tempfile.TemporaryDirectory(dir=base, prefix=f"pid{os.getpid()}-") as tmp:
        yield Path(tmp)


def clean_workdirs(settings: Settings) -> list[Path]:
    """Remove the temporary directories of worker processes that are gone (killed mid-stage)."""
    base = settings.resolved_home / "work"
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for path in base.iterdir():
        pid_part = path.name.split("-", 1)[0].removeprefix("pid")
        if pid_part.isdigit() and _process_alive(int(pid_part)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d work directories left by stopped workers under %s", len(removed), base)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def video_key(video_id: UUID, name: str) -> str:
    return f"videos/{video_id}/{name}"


def clip_prefix(clip_id: UUID) -> str:
    return f"clips/{clip_id}/"


# -- video stages ---------------------------------------------------------------------------------


def _run_video_stage(
    ctx: PipelineContext,
    video_id: UUID,
    stage: str,
    work: Callable[[int, Path], None],
) -> None:
    app, actor = ctx.app, stage_actor(stage)
    status = app.get_video(video_id).stages[stage].status
    if status in ("done", "failed"):
        log.info("video %s: %s already %s, nothing to do", video_id, stage, status)
        return
    try:
        attempt = app.start_video_stage(video_id, stage, actor)
    except DomainError as error:
        log.info("video %s: %s not started: %s", video_id, stage, error)
        return
    log.info("video %s: %s attempt %d started", video_id, stage, attempt)

    def attempt_work(workdir: Path) -> None:
        try:
            work(attempt, workdir)
        except DomainError as error:  # the result broke a rule (e.g. a video without frames)
            raise PermanentFailure(str(error)) from error

    _run_attempt(ctx, stage, video_id, attempt, attempt_work)


def _run_attempt(
    ctx: PipelineContext, stage: str, aggregate_id: UUID, attempt: int, work: Callable[[Path], None]
) -> None:
    """Run one attempt of a stage in a work directory of its own. A reason a person must act on is
    recorded at once and raised as ``PermanentFailure`` (not retried); other errors are raised for
    Dramatiq to retry (``StageFailures`` records the last one when it gives up)."""
    _started_attempt.set(attempt)
    try:
        with _workdir(ctx.settings) as workdir:
            work(workdir)
    except SupersededAttempt as error:  # a newer attempt owns the work: write nothing, retry nothing
        log.warning("%s", error)
    except (MediaError, PermanentFailure) as error:
        record_failure(ctx, stage, aggregate_id, attempt, str(error))
        if isinstance(error, MediaError):
            raise PermanentFailure(str(error)) from error
        raise
    else:
        kind = "video" if stage in VIDEO_STAGES else "clip"
        log.info("%s %s: %s done (attempt %d)", kind, aggregate_id, stage, attempt)


def download(ctx: PipelineContext, video_id: UUID) -> None:
    from infra.media.download import fetch_source
    from infra.media.transcode import normalise

    video = ctx.app.get_video(video_id)

    def work(attempt: int, workdir: Path) -> None:
        def cancelled() -> str | None:
            progress = ctx.app.get_video(video_id).stages["download"]
            if progress.status == "running" and progress.attempts == attempt:
                return None
            return (
                progress.last_error or f"download attempt {attempt} is no longer running ({progress.status})"
            )

        fetched = fetch_source(video.source, workdir / "download", ctx.settings, should_stop=cancelled)
        playable = normalise(fetched.path, workdir / "normalised.mp4")
        info = playable.info.video
        key = video_key(video_id, f"source-a{attempt}.mp4")  # this attempt's own key
        ensure_current(f"video {video_id}: download attempt {attempt}")
        ctx.storage.put_file(key, playable.path, "video/mp4", move=True)
        ctx.app.record_downloaded(
            video_id,
            attempt,
            stage_actor("download"),
            media_key=key,
            title=fetched.title,
            original_url=fetched.original_url,
            checksum=fetched.checksum,
            duration=info.duration,
            fps=info.fps,
            frame_count=info.frame_count,
            width=info.width,
            height=info.height,
            codec="h264" if playable.transcoded else info.codec,
        )

    _run_video_stage(ctx, video_id, "download", work)


def _fetch(ctx: PipelineContext, key: str, workdir: Path) -> Path:
    local = ctx.storage.local_path(key)
    if local is not None:
        return local
    return ctx.storage.get_to_path(key, workdir / Path(key).name)


def pass_prefix(proxy_key: str) -> str:
    """Where the proxy's decode pass leaves the sprite sheets and the shot analysis it made on the
    way: beside the proxy, named after it (``…/proxy-a2.mp4`` → ``…/proxy-a2-pass/``), so they are
    as attempt-scoped as the proxy and the later stages find them from the proxy's key alone."""
    return proxy_key.rsplit(".", 1)[0] + "-pass/"


def _shot_detector(ctx: PipelineContext) -> ShotDetector:
    """The detector the shots stage runs (and the proxy's decode pass feeds): ``HEATERS_SHOT_DETECTOR``."""
    from infra.media.shot_detection import make_detector

    return make_detector(ctx.settings.shot_detector)


def proxy(ctx: PipelineContext, video_id: UUID) -> None:
    """Encode the proxy; with ``media_single_pass`` the same decode also renders the sprite sheets
    and runs the shot detector, whose results the sprites and shots stages then record."""
    from infra.media.transcode import make_proxy

    def work(attempt: int, workdir: Path) -> None:
        video = ctx.app.get_video(video_id)
        source = _fetch(ctx, video.media["source"], workdir)
        out = workdir / "proxy.mp4"
        s = ctx.settings
        key = video_key(video_id, f"proxy-a{attempt}.mp4")  # this attempt's own key: never overwritten
        prefix = pass_prefix(key)
        # the sheets and the proxy are stored while the shot analysis finishes; the proxy is recorded
        # once all are stored (the sprites and shots stages look for them then)
        with ThreadPoolExecutor(_STORE_THREADS, thread_name_prefix="heaters-store") as store:
            stored: list[Future[None]] = []
            shots: Callable[[], Path | None] | None = None
            if s.media_single_pass:
                info, sprites_dir, shots = _decode_once(ctx, video_id, source, out, workdir, store)
            else:
                info, sprites_dir = make_proxy(source, out, s.proxy_max_height, preset=s.proxy_preset), None
            if info.video.frame_count != video.frame_count:
                log.warning(
                    "video %s: proxy has %d frames, source %d; clips follow the proxy",
                    video_id,
                    info.video.frame_count,
                    video.frame_count,
                )
            ensure_current(f"video {video_id}: proxy attempt {attempt}")
            if sprites_dir is not None:
                for path in sorted(sprites_dir.iterdir()):
                    stored.append(_store(ctx, store, prefix + "sprites/" + path.name, path))
            stored.append(_store(ctx, store, key, out, "video/mp4"))
            analysis = shots() if shots is not None else None
            if analysis is not None:
                stored.append(_store(ctx, store, prefix + "shots.json", analysis, "application/json"))
            for done in stored:
                done.result()
        ctx.app.record_proxy(
            video_id,
            attempt,
            key,
            info.video.width,
            info.video.height,
            stage_actor("proxy"),
            frame_count=info.video.frame_count,
        )

    _run_video_stage(ctx, video_id, "proxy", work)


#: Files of one stage stored at once (sprite sheets: mostly waiting on the disk's sync or the network).
_STORE_THREADS = 4


def _store(
    ctx: PipelineContext, store: ThreadPoolExecutor, key: str, path: Path, content_type: str | None = None
) -> Future[None]:
    """Hand a work file over to storage in ``store``'s threads (moved: the stage is done with it)."""
    kind = content_type or sprite_content_type(path.name)
    return store.submit(ctx.storage.put_file, key, path, kind, move=True)


def _decode_once(
    ctx: PipelineContext, video_id: UUID, source: Path, out: Path, workdir: Path, pool: ThreadPoolExecutor
) -> tuple[MediaInfo, Path | None, Callable[[], Path | None] | None]:
    """One decode of ``source`` for the proxy, the sprite sheets and the shot analysis: the proxy's
    info, the directory of the sprite sheets (None when the pass made none) and, when the analysis
    got every frame of the proxy, what waits for its file (None if the detector fails): the
    detector finishes in ``pool`` from the pass's last frame on, while ffmpeg completes the outputs
    and the caller stores them."""
    from infra.media.media_pass import Analysis, SpriteSpec, decode_once

    s = ctx.settings
    detector = _shot_detector(ctx)
    cuts: list[int] = []
    finishing: list[Future[list[int]]] = []

    def consume(batch: NDArray[np.uint8]) -> None:
        cuts.extend(detector.process(batch))

    def ended(_frames: int) -> None:
        finishing.append(pool.submit(detector.finish))

    sprite_spec = SpriteSpec(
        s.sprite_fps, s.sprite_tile_width, s.sprite_columns, s.sprite_rows, s.sprite_format, s.sprite_quality
    )
    result = decode_once(
        source,
        out,
        max_height=s.proxy_max_height,
        preset=s.proxy_preset,
        copy_playable=s.proxy_copy_playable,
        sprites=(sprite_spec, workdir / "sprites"),
        # a detector wanting an exact frame size (TransNetV2 alone: 48x27 whatever the aspect) decodes the
        # proxy in the shots stage instead
        analysis=(
            Analysis(detector.analysis_width, detector.pix_fmt, consume, ended=ended)
            if detector.analysis_size is None
            else None
        ),
    )
    sprites_dir = workdir / "sprites" if result.sprites is not None else None
    count = result.analysed_frames
    if count is None or not finishing:  # a finish already running ends unused (``pool`` waits for it)
        if detector.analysis_size is None:
            log.warning(
                "video %s: no shot analysis from the decode pass: %s", video_id, result.analysis_error
            )
        return result.proxy, sprites_dir, None

    def analysis() -> Path | None:
        try:
            cuts.extend(finishing[0].result())
        except Exception as error:  # the shots stage decodes the proxy itself and reports its own failure
            log.warning("video %s: shot analysis in the decode pass failed: %s", video_id, error)
            return None
        kinds = dict(getattr(detector, "kinds", {}))
        found = sorted({c for c in cuts if 0 < c < count})
        found_kinds = {str(c): kinds[c] for c in found if c in kinds}
        params = {"detector": detector.name, "params": detector.params, "kinds": found_kinds}
        path = workdir / "shots.json"
        path.write_text(json.dumps({"cuts": found, "frame_count": count, **params}), encoding="utf-8")
        return path

    return result.proxy, sprites_dir, analysis


def _from_pass(ctx: PipelineContext, video: Video, name: str) -> str | None:
    """The key of what the proxy's decode pass left for a later stage, if it did."""
    proxy_key = video.media.get("proxy")
    if proxy_key is None:
        return None
    key = pass_prefix(proxy_key) + name
    return key if ctx.storage.exists(key) else None


def sprites(ctx: PipelineContext, video_id: UUID) -> None:
    from infra.media.sprites import make_sprites

    def work(attempt: int, workdir: Path) -> None:
        video = ctx.app.get_video(video_id)
        rendered = _from_pass(ctx, video, "sprites/manifest.json")
        if rendered is not None:  # rendered in the proxy's decode pass: nothing left to decode
            ensure_current(f"video {video_id}: sprites attempt {attempt}")
            ctx.app.record_sprites(video_id, attempt, rendered, stage_actor("sprites"))
            return
        proxy_path = _fetch(ctx, video.media["proxy"], workdir)
        out = workdir / "sprites"
        s = ctx.settings
        make_sprites(
            proxy_path, out, s.sprite_fps, s.sprite_tile_width, s.sprite_columns, s.sprite_rows,
            image_format=s.sprite_format, quality=s.sprite_quality,
        )  # fmt: skip
        prefix = video_key(video_id, f"sprites-a{attempt}/")  # this attempt's own keys
        ensure_current(f"video {video_id}: sprites attempt {attempt}")
        for path in sorted(out.iterdir()):
            ctx.storage.put_file(prefix + path.name, path, sprite_content_type(path.name), move=True)
        ctx.app.record_sprites(video_id, attempt, prefix + "manifest.json", stage_actor("sprites"))

    _run_video_stage(ctx, video_id, "sprites", work)


def shots(ctx: PipelineContext, video_id: UUID) -> None:
    from infra.media.shot_detection import detect_shots

    def work(attempt: int, workdir: Path) -> None:
        video = ctx.app.get_video(video_id)
        analysed = _from_pass(ctx, video, "shots.json")
        if analysed is not None:  # analysed in the proxy's decode pass
            found = json.loads(ctx.storage.get_bytes(analysed).decode("utf-8"))
            detected, detector, params = list(found["cuts"]), str(found["detector"]), dict(found["params"])
        else:
            proxy_path = _fetch(ctx, video.media["proxy"], workdir)
            result = detect_shots(proxy_path, _shot_detector(ctx))
            detected, detector, params = result.cuts, result.detector, result.params
        cuts = [c for c in detected if 0 < c < video.frame_count]
        ensure_current(f"video {video_id}: shots attempt {attempt}")
        clip_ids = ctx.app.record_shots(video_id, attempt, cuts, detector, params, stage_actor("shots"))
        log.info("video %s: %d shots → %d clips", video_id, len(cuts) + 1, len(clip_ids))

    _run_video_stage(ctx, video_id, "shots", work)


VIDEO_STAGES: dict[str, Callable[[PipelineContext, UUID], None]] = {
    "download": download,
    "proxy": proxy,
    "sprites": sprites,
    "shots": shots,
}


# -- clip stages ----------------------------------------------------------------------------------


def _run_clip_stage(
    ctx: PipelineContext,
    clip_id: UUID,
    stage: str,
    needs: str | None,
    work: Callable[[Path], None],
    attempt: int,
) -> None:
    clip = ctx.app.get_clip(clip_id)
    progress = clip.stages[stage]
    if not clip.is_approved or progress.status in ("done", "failed"):
        log.info("clip %s: %s skipped (state %s, stage %s)", clip_id, stage, clip.state, progress.status)
        return
    if needs is not None and clip.stages[needs].status != "done":
        log.info("clip %s: %s waits for %s", clip_id, stage, needs)
        return
    try:
        _run_attempt(ctx, stage, clip_id, attempt, work)
    except DomainError as error:  # the clip changed meanwhile (e.g. approval undone): nothing to do
        log.info("clip %s: %s result not recorded: %s", clip_id, stage, error)


def keyframes(ctx: PipelineContext, clip_id: UUID, attempt: int) -> None:
    from infra.media.keyframes import extract_keyframes, keyframe_frames

    def work(workdir: Path) -> None:
        clip = ctx.app.get_clip(clip_id)
        video = ctx.app.get_video(clip.video_id)
        proxy_path = _fetch(ctx, video.media["proxy"], workdir)
        strategy = ctx.settings.keyframe_strategy
        paths = extract_keyframes(
            proxy_path, workdir / "kf", clip.start, clip.end, video.fps, strategy,
            short_side=ctx.settings.keyframe_short_side,
        )  # fmt: skip
        frames = [frame for _, frame in keyframe_frames(clip.start, clip.end, strategy)]
        keys = []
        ensure_current(f"clip {clip_id}: keyframes")
        for path in paths:
            key = clip_prefix(clip_id) + "keyframes/" + path.name
            ctx.storage.put_file(key, path, "image/jpeg", move=True)
            keys.append(key)
        ctx.app.record_keyframes(clip_id, strategy, keys, frames, stage_actor("keyframes"))

    _run_clip_stage(ctx, clip_id, "keyframes", None, work, attempt)


def embedding(ctx: PipelineContext, clip_id: UUID, attempt: int) -> None:
    from infra.clip_embedder import EmbeddingModelUnavailable

    def work(workdir: Path) -> None:
        clip = ctx.app.get_clip(clip_id)
        images = [_fetch(ctx, key, workdir) for key in clip.keyframes["keys"]]
        try:
            embedder = ctx.embedder()
            batcher = ctx.embedding_batcher()
        except EmbeddingModelUnavailable as error:
            raise PermanentFailure(str(error)) from error
        strategy = ctx.settings.embedding_strategy
        vectors = batcher.embed(images, strategy)  # in one batch with the clips of the other threads
        ensure_current(f"clip {clip_id}: embedding")
        ctx.app.record_embedding(
            clip_id,
            embedder.model_name,
            embedder.pretrained or "random",
            strategy,
            [v.tolist() for v in vectors],  # stored as float32 bytes (Clip.Embedded v2)
            stage_actor("embedding"),
        )

    _run_clip_stage(ctx, clip_id, "embedding", "keyframes", work, attempt)


def export(ctx: PipelineContext, clip_id: UUID, attempt: int) -> None:
    from infra.media.transcode import export_clip

    def work(workdir: Path) -> None:
        clip = ctx.app.get_clip(clip_id)
        video = ctx.app.get_video(clip.video_id)
        proxy_path = _fetch(ctx, video.media["proxy"], workdir)
        out = export_clip(proxy_path, workdir / "clip.mp4", clip.start, clip.end, video.fps)
        key = clip_prefix(clip_id) + "clip.mp4"
        ensure_current(f"clip {clip_id}: export")
        ctx.storage.put_file(key, out, "video/mp4", move=True)
        ctx.app.record_export(clip_id, key, stage_actor("export"))

    _run_clip_stage(ctx, clip_id, "export", "embedding", work, attempt)


def purge_archived(ctx: PipelineContext, clip_id: UUID) -> None:
    """Delete an archived clip's derived media (its events stay)."""
    clip = ctx.app.get_clip(clip_id)
    if clip.state != "archived" or clip.media_purged:
        log.info("clip %s: purge skipped (state %s)", clip_id, clip.state)
        return
    prefix = clip_prefix(clip_id)
    keys = ctx.storage.list(prefix)
    ctx.storage.delete_prefix(prefix)
    ctx.app.record_media_purged(clip_id, keys, stage_actor("purge"))


CLIP_STAGES: dict[str, Callable[[PipelineContext, UUID, int], None]] = {
    "keyframes": keyframes,
    "embedding": embedding,
    "export": export,
}
