"""Random sequences of review decisions keep every invariant, and undo restores exactly what was."""

from __future__ import annotations

from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands.service import HeatersApplication
from domain.clip import APPROVED, RETIRED, REVIEWABLE
from domain.errors import DomainError
from domain.partition import Segment, check_partition
from tests.helpers import clipped_video

ALICE = "user:alice"
KNOWN_STATES = REVIEWABLE | APPROVED | RETIRED | {"archived", "created"}


class ReviewMachine(RuleBasedStateMachine):
    """A reviewer clicking around one video at random."""

    def __init__(self) -> None:
        super().__init__()
        self.app = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, min_clip_frames=2)
        self.video_id: UUID
        self.frame_count = 0
        # What each clip's state and the layout were before each decision, to check undo against.
        self.before: dict[UUID, list[tuple[dict[UUID, str], list[tuple[int, int, UUID]]]]] = {}

    def teardown(self) -> None:
        self.app.close()

    @initialize(
        frame_count=st.integers(min_value=2, max_value=400),
        cut_fractions=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=6),
    )
    def make_video(self, frame_count: int, cut_fractions: list[float]) -> None:
        cuts = sorted({int(f * frame_count) for f in cut_fractions})
        self.video_id, _ = clipped_video(self.app, frame_count=frame_count, cuts=cuts)
        self.frame_count = frame_count

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
    def clips_partition_the_video(self) -> None:
        if not self.frame_count:
            return
        video = self.app.get_video(self.video_id)
        check_partition(video.layout, self.frame_count)
        # The video's layout and the clips' own ranges and states agree.
        for segment in video.layout:
            clip = self.app.get_clip(segment.clip_id)
            assert clip.is_live, f"{clip.id} is in the layout but {clip.state}"
            assert Segment(clip.start, clip.end, clip.id) == segment

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
