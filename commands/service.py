"""The application service: every command of Heaters, over eventsourcing's ``Application``.

Each command loads the aggregates it needs, lets the domain check its rules, and saves every changed
aggregate in ONE atomic save. A version clash on save means someone else changed an aggregate meanwhile:
if a clip the command decided on changed, the command fails with :class:`Conflict` (nothing stored);
if only the video's layout moved (another clip of the same video was split or merged), the command is
re-run on fresh state. Pipeline results are idempotent: reporting a result twice stores one event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError

from commands.errors import Conflict, NotFound, parse_id
from domain import review
from domain.base import HeatersAggregate
from domain.clip import Clip
from domain.errors import DomainError, short_id
from domain.stages import ClipState
from domain.video import Video
from infra.database import check_pool_lightly

log = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A", bound=HeatersAggregate)

#: How often a command is re-run when only aggregates it did not decide on moved under it.
RERUNS = 8
#: Aggregates kept in memory per process (eventsourcing's cache, fast-forwarded from the store on every
#: load, so never stale): a split, merge or undo otherwise replays its video's whole history, which
#: grows with every layout change.
AGGREGATE_CACHE_SIZE = 1000
#: Loads of one aggregate are serialized (by a lock chosen by its id): the library fast-forwards the
#: cached aggregate under its own lock but copies it outside it, so a copy could see a half-applied event.
LOAD_LOCKS = 64


class _UnitOfWork:
    """Loads aggregates for one run of a command and remembers the versions decisions were based on."""

    def __init__(self, app: HeatersApplication) -> None:
        self.app = app
        self.decided_on: dict[UUID, int] = {}

    def video(self, video_id: UUID) -> Video:
        return self.app._load(video_id, Video, "video")

    def clip(
        self, clip_id: UUID, *, decided_on: bool = True, seen: int | None = None, actor: str | None = None
    ) -> Clip:
        """Load a clip. ``seen``: the version the reviewer saw; a clip changed since is refused (the
        decision would be made on a state nobody looked at)."""
        clip = self.app._load(clip_id, Clip, "clip")
        if seen is not None and clip.version != seen:
            raise Conflict(
                f"clip {short_id(clip.id)} changed since you saw it: {clip.describe(actor)}; "
                "nothing was saved, look at it again",
                clip.id,
                clip.state,
                (clip.last_decision or {}).get("by"),
                (clip.last_decision or {}).get("at"),
            )
        if decided_on:
            self.decided_on[clip.id] = clip.version
        return clip


@dataclass(frozen=True)
class Undone:
    """What an undo reversed: the decision's kind (``approve``, ``split``, ...), the clip it was made
    on, and the decision as that clip recorded it (who, when, the clips it made)."""

    kind: str
    clip_id: UUID
    decision: dict[str, Any]


@dataclass(frozen=True)
class HistoryEntry:
    """One stored event as the auditor sees it."""

    version: int
    event: str
    topic: str
    actor: str
    timestamp: datetime
    payload: dict[str, Any]


_ENVELOPE = {"originator_id", "originator_version", "timestamp", "actor", "originator_topic"}


class HeatersApplication(Application[UUID]):
    """Commands and aggregate queries of Heaters."""

    name = "Heaters"
    env: ClassVar[dict[str, str]] = {"AGGREGATE_CACHE_MAXSIZE": str(AGGREGATE_CACHE_SIZE)}

    def __init__(self, env: dict[str, str] | None = None, *, min_clip_frames: int = 3) -> None:
        super().__init__(env)
        if min_clip_frames < 1:
            raise ValueError("min_clip_frames must be at least 1")
        self.min_clip_frames = min_clip_frames
        self._load_locks = [threading.Lock() for _ in range(LOAD_LOCKS)]
        self._saved = threading.local()
        datastore = getattr(self.recorder, "datastore", None)
        if datastore is not None:  # PostgreSQL: check pooled connections without a round trip each
            check_pool_lightly(datastore.pool)

    # -- loading ----------------------------------------------------------------------------------

    def _get(self, aggregate_id: UUID, *, copy: bool = True) -> object:
        """The current state of an aggregate: from the cache, fast-forwarded by the events stored since
        (one round trip), or replayed from its whole history when not cached; a copy of its own unless
        ``copy`` is false (then the cached object itself: to be read, never changed)."""
        with self._load_locks[aggregate_id.int % LOAD_LOCKS]:
            return self.repository.get(aggregate_id, deepcopy_from_cache=copy)

    def _load(self, ident: object, cls: type[A], kind: str, *, copy: bool = True) -> A:
        aggregate_id = parse_id(ident, f"{kind} id")
        try:
            aggregate = self._get(aggregate_id, copy=copy)
        except AggregateNotFoundError:
            raise NotFound(kind, aggregate_id) from None
        if not isinstance(aggregate, cls):
            raise NotFound(kind, aggregate_id)
        return aggregate

    def get_video(self, video_id: object) -> Video:
        return self._load(video_id, Video, "video")

    def get_clip(self, clip_id: object) -> Clip:
        return self._load(clip_id, Clip, "clip")

    def clip_state(self, clip_id: object) -> ClipState:
        """A clip's current state, read off the cached aggregate (fast-forwarded from the store as by
        :meth:`get_clip`, one round trip) without the copy a command needs (a deep copy of the clip
        was most of the review queue's check of each clip it serves)."""
        return ClipState(self._load(clip_id, Clip, "clip", copy=False).state)

    def get_any(self, ident: object) -> Video | Clip:
        aggregate_id = parse_id(ident)
        try:
            aggregate = self._get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound("video or clip", aggregate_id) from None
        assert isinstance(aggregate, Video | Clip)
        return aggregate

    def clips_of(self, video_id: object) -> list[Clip]:
        """The live clips of a video, in frame order."""
        video = self.get_video(video_id)
        return [self.get_clip(cid) for cid in video.clip_ids()]

    def video_ids(self) -> list[UUID]:
        """Every submitted video, oldest first (a scan of the log; read models serve pages)."""
        ids: list[UUID] = []
        start = 1
        while True:
            batch = self.recorder.select_notifications(start, 1000, topics=[Video.Created.TOPIC])
            ids += [n.originator_id for n in batch]  # type: ignore[misc]
            if len(batch) < 1000:
                return ids
            start = batch[-1].id + 1

    # -- running commands -------------------------------------------------------------------------

    def _run(
        self,
        command: Callable[[_UnitOfWork], tuple[Sequence[HeatersAggregate], T]],
        name: str,
        actor: str | None = None,
    ) -> T:
        self._saved.position = None
        for _ in range(RERUNS):
            uow = _UnitOfWork(self)
            aggregates, result = command(uow)
            try:
                recordings = self.save(*aggregates)
            except IntegrityError:
                for clip_id, version in uow.decided_on.items():
                    current = self.get_clip(clip_id)
                    if current.version != version:
                        log.info("%s on clip %s lost a race: it is now %s", name, clip_id, current.state)
                        raise current.refusal(
                            f"{name} clip {short_id(clip_id)} (someone decided first, nothing was saved)",
                            actor,
                        ) from None
                log.info("%s re-run: an aggregate it did not decide on changed meanwhile", name)
                continue
            if recordings:
                self._saved.position = max(r.notification.id for r in recordings)
            return result
        raise DomainError(f"{name} could not be saved after {RERUNS} tries: the video is too busy, try again")

    def saved_position(self) -> int | None:
        """The log position of the last event this thread's last command stored (None before any):
        read models that reached it show that command's result (read-your-writes)."""
        position = getattr(self._saved, "position", None)
        return int(position) if position is not None else None

    # -- submission -------------------------------------------------------------------------------

    def submit(self, source: str, actor: str) -> UUID:
        if not isinstance(source, str):
            raise ValueError("source must be a URL or a file path")
        video = Video.submit(uuid4(), source, actor)
        self.save(video)
        log.info("video %s submitted by %s from %s", video.id, actor, video.source)
        return video.id

    # -- review decisions -------------------------------------------------------------------------

    # ``seen``: the clip's version the reviewer saw; when given, a clip changed since is a Conflict.

    def approve(self, clip_id: object, actor: str, *, seen: int | None = None) -> None:
        self._decide(clip_id, actor, "approve", lambda clip: clip.approve(actor), seen)

    def skip(self, clip_id: object, actor: str, *, seen: int | None = None) -> None:
        self._decide(clip_id, actor, "skip", lambda clip: clip.skip(actor), seen)

    def archive(self, clip_id: object, actor: str, *, seen: int | None = None) -> None:
        self._decide(clip_id, actor, "archive", lambda clip: clip.archive(actor), seen)

    def _decide(
        self, clip_id: object, actor: str, name: str, decide: Callable[[Clip], None], seen: int | None
    ) -> None:
        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], None]:
            clip = uow.clip(parse_id(clip_id, "clip id"), seen=seen, actor=actor)
            decide(clip)
            return [clip], None

        self._run(command, name, actor)
        log.info("clip %s: %s by %s", clip_id, name, actor)

    def group(
        self, clip_id: object, with_clip_id: object | None, actor: str, *, seen: int | None = None
    ) -> UUID:
        """Group a clip with another (by default the previous clip of its video); returns the other's id."""

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], UUID]:
            clip = uow.clip(parse_id(clip_id, "clip id"), seen=seen, actor=actor)
            other = uow.clip(self._neighbour(uow, clip, with_clip_id, "group"))
            return review.group_clips(clip, other, actor), other.id

        other_id = self._run(command, "group", actor)
        log.info("clip %s grouped with %s by %s", clip_id, other_id, actor)
        return other_id

    def split(self, clip_id: object, frame: int, actor: str, *, seen: int | None = None) -> tuple[UUID, UUID]:
        """Split a clip at ``frame`` (first frame of the right part); returns the two new clip ids."""
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise ValueError(f"frame must be an integer, got {frame!r}")

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], tuple[UUID, UUID]]:
            clip = uow.clip(parse_id(clip_id, "clip id"), seen=seen, actor=actor)
            video = uow.video(clip.video_id)
            left, right = uuid4(), uuid4()
            changed = review.split_clip(video, clip, frame, left, right, self.min_clip_frames, actor)
            return changed, (left, right)

        result = self._run(command, "split", actor)
        log.info("clip %s split at frame %d into %s by %s", clip_id, frame, result, actor)
        return result

    def merge(
        self, clip_id: object, with_clip_id: object | None, actor: str, *, seen: int | None = None
    ) -> UUID:
        """Merge a clip with an adjacent one (by default the previous); returns the new clip's id."""
        return self.merge_pair(clip_id, with_clip_id, actor, seen=seen)[0]

    def merge_pair(
        self, clip_id: object, with_clip_id: object | None, actor: str, *, seen: int | None = None
    ) -> tuple[UUID, UUID]:
        """:meth:`merge`, returning the new clip's id and the id of the clip merged in with ``clip_id``."""

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], tuple[UUID, UUID]]:
            clip = uow.clip(parse_id(clip_id, "clip id"), seen=seen, actor=actor)
            other_id = self._neighbour(uow, clip, with_clip_id, "merge")
            other = uow.clip(other_id)
            if other.video_id != clip.video_id:
                raise DomainError(
                    f"cannot merge clip {clip.id} with clip {other.id}: they belong to different videos"
                )
            video = uow.video(clip.video_id)
            merged_id = uuid4()
            return review.merge_clips(video, clip, other, merged_id, actor), (merged_id, other.id)

        merged, other_id = self._run(command, "merge", actor)
        log.info("clip %s merged with %s into %s by %s", clip_id, other_id, merged, actor)
        return merged, other_id

    def _neighbour(self, uow: _UnitOfWork, clip: Clip, other: object | None, action: str) -> UUID:
        if other is not None:
            return parse_id(other, "other clip id")
        previous = uow.video(clip.video_id).previous_clip(clip.id)
        if previous is None:
            raise DomainError(f"cannot {action} clip {clip.id} with the previous clip: it is the first clip")
        return previous

    def undo(self, clip_id: object, actor: str, *, any_author: bool = False) -> str:
        """Reverse the last review decision of a clip (split and merge included); returns what was undone.
        Only the decision's author may, or ops with ``any_author`` (the events name who undid it)."""
        return self.undo_decision(clip_id, actor, any_author=any_author).kind

    def undo_decision(self, clip_id: object, actor: str, *, any_author: bool = False) -> Undone:
        """:meth:`undo`, returning the decision undone and the clip it was made on."""

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], Undone]:
            clip = uow.clip(parse_id(clip_id, "clip id"))
            target_id = review.undo_target(clip)
            target = clip if target_id == clip.id else uow.clip(target_id)
            decision = dict(target.last_decision or {})
            related = {cid: uow.clip(cid) for cid in review.related_clip_ids(target)}
            video = uow.video(target.video_id)
            changed = review.undo_last_decision(video, target, related, actor, any_author=any_author)
            return changed, Undone(str(decision.get("kind") or "nothing"), target.id, decision)

        undone = self._run(command, "undo", actor)
        log.info("clip %s: %s undone by %s", clip_id, undone.kind, actor)
        return undone

    # -- pipeline: video stages -------------------------------------------------------------------

    def start_video_stage(self, video_id: object, stage: str, actor: str) -> int:
        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], int]:
            video = uow.video(parse_id(video_id, "video id"))
            return [video], video.start_stage(stage, actor)

        return self._run(command, f"start {stage}")

    def record_downloaded(self, video_id: object, attempt: int, actor: str, **metadata: Any) -> bool:
        return self._record_video(video_id, lambda v: v.record_downloaded(actor, attempt, **metadata))

    def record_proxy(
        self,
        video_id: object,
        attempt: int,
        media_key: str,
        width: int,
        height: int,
        actor: str,
        frame_count: int | None = None,
    ) -> bool:
        return self._record_video(
            video_id, lambda v: v.record_proxy(actor, attempt, media_key, width, height, frame_count)
        )

    def record_sprites(self, video_id: object, attempt: int, manifest_key: str, actor: str) -> bool:
        return self._record_video(video_id, lambda v: v.record_sprites(actor, attempt, manifest_key))

    def record_video_failure(
        self, video_id: object, stage: str, attempt: int, reason: str, actor: str
    ) -> bool:
        recorded = self._record_video(video_id, lambda v: v.record_failure(stage, attempt, reason, actor))
        if recorded:
            log.warning("video %s: %s failed (attempt %d): %s", video_id, stage, attempt, reason)
        return recorded

    def _record_video(self, video_id: object, record: Callable[[Video], bool]) -> bool:
        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], bool]:
            video = uow.video(parse_id(video_id, "video id"))
            return [video], record(video)

        return self._run(command, "record video result")

    def record_shots(
        self,
        video_id: object,
        attempt: int,
        cuts: Sequence[int],
        detector: str,
        params: dict[str, Any],
        actor: str,
    ) -> list[UUID]:
        """Record shot boundaries and create the clips (pending review) in one save; idempotent."""

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], list[UUID]]:
            video = uow.video(parse_id(video_id, "video id"))
            boundaries = sorted({int(c) for c in cuts if 0 < int(c) < video.frame_count})
            ids = [uuid4() for _ in range(len(boundaries) + 1)]
            layout = video.record_shots(actor, attempt, boundaries, detector, params, ids)
            if layout is None:
                return [], video.clip_ids()
            clips = review.create_clips_for_shots(video, layout, actor)
            return [video, *clips], [c.id for c in clips]

        return self._run(command, "record shots")

    def cancel_download(self, video_id: object, actor: str, reason: str | None = None) -> str:
        """Stop a video's waiting or running download; it ends ``DownloadFailed`` with the returned reason.
        A worker running it notices within seconds and drops the connection."""

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], str]:
            video = uow.video(parse_id(video_id, "video id"))
            return [video], video.cancel_download(actor, reason)

        text = self._run(command, "cancel download")
        log.warning("video %s: download %s", video_id, text)
        return text

    def request_retry(self, ident: object, actor: str) -> str:
        """Re-open the failed stage of a video or clip; returns the stage."""

        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], str]:
            aggregate = self.get_any(ident)
            return [aggregate], aggregate.request_retry(actor)

        stage = self._run(command, "retry")
        log.info("%s: retry of %s requested by %s", ident, stage, actor)
        return stage

    # -- pipeline: clip stages --------------------------------------------------------------------

    def record_keyframes(
        self, clip_id: object, strategy: str, keys: list[str], frames: list[int], actor: str
    ) -> bool:
        return self._record_clip(clip_id, lambda c: c.record_keyframes(strategy, keys, frames, actor))

    def record_embedding(
        self,
        clip_id: object,
        model: str,
        pretrained: str,
        strategy: str,
        vectors: list[list[float]],
        actor: str,
    ) -> bool:
        return self._record_clip(
            clip_id, lambda c: c.record_embedding(model, pretrained, strategy, vectors, actor)
        )

    def record_export(self, clip_id: object, media_key: str, actor: str) -> bool:
        return self._record_clip(clip_id, lambda c: c.record_export(media_key, actor))

    def record_clip_failure(self, clip_id: object, stage: str, attempt: int, reason: str, actor: str) -> bool:
        recorded = self._record_clip(clip_id, lambda c: c.record_failure(stage, attempt, reason, actor))
        if recorded:
            log.warning("clip %s: %s failed (attempt %d): %s", clip_id, stage, attempt, reason)
        return recorded

    def record_media_purged(self, clip_id: object, keys: list[str], actor: str) -> bool:
        return self._record_clip(clip_id, lambda c: c.purge_media(keys, actor))

    def _record_clip(self, clip_id: object, record: Callable[[Clip], bool]) -> bool:
        def command(uow: _UnitOfWork) -> tuple[list[HeatersAggregate], bool]:
            clip = uow.clip(parse_id(clip_id, "clip id"), decided_on=False)
            return [clip], record(clip)

        return self._run(command, "record clip result")

    # -- the auditor's view -----------------------------------------------------------------------

    def history(self, ident: object) -> list[HistoryEntry]:
        """Every stored event of a video or clip, oldest first."""
        aggregate = self.get_any(ident)
        return [_entry(e) for e in self.events.get(aggregate.id)]

    def version_at(self, ident: object, when: datetime) -> int:
        """The version a video or clip had at ``when`` (the last event at or before it)."""
        aggregate = self.get_any(ident)
        if when.tzinfo is None:
            raise ValueError("--as-of time needs a timezone, e.g. 2026-11-25T12:00:00+00:00")
        version = 0
        for event in self.events.get(aggregate.id):
            if event.timestamp > when:  # type: ignore[attr-defined]
                break
            version = event.originator_version
        if version == 0:
            raise DomainError(
                f"{type(aggregate).__name__.lower()} {aggregate.id} did not exist yet at {when}"
            )
        return version

    def state_at(self, ident: object, version: int) -> Video | Clip:
        aggregate = self.get_any(ident)
        if not 1 <= version <= aggregate.version:
            raise DomainError(
                f"{type(aggregate).__name__.lower()} {aggregate.id} has versions 1 to {aggregate.version}, "
                f"not {version}"
            )
        restored: object = self.repository.get(aggregate.id, version=version)
        assert isinstance(restored, Video | Clip)
        return restored

    def iter_events(self, start: int = 1, batch: int = 500) -> Iterator[DomainEventProtocol[UUID]]:
        """Every domain event in log order (for tools and tests)."""
        while True:
            notifications = self.recorder.select_notifications(start, batch)
            for n in notifications:
                yield self.mapper.to_domain_event(n)
            if len(notifications) < batch:
                return
            start = notifications[-1].id + 1


def _entry(event: DomainEventProtocol[UUID]) -> HistoryEntry:
    payload = {k: v for k, v in event.__dict__.items() if k not in _ENVELOPE}
    topic = getattr(type(event), "TOPIC", type(event).__qualname__)
    return HistoryEntry(
        version=event.originator_version,
        event=topic.rpartition(":")[2],
        topic=topic,
        actor=getattr(event, "actor", "unknown"),
        timestamp=event.timestamp,  # type: ignore[attr-defined]
        payload=payload,
    )
