"""A decision stands: no reviewer's command changes or absorbs a clip another reviewer decided, and only
a decision's author (or ops) undoes it. Each refusal is a ``Conflict`` naming the clip's state, who
decided it and when, and stores nothing."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.service import HeatersApplication
from domain.errors import Conflict
from tests.helpers import clipped_video

RITA, ROB, OLGA = "user:rita", "user:rob", "user:olga"

#: What one reviewer may have decided on a clip, as a command on the service.
DECISIONS: dict[str, Callable[[HeatersApplication, UUID, UUID, str], object]] = {
    "approve": lambda app, clip, _prev, who: app.approve(clip, who),
    "archive": lambda app, clip, _prev, who: app.archive(clip, who),
    "group": lambda app, clip, prev, who: app.group(clip, prev, who),
    "split": lambda app, clip, _prev, who: app.split(clip, app.get_clip(clip).start + 10, who),
}
DONE = {"approve": "approved", "archive": "archived", "group": "grouped", "split": "split"}


def _app() -> HeatersApplication:
    return HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def _stored(app: HeatersApplication) -> int:
    return int(app.recorder.max_notification_id() or 0)


def _refused(app: HeatersApplication, command: Callable[[], object]) -> Conflict:
    before = _stored(app)
    with pytest.raises(Conflict) as refused:
        command()
    assert _stored(app) == before, "a refused command stored events"
    return refused.value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(decision=st.sampled_from(sorted(DECISIONS)), merger=st.sampled_from([RITA, ROB]))
def test_merge_never_absorbs_a_decided_clip(decision: str, merger: str) -> None:
    """Rita decides clip b (approve, archive, group with a, split); a merge of c with b is refused,
    whoever asks, and the message says what Rita did and when."""
    app = _app()
    try:
        _video, (a, b, c) = clipped_video(app)
        DECISIONS[decision](app, b, a, RITA)
        conflict = _refused(app, lambda: app.merge(c, b, merger))
        assert conflict.clip_id == b and conflict.decided_by == RITA and conflict.decided_at is not None
        message = str(conflict)
        assert f"was {DONE[decision]}" in message and str(b)[:8] in message and " UTC" in message
        assert ("by you" in message) == (merger == RITA)
        assert ("only rita or ops can undo it" in message) == (merger != RITA)
        assert "merge needs both clips pending review" in message
        # the merge of a decided clip with a pending neighbour is refused too (the clip itself)
        if decision != "split":
            _refused(app, lambda: app.merge(b, c, merger))
    finally:
        app.close()


def test_merge_of_skipped_clips_is_allowed_they_await_review() -> None:
    app = _app()
    try:
        _video, (a, b, _c) = clipped_video(app)
        app.skip(a, RITA)
        merged = app.merge(b, None, ROB)
        assert app.get_clip(merged).state == "pending_review"
    finally:
        app.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    partner=st.sampled_from(["pending", "skipped", "approved", "archived", "split"]),
    grouper=st.sampled_from([RITA, ROB]),
)
def test_group_needs_a_partner_pending_or_approved_and_not_archived(partner: str, grouper: str) -> None:
    app = _app()
    try:
        _video, (a, b, _c) = clipped_video(app)
        if partner == "skipped":
            app.skip(a, RITA)
        elif partner == "approved":
            app.approve(a, RITA)
        elif partner == "archived":
            app.archive(a, RITA)
        elif partner == "split":
            app.split(a, 50, RITA)
        if partner in ("pending", "skipped", "approved"):
            assert app.group(b, a, grouper) == a
            assert app.get_clip(a).grouped_with == {b}
            assert app.get_clip(a).state == {"pending": "pending_review"}.get(partner, partner)
        else:
            conflict = _refused(app, lambda: app.group(b, a, grouper))
            assert conflict.clip_id == a and conflict.state == partner and conflict.decided_by == RITA
            assert f"was {partner}" in str(conflict) and "pending review or approved" in str(conflict)
    finally:
        app.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=st.sampled_from(["archive", "split", "merge"]), actor=st.sampled_from([RITA, ROB]))
def test_a_clip_someone_grouped_with_is_not_archived_split_or_merged(action: str, actor: str) -> None:
    """Rob groups b with a (a stays pending). Archiving, splitting or merging a would break Rob's
    decision: refused, naming the group, who made it and when. Approving a is fine."""
    app = _app()
    try:
        _video, (a, b, c) = clipped_video(app)
        app.group(b, a, ROB)
        commands: dict[str, Callable[[], object]] = {
            "archive": lambda: app.archive(a, actor),
            "split": lambda: app.split(a, 50, actor),
            "merge": lambda: app.merge(a, c, actor),
        }
        conflict = _refused(app, commands[action])
        message = str(conflict)
        assert conflict.clip_id == a and conflict.decided_by == ROB
        assert f"clip {str(b)[:8]} was grouped with it by {'you' if actor == ROB else 'rob'} at" in message
        app.approve(a, actor)
        assert app.get_clip(a).state == "approved" and app.get_clip(a).grouped_with == {b}
    finally:
        app.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(decision=st.sampled_from(["approve", "archive", "group", "split", "skip"]))
def test_only_the_author_or_ops_undoes_a_decision(decision: str) -> None:
    app = _app()
    try:
        _video, (a, b, _c) = clipped_video(app)
        decide: dict[str, Callable[[], object]] = {
            "approve": lambda: app.approve(b, RITA),
            "archive": lambda: app.archive(b, RITA),
            "group": lambda: app.group(b, a, RITA),
            "split": lambda: app.split(b, 150, RITA),
            "skip": lambda: app.skip(b, RITA),
        }
        decide[decision]()
        conflict = _refused(app, lambda: app.undo(b, ROB))
        assert conflict.decided_by == RITA
        assert f"cannot undo the {decision} of clip {str(b)[:8]}: rita made it at" in str(conflict)
        assert "only rita or ops can undo it" in str(conflict)
        assert app.undo(b, OLGA, any_author=True) == decision
        undone = [e for e in app.history(b) if e.event == "DecisionUndone"]
        assert [e.actor for e in undone] == [OLGA]
        decide[decision]()
        assert app.undo(b, RITA) == decision
    finally:
        app.close()


def test_a_stale_view_is_refused() -> None:
    """Rita saw clip b at some version; Rob grouped c with b since: Rita's approve of what she saw is
    refused (it would be made on a state nobody looked at)."""
    app = _app()
    try:
        _video, (_a, b, c) = clipped_video(app)
        seen = app.get_clip(b).version
        app.group(c, b, ROB)
        conflict = _refused(app, lambda: app.approve(b, RITA, seen=seen))
        assert "changed since you saw it" in str(conflict)
        app.approve(b, RITA, seen=app.get_clip(b).version)
    finally:
        app.close()


def test_an_undo_never_removes_a_clip_someone_grouped_with() -> None:
    """Rita splits b; Rob groups c with the right half; Rita's undo of the split would retire that half
    inside Rob's group, so it is refused naming the group, and the group stands."""
    app = _app()
    try:
        _video, (_a, b, c) = clipped_video(app)
        _left, right = app.split(b, app.get_clip(b).start + 10, RITA)
        app.group(c, right, ROB)
        conflict = _refused(app, lambda: app.undo(b, RITA))
        assert conflict.clip_id == right
        assert f"clip {str(c)[:8]} is grouped with it" in str(conflict)
        assert app.get_clip(right).is_live and c in app.get_clip(right).grouped_with
        app.undo(c, ROB)  # once Rob undoes his grouping, Rita's undo goes through
        app.undo(b, RITA)
        assert not app.get_clip(right).is_live and app.get_clip(b).is_live
    finally:
        app.close()
