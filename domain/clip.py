"""The Clip aggregate: one frame range ``[start, end)`` of a video and its review lifecycle.

created → (sprite ready) pending_review → approved | skipped | archived; grouped (approved and linked);
split (retired: two new clips replace it); merged (retired: one new clip replaces it and its neighbour);
retired (a clip made by a split or merge that was undone). Approved clips go on:
approved → keyframed → embedded → exported. The states are :class:`domain.stages.ClipState`; the state
each event leaves is :func:`clip_state_after`, which the read models follow too.

Every review decision is pushed on the clip's decision stack; :meth:`Clip.undo_decision` pops the last
one by a compensating ``DecisionUndone`` event, so history is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from domain.base import HeatersAggregate, StageProgress
from domain.errors import Conflict, DomainError, person, short_id, when
from domain.stages import ClipOrigin, ClipStage, ClipState, Decision, StageEvents, StageStatus, StageTable
from domain.vectors import DEFAULT_DTYPE, decode_vectors, encode_vectors

#: Awaiting a reviewer's decision (a skip is not a verdict).
REVIEWABLE = frozenset({ClipState.PENDING_REVIEW, ClipState.SKIPPED})
APPROVED = frozenset({ClipState.APPROVED, ClipState.KEYFRAMED, ClipState.EMBEDDED, ClipState.EXPORTED})
#: Replaced by other clips: out of the layout.
RETIRED = frozenset({ClipState.SPLIT, ClipState.MERGED, ClipState.RETIRED})
#: Undoing these un-approves the clip: its keyframes, embedding and export go.
UNAPPROVING = frozenset({Decision.APPROVE, Decision.GROUP})
#: How messages name each decision.
DONE = {
    Decision.APPROVE: "approved",
    Decision.SKIP: "skipped",
    Decision.ARCHIVE: "archived",
    Decision.GROUP: "grouped",
    Decision.SPLIT: "split",
    Decision.MERGE: "merged",
}


class Clip(HeatersAggregate):
    TOPIC = "heaters.clip:Clip"

    class Created(HeatersAggregate.Created):
        """``origin`` is ``shots``, ``split`` or ``merge``; ``parent_ids`` the clips it replaced."""

        TOPIC = "heaters.clip:Created"
        class_version = 2
        video_id: UUID
        start: int
        end: int
        origin: str
        parent_ids: list[UUID]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 clips only ever came from detected shots and had no parents."""
            state["origin"] = "shots"
            state["parent_ids"] = []

    class SpriteReady(HeatersAggregate.Event):
        TOPIC = "heaters.clip:SpriteReady"
        manifest_key: str

        def apply(self, clip: Clip) -> None:
            clip.sprite_manifest = self.manifest_key
            clip.state = clip_state_after(clip.state, self)

    class Approved(HeatersAggregate.Event):
        TOPIC = "heaters.clip:Approved"

        def apply(self, clip: Clip) -> None:
            clip._decide(Decision.APPROVE, self)

    class Skipped(HeatersAggregate.Event):
        TOPIC = "heaters.clip:Skipped"

        def apply(self, clip: Clip) -> None:
            clip._decide(Decision.SKIP, self)

    class Archived(HeatersAggregate.Event):
        TOPIC = "heaters.clip:Archived"

        def apply(self, clip: Clip) -> None:
            clip._decide(Decision.ARCHIVE, self)

    class Grouped(HeatersAggregate.Event):
        """This clip is approved and linked with ``with_clip_id``. A group is a connected set of
        linked clips (read models compute it), so groups that touch join without rewriting ids."""

        TOPIC = "heaters.clip:Grouped"
        with_clip_id: UUID

        def apply(self, clip: Clip) -> None:
            clip._decide(Decision.GROUP, self, with_clip_id=self.with_clip_id)
            clip.grouped_with.add(self.with_clip_id)
            clip.group_links[self.with_clip_id] = {"by": self.actor, "at": self.timestamp}

    class GroupJoined(HeatersAggregate.Event):
        """Another clip linked itself with this one (not a decision of this clip)."""

        TOPIC = "heaters.clip:GroupJoined"
        with_clip_id: UUID

        def apply(self, clip: Clip) -> None:
            clip.grouped_with.add(self.with_clip_id)
            clip.group_links[self.with_clip_id] = {"by": self.actor, "at": self.timestamp}

    class GroupLeft(HeatersAggregate.Event):
        """The link with ``with_clip_id`` was undone."""

        TOPIC = "heaters.clip:GroupLeft"
        with_clip_id: UUID

        def apply(self, clip: Clip) -> None:
            clip.grouped_with.discard(self.with_clip_id)
            clip.group_links.pop(self.with_clip_id, None)

    class Split(HeatersAggregate.Event):
        """Two new clips replace this one: ``[start, frame)`` and ``[frame, end)``."""

        TOPIC = "heaters.clip:Split"
        frame: int
        into: list[UUID]

        def apply(self, clip: Clip) -> None:
            clip._decide(Decision.SPLIT, self, frame=self.frame, into=list(self.into))

    class Merged(HeatersAggregate.Event):
        """This clip and ``with_clip_id`` were replaced by ``into``."""

        TOPIC = "heaters.clip:Merged"
        with_clip_id: UUID
        into: UUID

        def apply(self, clip: Clip) -> None:
            clip._decide(Decision.MERGE, self, with_clip_id=self.with_clip_id, into=self.into)

    class DecisionUndone(HeatersAggregate.Event):
        """Compensates the last decision: the clip returns to ``restored_state``."""

        TOPIC = "heaters.clip:DecisionUndone"
        undone: str
        restored_state: str

        def apply(self, clip: Clip) -> None:
            decision = clip.decisions.pop()
            clip.state = clip_state_after(clip.state, self)
            if decision["kind"] == Decision.GROUP:
                clip.grouped_with.discard(decision["with_clip_id"])
                clip.group_links.pop(decision["with_clip_id"], None)
            if decision["kind"] in UNAPPROVING:
                clip._clear_pipeline()

    class Retired(HeatersAggregate.Event):
        """A clip made by a split or merge that was undone; it leaves the layout."""

        TOPIC = "heaters.clip:Retired"
        reason: str

        def apply(self, clip: Clip) -> None:
            clip.state = clip_state_after(clip.state, self)

    class KeyframesExtracted(HeatersAggregate.Event):
        TOPIC = "heaters.clip:KeyframesExtracted"
        strategy: str
        keys: list[str]
        frames: list[int]

        def apply(self, clip: Clip) -> None:
            clip.keyframes = {"strategy": self.strategy, "keys": list(self.keys), "frames": list(self.frames)}
            clip._move(self)

    class Embedded(HeatersAggregate.Event):
        """L2-normalised vectors (one, or one per keyframe for ``keyframe_multi``), stored compactly:
        ``vectors`` is base64 of little-endian ``dtype`` values (float32 or float16), vector after
        vector (:mod:`domain.vectors`); :meth:`vector_list` decodes them."""

        TOPIC = "heaters.clip:Embedded"
        class_version = 2
        model: str
        pretrained: str
        strategy: str
        dimension: int
        dtype: str
        vectors: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 stored the vectors as JSON float lists: the same values as float32 bytes."""
            state["vectors"] = encode_vectors(state["vectors"], "float32")
            state["dtype"] = "float32"

        def vector_list(self) -> list[list[float]]:
            return decode_vectors(self.vectors, self.dtype, self.dimension)

        def apply(self, clip: Clip) -> None:
            clip.embedding = {
                "model": self.model,
                "pretrained": self.pretrained,
                "strategy": self.strategy,
                "dimension": self.dimension,
            }
            clip._move(self)

    class Exported(HeatersAggregate.Event):
        TOPIC = "heaters.clip:Exported"
        media_key: str

        def apply(self, clip: Clip) -> None:
            clip.export_key = self.media_key
            clip._move(self)

    class StageFailed(HeatersAggregate.Event):
        """A pipeline stage of an approved clip gave up (``stage``: keyframes, embedding, export)."""

        TOPIC = "heaters.clip:StageFailed"
        stage: str
        attempt: int
        reason: str

        def apply(self, clip: Clip) -> None:
            clip._move(self)

    class RetryRequested(HeatersAggregate.Event):
        TOPIC = "heaters.clip:RetryRequested"
        stage: str

        def apply(self, clip: Clip) -> None:
            clip._move(self)

    class MediaPurged(HeatersAggregate.Event):
        """Derived media of an archived clip was deleted after the grace period; events stay."""

        TOPIC = "heaters.clip:MediaPurged"
        keys: list[str]

        def apply(self, clip: Clip) -> None:
            clip.media_purged = True
            clip.keyframes = {}
            clip.export_key = None

    def __init__(self, video_id: UUID, start: int, end: int, origin: str, parent_ids: list[UUID]) -> None:
        self.video_id = video_id
        self.start = start
        self.end = end
        self.origin = origin
        self.parent_ids = list(parent_ids)
        self.state = ClipState.CREATED
        self.sprite_manifest: str | None = None
        self.decisions: list[dict[str, Any]] = []
        self.grouped_with: set[UUID] = set()
        #: Who linked each clip of ``grouped_with`` with this one, and when: {"by": actor, "at": time}.
        self.group_links: dict[UUID, dict[str, Any]] = {}
        self.stages: dict[str, StageProgress] = {s: StageProgress() for s in ClipStage}
        self.keyframes: dict[str, Any] = {}
        self.embedding: dict[str, Any] = {}
        self.export_key: str | None = None
        self.media_purged = False

    # -- creation ---------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        clip_id: UUID,
        video_id: UUID,
        start: int,
        end: int,
        origin: str,
        actor: str,
        parent_ids: list[UUID] | None = None,
    ) -> Clip:
        if not 0 <= start < end:
            raise DomainError(f"a clip needs 0 <= start < end, got [{start}, {end})")
        if origin not in tuple(ClipOrigin):
            raise DomainError(f"unknown clip origin {origin!r}")
        return cls._create(
            cls.Created,
            id=clip_id,
            video_id=video_id,
            start=start,
            end=end,
            origin=origin,
            parent_ids=list(parent_ids or []),
            actor=actor,
        )

    # -- derived state ----------------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        return self.state not in RETIRED

    @property
    def is_approved(self) -> bool:
        return self.state in APPROVED

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def last_decision(self) -> dict[str, Any] | None:
        return self.decisions[-1] if self.decisions else None

    # -- review commands --------------------------------------------------------------------------

    def mark_sprite_ready(self, manifest_key: str, actor: str) -> bool:
        if self.sprite_manifest == manifest_key:
            return False
        self.trigger_event(self.SpriteReady, manifest_key=manifest_key, actor=actor)
        return True

    def approve(self, actor: str) -> None:
        self.require_reviewable(Decision.APPROVE, actor)
        self.trigger_event(self.Approved, actor=actor)

    def skip(self, actor: str) -> None:
        """Put off deciding this clip: it comes back after the clips pending review (and may be put off
        again)."""
        self.require_reviewable(Decision.SKIP, actor)
        self.trigger_event(self.Skipped, actor=actor)

    def archive(self, actor: str) -> None:
        """Archive this clip. Refused while another clip is grouped with it: the group's decision stands
        (its author undoes it first), so an archived clip is never part of a group."""
        self.require_reviewable(Decision.ARCHIVE, actor)
        self.require_ungrouped(Decision.ARCHIVE, actor)
        self.trigger_event(self.Archived, actor=actor)

    def group_with(self, other: Clip, actor: str) -> None:
        """Approve this clip as grouped with ``other`` (both get linked). ``other`` must be pending
        review (or skipped) or approved: never archived, never replaced."""
        self.require_reviewable(Decision.GROUP, actor)
        if other.id == self.id:
            self._refuse(Decision.GROUP, "a clip cannot be grouped with itself")
        if other.video_id != self.video_id:
            self._refuse(Decision.GROUP, f"clip {short_id(other.id)} belongs to another video")
        if other.state == ClipState.CREATED:
            raise DomainError(f"cannot group with clip {short_id(other.id)}: its sprites are not ready yet")
        if other.state not in REVIEWABLE | APPROVED:
            raise other.refusal(
                f"group clip {short_id(self.id)} with clip {short_id(other.id)}",
                actor,
                "a group needs a partner pending review or approved",
            )
        if other.id in self.grouped_with:
            self._refuse(Decision.GROUP, f"it is already grouped with clip {short_id(other.id)}")
        self.trigger_event(self.Grouped, with_clip_id=other.id, actor=actor)
        other.trigger_event(other.GroupJoined, with_clip_id=self.id, actor=actor)

    def split_into(self, frame: int, left_id: UUID, right_id: UUID, actor: str) -> None:
        self.require_reviewable(Decision.SPLIT, actor)
        self.require_ungrouped(Decision.SPLIT, actor)
        self.trigger_event(self.Split, frame=frame, into=[left_id, right_id], actor=actor)

    def merge_into(self, other: Clip, merged_id: UUID, actor: str) -> None:
        self.check_merge(other, actor)
        self.trigger_event(self.Merged, with_clip_id=other.id, into=merged_id, actor=actor)
        other.trigger_event(other.Merged, with_clip_id=self.id, into=merged_id, actor=actor)

    def check_merge(self, other: Clip, actor: str) -> None:
        """A merge of this clip with ``other`` needs both awaiting review (pending or skipped) and in no
        group, so a merge never absorbs a decision."""
        if other.video_id != self.video_id:
            raise DomainError(
                f"cannot merge clip {short_id(self.id)} with clip {short_id(other.id)}: "
                "they belong to different videos"
            )
        self.require_reviewable(Decision.MERGE, actor)
        if other.state == ClipState.CREATED:
            raise DomainError(f"cannot merge with clip {short_id(other.id)}: its sprites are not ready yet")
        if other.state not in REVIEWABLE:
            raise other.refusal(
                f"merge clip {short_id(self.id)} with clip {short_id(other.id)}",
                actor,
                "a merge needs both clips pending review",
            )
        self.require_ungrouped(Decision.MERGE, actor)
        other.require_ungrouped(Decision.MERGE, actor)

    def undo_decision(self, actor: str) -> dict[str, Any]:
        """Pop the last decision (the caller compensates other clips for split, merge and group)."""
        decision = self.last_decision
        if decision is None:
            raise DomainError(f"clip {self.id} has no review decision to undo (state: {self.state})")
        self.trigger_event(
            self.DecisionUndone,
            undone=decision["kind"],
            restored_state=decision["previous_state"],
            actor=actor,
        )
        return decision

    def retire(self, reason: str, actor: str) -> None:
        self.require_live("retire")
        self.trigger_event(self.Retired, reason=reason, actor=actor)

    def leave_group(self, with_clip_id: UUID, actor: str) -> None:
        self.trigger_event(self.GroupLeft, with_clip_id=with_clip_id, actor=actor)

    # -- pipeline commands (idempotent: a result reported twice triggers one event) ----------------

    def record_keyframes(self, strategy: str, keys: list[str], frames: list[int], actor: str) -> bool:
        self._require_approved(ClipStage.KEYFRAMES)
        if self.stages[ClipStage.KEYFRAMES].status == StageStatus.DONE:
            return False
        if not keys or len(keys) != len(frames):
            raise DomainError(f"clip {self.id}: keyframes need one key per frame, at least one")
        outside = [f for f in frames if not self.start <= f < self.end]
        if outside:
            raise DomainError(f"clip {self.id}: keyframes {outside} lie outside [{self.start}, {self.end})")
        self.trigger_event(self.KeyframesExtracted, strategy=strategy, keys=keys, frames=frames, actor=actor)
        return True

    def record_embedding(
        self,
        model: str,
        pretrained: str,
        strategy: str,
        vectors: Sequence[Sequence[float]],
        actor: str,
        dtype: str = DEFAULT_DTYPE,
    ) -> bool:
        self._require_approved(ClipStage.EMBEDDING)
        if self.stages[ClipStage.KEYFRAMES].status != StageStatus.DONE:
            raise DomainError(f"clip {self.id}: embedding needs keyframes first (state: {self.state})")
        if self.stages[ClipStage.EMBEDDING].status == StageStatus.DONE:
            return False
        try:
            encoded = encode_vectors(vectors, dtype)
        except DomainError as error:
            raise DomainError(f"clip {self.id}: embedding {error}") from None
        self.trigger_event(
            self.Embedded,
            model=model,
            pretrained=pretrained,
            strategy=strategy,
            dimension=len(vectors[0]),
            dtype=dtype,
            vectors=encoded,
            actor=actor,
        )
        return True

    def record_export(self, media_key: str, actor: str) -> bool:
        self._require_approved(ClipStage.EXPORT)
        if self.stages[ClipStage.EMBEDDING].status != StageStatus.DONE:
            raise DomainError(f"clip {self.id}: export comes after embedding (state: {self.state})")
        if self.stages[ClipStage.EXPORT].status == StageStatus.DONE:
            return False
        self.trigger_event(self.Exported, media_key=media_key, actor=actor)
        return True

    def record_failure(self, stage: str, attempt: int, reason: str, actor: str) -> bool:
        if stage not in tuple(ClipStage):
            raise DomainError(f"unknown clip stage {stage!r}; stages are {', '.join(ClipStage)}")
        if not self.stages[stage].takes_failure(attempt, reason):
            return False
        self.trigger_event(self.StageFailed, stage=stage, attempt=attempt, reason=reason, actor=actor)
        return True

    def request_retry(self, actor: str) -> str:
        stage = clip_failed_stage(self.stages)
        if stage is None:
            raise DomainError(f"clip {self.id} has no failed stage to retry (state: {self.state})")
        self._require_approved("retry")
        self.trigger_event(self.RetryRequested, stage=stage, actor=actor)
        return stage

    def purge_media(self, keys: list[str], actor: str) -> bool:
        if self.state != ClipState.ARCHIVED:
            raise DomainError(f"clip {self.id}: only archived clips have their media purged ({self.state})")
        if self.media_purged:
            return False
        self.trigger_event(self.MediaPurged, keys=keys, actor=actor)
        return True

    # -- helpers ----------------------------------------------------------------------------------

    def _decide(self, kind: Decision, event: HeatersAggregate.Event, **details: Any) -> None:
        self.decisions.append(
            {
                "kind": kind,
                "previous_state": self.state,
                "by": event.actor,
                "at": event.timestamp,
                **details,
            }
        )
        self.state = clip_state_after(self.state, event)

    def _move(self, event: HeatersAggregate.Event) -> None:
        """Move the stage ``event`` moves, as :data:`CLIP_STAGE_EVENTS` pairs them, and the state with it."""
        moved = CLIP_STAGE_EVENTS.move(event)
        assert moved is not None, f"{type(event).__name__} moves no clip stage"
        stage, move = moved
        self.stages[stage] = self.stages[stage].moved(move, event)
        self.state = clip_state_after(self.state, event)

    def _clear_pipeline(self) -> None:
        self.stages = {s: StageProgress() for s in ClipStage}
        self.keyframes = {}
        self.embedding = {}
        self.export_key = None

    def _refuse(self, action: str, why: str) -> None:
        raise DomainError(f"cannot {action} clip {short_id(self.id)}: {why} (state: {self.state})")

    def require_live(self, action: str) -> None:
        if not self.is_live:
            self._refuse(action, "it was replaced by other clips")

    def require_reviewable(self, action: str, actor: str) -> None:
        if self.state == ClipState.CREATED:
            self._refuse(action, "its sprites are not ready yet")
        if self.state not in REVIEWABLE:
            raise self.refusal(f"{action} clip {short_id(self.id)}", actor)

    def require_ungrouped(self, action: str, actor: str) -> None:
        """Refuse ``action`` while another clip's group decision links to this clip."""
        if not self.group_links:
            return
        partner, link = next(iter(sorted(self.group_links.items(), key=lambda item: str(item[0]))))
        by, at = link.get("by"), link.get("at")
        mine = by == actor
        now = (
            "undo that grouping first (Ctrl+Z)"
            if mine
            else f"only {person(by)} or ops can undo that grouping; approve or skip this clip instead"
        )
        raise Conflict(
            f"cannot {action} clip {short_id(self.id)}: clip {short_id(partner)} was grouped with it by "
            f"{'you' if mine else person(by)} at {when(at)}; {now}",
            self.id,
            self.state,
            by,
            at,
        )

    def describe(self, actor: str | None = None, name: str | None = None) -> str:
        """What stands on this clip, in words: ``clip 1a2b3c4d was approved by rita at …``."""
        name = name or f"clip {short_id(self.id)}"
        if self.state == ClipState.RETIRED:
            return f"{name} was retired (the split or merge that made it was undone)"
        decision = self.last_decision
        if decision is None:
            return f"{name} is {self.state.replace('_', ' ')}"
        kind = decision["kind"]
        detail = ""
        if kind == Decision.GROUP:
            detail = f" with clip {short_id(decision['with_clip_id'])}"
        elif kind == Decision.MERGE:
            detail = f" with clip {short_id(decision['with_clip_id'])} into clip {short_id(decision['into'])}"
        elif kind == Decision.SPLIT:
            detail = " into clips " + " and ".join(short_id(c) for c in decision["into"])
        by = decision.get("by")
        who = "you" if by is not None and by == actor else person(by)
        now = "" if self.state == DONE[kind] or kind == Decision.GROUP else f" (now {self.state})"
        return f"{name} was {DONE[kind]}{detail} by {who} at {when(decision.get('at'))}{now}"

    def what_now(self, actor: str | None = None) -> str:
        """What a reviewer refused because of this clip's last decision can do."""
        decision = self.last_decision
        if decision is None or self.state == ClipState.RETIRED:
            return "pick another clip"
        by = decision.get("by")
        if by is not None and by == actor:
            return "undo that first (Ctrl+Z) to decide again"
        return f"only {person(by)} or ops can undo it; pick another clip"

    def refusal(self, doing: str, actor: str | None, rule: str = "") -> Conflict:
        """The :class:`Conflict` refusing ``doing`` because of what stands on this clip."""
        decision = self.last_decision or {}
        message = (
            f"cannot {doing}: {self.describe(actor, 'it' if doing.endswith(short_id(self.id)) else None)}"
        )
        if rule:
            message += f"; {rule}"
        return Conflict(
            f"{message}; {self.what_now(actor)}", self.id, self.state, decision.get("by"), decision.get("at")
        )

    def _require_approved(self, stage: str) -> None:
        if not self.is_approved:
            raise DomainError(f"clip {self.id}: {stage} is only for approved clips (state: {self.state})")


#: Each clip stage and the events that move it (the only place that pairs them). A clip's stages record
#: no start; ``StageFailed`` names its stage.
CLIP_STAGE_EVENTS = StageTable(
    ClipStage,
    {
        ClipStage.KEYFRAMES: StageEvents(None, Clip.KeyframesExtracted, Clip.StageFailed),
        ClipStage.EMBEDDING: StageEvents(None, Clip.Embedded, Clip.StageFailed),
        ClipStage.EXPORT: StageEvents(None, Clip.Exported, Clip.StageFailed),
    },
    retry=Clip.RetryRequested,
)

#: The state each event puts a clip in, whatever it was (see :func:`clip_state_after` for the rest).
CLIP_STATE_AFTER: dict[type[Any], ClipState] = {
    Clip.Created: ClipState.CREATED,
    Clip.Approved: ClipState.APPROVED,
    Clip.Skipped: ClipState.SKIPPED,
    Clip.Archived: ClipState.ARCHIVED,
    Clip.Grouped: ClipState.APPROVED,
    Clip.Split: ClipState.SPLIT,
    Clip.Merged: ClipState.MERGED,
    Clip.Retired: ClipState.RETIRED,
    Clip.KeyframesExtracted: ClipState.KEYFRAMED,
    Clip.Embedded: ClipState.EMBEDDED,
    Clip.Exported: ClipState.EXPORTED,
}

#: The events that can change a clip's state after its creation (what read models of states follow).
CLIP_STATE_EVENTS: frozenset[type[Any]] = frozenset(CLIP_STATE_AFTER.keys() - {Clip.Created}) | {
    Clip.SpriteReady,
    Clip.DecisionUndone,
}


def clip_state_after(state: str, event: Any) -> ClipState:
    """A clip's state after ``event``: what its ``apply`` sets, and what the read models follow.

    A sprite ready makes a new clip pending review; an undone decision restores the state before it;
    events that change no state (group links, failures, …) keep ``state``."""
    kind = type(event)
    if kind is Clip.SpriteReady:
        return ClipState.PENDING_REVIEW if state == ClipState.CREATED else ClipState(state)
    if kind is Clip.DecisionUndone:
        return ClipState(event.restored_state)
    return CLIP_STATE_AFTER.get(kind) or ClipState(state)


def clip_failed_stage(stages: Mapping[str, StageProgress]) -> ClipStage | None:
    """A clip's first failed stage, or ``None``."""
    return next((s for s in ClipStage if stages[s].status == StageStatus.FAILED), None)
