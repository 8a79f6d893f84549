"""Random sequences of review decisions keep every invariant, and undo restores exactly what was."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands.service import HeatersApplication
from domain.clip import APPROVED, RETIRED, REVIEWABLE
from domain.errors import DomainError
from domain.partition import Segment, check_partition
from tests.helpers import clipped_video

ALICE = "user:alice"
KNOWN_STATES = REVIEWABLE | APPROVED | RETIRED | {"archived", "created"}


class OneVideoMachine(RuleBasedStateMachine):
    """One video, clipped at random, in an in-memory application: at every step its live clips
    partition its frames, and its layout and the clips' own ranges and states agree."""

    def __init__(self) -> None:
        super().__init__()
        self.app = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, min_clip_frames=2)
        self.video_id: UUID
        self.frame_count = 0

    def teardown(self) -> None:
        self.app.close()

    def clip_video(self, frame_count: int, cut_fractions: list[float]) -> list[UUID]:
        """The video of ``frame_count`` frames, cut at those fractions of it; returns its clips."""
        cuts = sorted({int(f * frame_count) for f in cut_fractions})
        self.video_id, ids = clipped_video(self.app, frame_count=frame_count, cuts=cuts)
        self.frame_count = frame_count
        return ids

    @invariant()
    def clips_partition_the_video(self) -> None:
        if not self.frame_count:
            return
        video = self.app.get_video(self.video_id)
        check_partition(video.layout, self.frame_count)
        for segment in video.layout:
            clip = self.app.get_clip(segment.clip_id)
            assert clip.is_live, f"{clip.id} is in the layout but {clip.state}"
            assert Segment(clip.start, clip.end, clip.id) == segment


class ReviewMachine(OneVideoMachine):
    """A reviewer clicking around one video at random."""

    def __init__(self) -> None:
        super().__init__()
        # What each clip's state and the layout were before each decision, to check undo against.
        self.before: dict[UUID, list[tuple[dict[UUID, str], list[tuple[int, int, UUID]]]]] = {}

    @initialize(
        frame_count=st.integers(min_value=2, max_value=400),
        cut_fractions=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=6),
    )
    def make_video(self, frame_count: int, cut_fractions: list[float]) -> None:
        self.clip_video(frame_count, cut_fractions)

    # -- helpers -------------------------------------------------------------------------------------

    def layout(self) -> list[tuple[int, int, UUID]]:
        return [(s.start, s.end, s.clip_id) for s in self.app.get_video(self.video_id).layout]

    def pick(self, index: int) -> UUID:
        layout = self.layout()
        return layout[index % len(layout)][2]

    def store_size(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def attempt(self, clip_id: UUID, action: str, *args: object, partner: UUID | None = None) -> bool:
        """Run a command; a refused command must store nothing."""
        layout, size = self.layout(), self.store_size()
        states = {c: self.app.get_clip(c).state for _, _, c in layout}
        try:
            getattr(self.app, action)(clip_id, *args, ALICE)
        except DomainError:
            assert self.store_size() == size
            assert self.layout() == layout
            return False
        for decided in (clip_id, partner):
            if decided is not None:
                self.before.setdefault(decided, []).append((states, layout))
        return True

    # -- rules ---------------------------------------------------------------------------------------

    @rule(index=st.integers(min_value=0, max_value=50))
    def approve(self, index: int) -> None:
        self.attempt(self.pick(index), "approve")

    @rule(index=st.integers(min_value=0, max_value=50))
    def skip(self, index: int) -> None:
        self.attempt(self.pick(index), "skip")

    @rule(index=st.integers(min_value=0, max_value=50))
    def archive(self, index: int) -> None:
        self.attempt(self.pick(index), "archive")

    @rule(index=st.integers(min_value=0, max_value=50))
    def group_with_previous(self, index: int) -> None:
        self.attempt(self.pick(index), "group", None)

    @rule(index=st.integers(min_value=0, max_value=50), fraction=st.floats(min_value=0.0, max_value=1.0))
    def split(self, index: int, fraction: float) -> None:
        clip = self.app.get_clip(self.pick(index))
        frame = clip.start + int(fraction * clip.length)
        if self.attempt(clip.id, "split", frame):
            assert self.app.get_clip(clip.id).state == "split"

    @rule(index=st.integers(min_value=0, max_value=50))
    def merge_with_previous(self, index: int) -> None:
        clip_id = self.pick(index)
        partner = self.app.get_video(self.video_id).previous_clip(clip_id)
        self.attempt(clip_id, "merge", None, partner=partner)

    @rule(index=st.integers(min_value=0, max_value=50))
    def undo(self, index: int) -> None:
        clip_id = self.pick(index)
        clip = self.app.get_clip(clip_id)
        target = clip_id if clip.decisions or clip.origin == "shots" else clip.parent_ids[0]
        target_clip = self.app.get_clip(target)
        size, layout_now = self.store_size(), self.layout()
        try:
            undone = self.app.undo(clip_id, ALICE)
        except DomainError:
            assert self.store_size() == size
            return
        states_before, layout_before = self.before[target].pop()
        assert self.app.get_clip(target).state == states_before[target]
        decision = target_clip.decisions[-1]
        if undone in ("split", "merge"):
            # Undo restores exactly the clips the split or merge replaced, and touches no other clip.
            replaced = {target} | ({decision["with_clip_id"]} if undone == "merge" else set())
            made = set(decision["into"]) if undone == "split" else {decision["into"]}
            expected = sorted(
                [s for s in layout_now if s[2] not in made] + [s for s in layout_before if s[2] in replaced]
            )
            assert self.layout() == expected
        if undone == "merge":
            partner = decision["with_clip_id"]
            self.before[partner].pop()
            assert self.app.get_clip(partner).state == states_before[partner]

    # -- invariants ----------------------------------------------------------------------------------

    @invariant()
    def every_clip_is_in_a_known_state(self) -> None:
        if not self.frame_count:
            return
        for clip_id in self.before:
            clip = self.app.get_clip(clip_id)
            assert clip.state in KNOWN_STATES
            for other_id in clip.grouped_with:  # links between live clips are mutual
                other = self.app.get_clip(other_id)
                if clip.is_live and other.is_live:
                    assert clip_id in other.grouped_with


ReviewMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestReview = ReviewMachine.TestCase


# -- several reviewers at once ------------------------------------------------------------------------

REVIEWERS = ("user:r1", "user:r2", "user:r3")
OPS = "user:olga"


def _standing(app: HeatersApplication, clip_id: UUID) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a reviewer's decision fixes on a clip: its review state and its stack of decisions."""
    clip = app.get_clip(clip_id)
    return clip.state, tuple((d["kind"], d["by"]) for d in clip.decisions)


class ReviewersMachine(OneVideoMachine):
    """Two or three reviewers interleave looks and decisions on one video, each acting on the clip
    (and the version of it) they last looked at, and undoing from their own stack; ops undoes anyone's.

    After every step: each stored decision was made on the version its reviewer saw, no decided clip
    changed except by its author's (or ops') undo, refused commands stored nothing, and the clips still
    partition the video."""

    def __init__(self) -> None:
        super().__init__()
        self.known: set[UUID] = set()
        self.screen: dict[str, tuple[UUID, int]] = {}  # reviewer → (clip on screen, version seen)
        self.stacks: dict[str, list[UUID]] = {r: [] for r in REVIEWERS}
        self.decided = 0

    @initialize(
        frame_count=st.integers(min_value=20, max_value=300),
        cut_fractions=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=6),
    )
    def make_video(self, frame_count: int, cut_fractions: list[float]) -> None:
        self.known.update(self.clip_video(frame_count, cut_fractions))

    def layout_ids(self) -> list[UUID]:
        return [s.clip_id for s in self.app.get_video(self.video_id).layout]

    def run(self, actor: str, command: Callable[[], object], undo_of: UUID | None = None) -> bool:
        """Run one command; check what it stored against what stands."""
        before = {c: _standing(self.app, c) for c in self.known}
        size = self.app.recorder.max_notification_id() or 0
        popped: dict[UUID, str] = {}
        if undo_of is not None:
            target = self.app.get_clip(undo_of)
            if target.last_decision is not None:
                popped[undo_of] = target.last_decision["by"]
        try:
            command()
        except DomainError:
            assert (self.app.recorder.max_notification_id() or 0) == size, "a refused command stored events"
            return False
        self.known.update(self.layout_ids())
        for clip_id, (state, decisions) in before.items():
            if state in REVIEWABLE or state == "created":
                continue  # awaiting review: anyone may decide it
            if _standing(self.app, clip_id) == (state, decisions):
                continue
            # a decided clip changed: only by the undo of a decision its author (or ops) undid
            assert undo_of is not None, f"{actor} changed decided clip {clip_id} ({state}) without undo"
            author = decisions[-1][1]
            assert actor in (author, OPS), f"{actor} undid {author}'s decision on {clip_id}"
        return True

    # -- rules ---------------------------------------------------------------------------------------

    @rule(reviewer=st.sampled_from(REVIEWERS), index=st.integers(min_value=0, max_value=50))
    def look(self, reviewer: str, index: int) -> None:
        ids = self.layout_ids()
        clip = self.app.get_clip(ids[index % len(ids)])
        self.screen[reviewer] = (clip.id, clip.version)

    @rule(
        reviewer=st.sampled_from(REVIEWERS),
        action=st.sampled_from(["approve", "skip", "archive", "group", "merge", "split"]),
        fraction=st.floats(min_value=0.0, max_value=1.0),
    )
    def decide(self, reviewer: str, action: str, fraction: float) -> None:
        if reviewer not in self.screen:
            return
        clip_id, seen = self.screen[reviewer]
        clip = self.app.get_clip(clip_id)
        commands: dict[str, Callable[[], object]] = {
            "approve": lambda: self.app.approve(clip_id, reviewer, seen=seen),
            "skip": lambda: self.app.skip(clip_id, reviewer, seen=seen),
            "archive": lambda: self.app.archive(clip_id, reviewer, seen=seen),
            "group": lambda: self.app.group(clip_id, None, reviewer, seen=seen),
            "merge": lambda: self.app.merge(clip_id, None, reviewer, seen=seen),
            "split": lambda: self.app.split(
                clip_id, clip.start + int(fraction * clip.length), reviewer, seen=seen
            ),
        }
        done = self.run(reviewer, commands[action])
        event(f"{action}: {'stored' if done else 'refused'}")
        if done:
            # the decision was made on the version the reviewer saw: its event is the very next one
            stored = next(e for e in self.app.history(clip_id) if e.version == seen + 1)
            assert stored.actor == reviewer
            assert self.app.get_clip(clip_id).decisions[-1]["by"] == reviewer
            self.stacks[reviewer].append(clip_id)
            self.decided += 1
            del self.screen[reviewer]

    @rule(reviewer=st.sampled_from(REVIEWERS))
    def undo_own(self, reviewer: str) -> None:
        """The reviewer's undo stack (as the server keeps it): the top entry still theirs is undone."""
        stack = self.stacks[reviewer]
        while stack:
            last = self.app.get_clip(stack[-1]).last_decision
            if last is not None and last["by"] == reviewer:
                break
            stack.pop()  # undone meanwhile (by ops): nothing of theirs left there
        if not stack:
            return
        done = self.run(reviewer, lambda: self.app.undo(stack[-1], reviewer), undo_of=stack[-1])
        event(f"undo own: {'stored' if done else 'refused'}")
        if done:
            stack.pop()

    @rule(reviewer=st.sampled_from(REVIEWERS), index=st.integers(min_value=0, max_value=50))
    def undo_any_clip(self, reviewer: str, index: int) -> None:
        """A reviewer tries to undo whatever clip: refused unless the decision is theirs."""
        ids = sorted(self.known, key=str)
        clip_id = ids[index % len(ids)]
        last = self.app.get_clip(clip_id).last_decision
        undone = self.run(reviewer, lambda: self.app.undo(clip_id, reviewer), undo_of=clip_id)
        if undone and last is not None:
            assert last["by"] == reviewer

    @rule(index=st.integers(min_value=0, max_value=50))
    def ops_undo(self, index: int) -> None:
        ids = sorted(self.known, key=str)
        clip_id = ids[index % len(ids)]
        self.run(OPS, lambda: self.app.undo(clip_id, OPS, any_author=True), undo_of=clip_id)

    # -- invariants ----------------------------------------------------------------------------------

    @invariant()
    def groups_never_hold_archived_or_replaced_clips(self) -> None:
        for clip_id in self.known:
            clip = self.app.get_clip(clip_id)
            for other_id in clip.grouped_with:
                other = self.app.get_clip(other_id)
                assert clip_id in other.grouped_with, "group links are mutual"
                assert other.state != "archived" and other.is_live, f"{other_id} is {other.state} in a group"


ReviewersMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestReviewers = ReviewersMachine.TestCase
