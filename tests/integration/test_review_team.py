"""Two or three reviewers over the JSON API at once: decisions stand, undo is the author's, leases are
fair and short, and every refusal says who did what and when."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import LocalObjectStorage
from projections.runner import ProjectionDaemon, catch_up
from tests.helpers import PIPELINE, clipped_video
from tests.integration.test_web_app import PASSWORD, Web
from web.app import create_app
from web.auth import add_user

pytestmark = pytest.mark.integration


@contextmanager
def team(
    address: DatabaseAddress,
    schema: str,
    heaters: HeatersApplication,
    tmp_path: Path,
    lease_seconds: float = 45,
) -> Iterator[dict[str, Web]]:
    """One web app; reviewers rita, rob and rae, and olga (ops), each logged in on their own client."""
    settings = Settings(database_schema=schema, home=tmp_path, media_dir=tmp_path / "media")
    storage = LocalObjectStorage(tmp_path / "media")
    names = {"rita": "reviewer", "rob": "reviewer", "rae": "reviewer", "olga": "ops"}
    for name, role in names.items():
        add_user(address, schema, name, role, PASSWORD)
    daemon = ProjectionDaemon(heaters, address)
    daemon.start()
    app = create_app(settings, heaters, address, storage, secret="test-secret", lease_seconds=lease_seconds)
    # one client runs the app's startup and shutdown; the others share the running app
    clients = [TestClient(app, base_url="http://testserver.local") for _ in names]
    try:
        with clients[0]:
            webs = {}
            for name, client in zip(names, clients, strict=True):
                webs[name] = Web(heaters, address, schema, storage, client)
                assert webs[name].login(name).status_code == 303
            yield webs
    finally:
        daemon.stop()


@pytest.fixture
def reviewers(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[dict[str, Web]]:
    with team(pg_address, pg_schema, pg_app, tmp_path) as webs:
        yield webs


def video(web: Web, frame_count: int = 300, cuts: Sequence[int] = (100, 200)) -> tuple[UUID, list[UUID]]:
    """A clipped video, with the read models caught up (the pages show it)."""
    made = clipped_video(web.heaters, frame_count=frame_count, cuts=cuts)
    catch_up(web.heaters, web.address)
    return made


def events(web: Web, clip: Any) -> list[tuple[str, str]]:
    return [(e.event, e.actor) for e in web.heaters.history(clip)]


def test_merge_never_absorbs_another_reviewers_decision(reviewers: dict[str, Web]) -> None:
    """The issue's repro: r1 approves clip 1, r2 merges clip 2 with previous → 409 naming rita's approval
    and its time; the same for an archived clip. Nothing is stored."""
    rita, rob = reviewers["rita"], reviewers["rob"]
    _video, clips = video(rita, frame_count=400, cuts=(100, 200, 300))
    assert rita.post(f"/api/clips/{clips[0]}/approve").status_code == 200
    assert rita.post(f"/api/clips/{clips[2]}/archive").status_code == 200
    for clip in (clips[1], clips[3]):
        before = rob.heaters.recorder.max_notification_id()
        refused = rob.post(f"/api/clips/{clip}/merge")
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["kind"] == "conflict" and body["decided_by"] == "user:rita" and body["decided_at"]
        assert "by rita at" in body["error"] and "only rita or ops can undo it" in body["error"]
        assert str(clips[0])[:8] in body["error"] or str(clips[2])[:8] in body["error"]
        assert str(clips[0]) not in body["error"]  # short ids in messages
        assert rob.heaters.recorder.max_notification_id() == before
    assert rob.heaters.get_clip(clips[0]).state == "approved"
    assert rob.heaters.get_clip(clips[2]).state == "archived"


def test_undo_is_the_authors_and_follows_the_reviewer_to_any_tab(
    reviewers: dict[str, Web], pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication
) -> None:
    rita, rob, olga = reviewers["rita"], reviewers["rob"], reviewers["olga"]
    _video, (a, b, c) = video(rita)
    assert rita.post(f"/api/clips/{a}/approve").status_code == 200
    assert rita.post(f"/api/clips/{b}/skip").status_code == 200
    # rob cannot undo rita's decision: by id nor from his own (empty) stack
    refused = rob.post(f"/api/clips/{a}/undo")
    assert refused.status_code == 409 and "only rita or ops can undo it" in refused.json()["error"]
    nothing = rob.post("/api/review/undo")
    assert nothing.status_code == 422 and "nothing to undo" in nothing.json()["error"]
    # a second tab of rita (a fresh session) undoes the same history, newest first
    tab = TestClient(rita.client.app, base_url="http://testserver.local")  # the app runs already
    second = Web(rita.heaters, rita.address, rita.schema, rita.storage, tab)
    assert second.login("rita").status_code == 303
    undone = second.post("/api/review/undo")
    assert undone.status_code == 200, undone.text
    assert undone.json()["undone"] == "skip" and undone.json()["new_clip_ids"] == [str(b)]
    assert rita.post("/api/review/undo").json()["undone"] == "approve"
    assert rita.post("/api/review/undo").status_code == 422
    # ops undoes anyone's decision, and is named as who undid it
    assert rob.post(f"/api/clips/{c}/approve").status_code == 200
    by_ops = olga.post(f"/api/clips/{c}/undo")
    assert by_ops.status_code == 200 and "(made by rob)" in by_ops.json()["message"]
    assert events(rob, c)[-2:] == [("Approved", "user:rob"), ("DecisionUndone", "user:olga")]
    # rob's stack entry for c is gone with it: his undo says so rather than undoing something else
    assert rob.post("/api/review/undo").status_code == 422


def test_leases_are_capped_released_and_short(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    with team(pg_address, pg_schema, pg_app, tmp_path, lease_seconds=2) as webs:
        rita, rob = webs["rita"], webs["rob"]
        cuts = list(range(10, 220, 10))  # 22 clips
        _video, clips = video(rita, frame_count=220, cuts=cuts)
        held: list[str] = []
        for _ in range(4):  # asking again and again never leases more than 10
            url = "/api/review/next?count=10" + (f"&exclude={','.join(held)}" if held else "")
            held += [c["id"] for c in rita.client.get(url).json()["clips"]]
        assert len(held) == 10 == len(set(held))
        theirs = [c["id"] for c in rob.client.get("/api/review/next?count=10").json()["clips"]]
        assert len(theirs) == 10 and not set(theirs) & set(held)

        # the page going away (sendBeacon: a form with the CSRF token) releases its clips at once
        released = rita.client.post(
            "/api/review/leases/release",
            data={"_csrf_token": rita.token, "clips": ",".join(held[:5])},
        )
        assert released.status_code == 200 and released.json()["released"] == 5, released.text
        rae = webs["rae"]
        got = [c["id"] for c in rae.client.get("/api/review/next?count=10").json()["clips"]]
        assert set(held[:5]) <= set(got)

        # logging out releases the reviewer's clips too
        rae.client.post("/logout", headers={"x-csrftoken": rae.token})
        assert set(held[:5]) <= {c["id"] for c in rita.client.get("/api/review/next?count=5").json()["clips"]}

        # a closed tab sends no heartbeat: its clips are free after the (short) lease time
        assert rita.post("/api/review/leases/renew", {"shown": held[0]}).json()["renewed"] >= 5
        time.sleep(2.5)
        freed = [
            c["id"]
            for c in rob.client.get(f"/api/review/next?count=10&exclude={','.join(theirs)}").json()["clips"]
        ]
        assert freed and set(freed) <= set(held) | set(str(c) for c in clips)
        assert set(held) & set(freed)


def test_a_prefetched_clip_never_blocks_a_merge_but_one_on_screen_does(reviewers: dict[str, Web]) -> None:
    rita, rob = reviewers["rita"], reviewers["rob"]
    _video, clips = video(rita, frame_count=400, cuts=(100, 200, 300))
    queue = [c["id"] for c in rita.client.get("/api/review/next?count=3").json()["clips"]]
    assert queue == [str(c) for c in clips[:3]]
    rita.post("/api/review/leases/renew", {"shown": queue[0]})  # clip 0 on rita's screen
    # rob opens clip 2 by its link: rita only prefetched it, so it is his now
    opened = rob.client.get(f"/api/clips/{clips[2]}").json()
    assert opened["leased_by"] is None
    merged = rob.post(f"/api/clips/{clips[2]}/merge")  # with clip 1, prefetched by rita
    assert merged.status_code == 200, merged.text
    # rita's page learns that clips 1 and 2 are gone
    gone = rita.client.get(f"/api/review/next?count=1&exclude={','.join(queue)}").json()["gone"]
    assert set(gone) == {str(clips[1]), str(clips[2])}
    # clip 0 is on rita's screen: rob's merge (or group) of clip 1's successor with it is refused
    new = merged.json()["new_clip_ids"][0]
    rob.client.get(f"/api/clips/{new}")
    refused = rob.post(f"/api/clips/{new}/group")
    assert refused.status_code == 409 and "open on rita's screen" in refused.json()["error"]


def test_skipped_clips_are_listed_and_come_back_after_the_rest(reviewers: dict[str, Web]) -> None:
    rita = reviewers["rita"]
    _video, (a, b, c) = video(rita)
    assert rita.post(f"/api/clips/{a}/skip").status_code == 200
    listed = rita.client.get("/api/review/skipped").json()
    assert [s["id"] for s in listed] == [str(a)]
    page = rita.client.get("/review/skipped")
    assert page.status_code == 200 and f'href="/review?clip={a}"' in page.text
    order = [x["id"] for x in rita.client.get("/api/review/next?count=3").json()["clips"]]
    assert order == [str(b), str(c), str(a)]  # the skipped clip after the rest
    assert rita.post(f"/api/clips/{a}/skip").status_code == 200  # and may be put off again


def test_next_after_a_bookmarked_clip_comes_from_its_video(reviewers: dict[str, Web]) -> None:
    rita = reviewers["rita"]
    _first, _ = video(rita)
    _second, (x, y, z) = video(rita)
    page = rita.client.get(f"/review?clip={y}")
    assert page.status_code == 200
    initial = page.text.split('id="initial-data">')[1].split("</script>")[0]
    ids = [c["id"] for c in json.loads(initial)["clips"]]
    assert ids[:2] == [str(y), str(z)], ids
    assert str(x) not in ids[:2]


def test_reviewers_read_the_history_of_clips(reviewers: dict[str, Web]) -> None:
    rita = reviewers["rita"]
    _video, (a, _b, _c) = video(rita)
    rita.post(f"/api/clips/{a}/approve")
    history = rita.client.get(f"/clips/{a}/history")
    assert history.status_code == 200 and 'data-event="Approved"' in history.text
    assert 'method="post"' not in history.text.split("<main>")[1]  # read-only


def test_search_says_why_a_clip_has_no_embedding(reviewers: dict[str, Web]) -> None:
    rita = reviewers["rita"]
    _video, (a, b, _c) = video(rita)
    rita.heaters.approve(a, "user:rita")
    rita.heaters.record_keyframes(a, "multi", ["k/a/10.jpg"], [10], PIPELINE)
    reason = "no CLIP model configured: set HEATERS_CLIP_MODEL"
    rita.heaters.record_clip_failure(a, "embedding", 3, reason, PIPELINE)
    catch_up(rita.heaters, rita.address)
    page = rita.client.get(f"/search?clip={a}")
    assert page.status_code == 200
    assert f"its embedding stage failed: {reason}" in page.text and "No neighbours" not in page.text
    api = rita.client.get("/api/search", params={"clip": str(b)}).json()
    assert "only approved clips are embedded, and it is pending review" in api["why_none"]
    unknown = "00000000-0000-0000-0000-000000000000"
    assert rita.client.get(f"/search?clip={unknown}").status_code == 404
    missing = rita.client.get("/api/search", params={"clip": unknown})
    assert missing.status_code == 404 and "no clip" in missing.json()["error"]


def test_a_group_partner_is_not_archived_and_shows_its_group(reviewers: dict[str, Web]) -> None:
    rita, rob = reviewers["rita"], reviewers["rob"]
    _video, (a, b, _c) = video(rita)
    assert rita.post(f"/api/clips/{b}/group").status_code == 200  # with a, still pending
    partner = rob.client.get(f"/api/clips/{a}").json()
    assert partner["grouped_with"] == [str(b)] and partner["state"] == "pending_review"
    refused = rob.post(f"/api/clips/{a}/archive", {"seen": partner["version"]})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert f"clip {str(b)[:8]} was grouped with it by rita at" in error and "approve or skip" in error
    assert rob.post(f"/api/clips/{a}/approve", {"seen": partner["version"]}).status_code == 200


def test_reviewers_interleaving_over_http_never_misapply_a_decision(reviewers: dict[str, Web]) -> None:
    """The stateful test of ``tests/unit/test_review_stateful.py`` at the level reviewers meet it: three
    reviewers and ops interleave looks, decisions (with the version they saw) and undos over the JSON
    API, leases included. Every stored decision was made on the version its reviewer saw; no decided clip
    changes except by its author's (or ops') undo; refusals store nothing; the clips partition the video."""
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        invariant,
        rule,
        run_state_machine_as_test,
    )

    from domain.clip import REVIEWABLE
    from domain.partition import check_partition

    heaters = reviewers["rita"].heaters
    names = ("rita", "rob", "rae")
    known: set[UUID] = set()
    outcomes: Counter[int] = Counter()

    def standing(clip_id: UUID) -> tuple[str, tuple[tuple[str, str], ...]]:
        clip = heaters.get_clip(clip_id)
        return clip.state, tuple((d["kind"], d["by"]) for d in clip.decisions)

    class OverHttp(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.video_id: UUID | None = None
            self.screen: dict[str, tuple[UUID, int]] = {}

        @initialize(
            cuts=st.lists(st.integers(min_value=10, max_value=290), min_size=2, max_size=5, unique=True)
        )
        def make_video(self, cuts: list[int]) -> None:
            self.video_id, ids = video(reviewers["rita"], cuts=sorted(cuts))
            known.update(ids)
            for name in names:
                reviewers[name].client.post("/logout", headers={"x-csrftoken": reviewers[name].token})
                assert reviewers[name].login(name).status_code == 303  # logging out released the leases

        def layout(self) -> list[UUID]:
            assert self.video_id is not None
            return [s.clip_id for s in heaters.get_video(self.video_id).layout]

        def check(self, who: str, call: Any, undo: bool = False) -> Any:
            before = {c: standing(c) for c in known}
            size = heaters.recorder.max_notification_id()
            response = call()
            assert response.status_code in (200, 409, 422), response.text
            outcomes[response.status_code] += 1
            if response.status_code != 200:
                assert heaters.recorder.max_notification_id() == size, response.text
                return None
            known.update(self.layout())
            for clip_id, (state, decisions) in before.items():
                if state in REVIEWABLE or state == "created" or standing(clip_id) == (state, decisions):
                    continue
                assert undo, f"{who} changed decided clip {clip_id} ({state})"
                assert who in (decisions[-1][1], "user:olga"), f"{who} undid {decisions[-1][1]}'s decision"
            return response.json()

        @rule(who=st.sampled_from(names), index=st.integers(min_value=0, max_value=20))
        def look(self, who: str, index: int) -> None:
            ids = self.layout()
            view = reviewers[who].client.get(f"/api/clips/{ids[index % len(ids)]}").json()
            self.screen[who] = (UUID(view["id"]), int(view["version"]))

        @rule(
            pick=st.integers(min_value=0, max_value=2),
            action=st.sampled_from(["approve", "skip", "archive", "group", "merge", "split"]),
        )
        def decide(self, pick: int, action: str) -> None:
            """One of the reviewers with a clip on screen decides on it."""
            if not self.screen:
                return
            who = sorted(self.screen)[pick % len(self.screen)]
            clip_id, seen = self.screen.pop(who)
            clip = heaters.get_clip(clip_id)
            body: dict[str, Any] = {"seen": seen}
            if action == "split":
                body["frame"] = clip.start + clip.length // 2
            result = self.check(
                f"user:{who}", lambda: reviewers[who].post(f"/api/clips/{clip_id}/{action}", body)
            )
            if result is not None:
                stored = next(e for e in heaters.history(clip_id) if e.version == seen + 1)
                assert stored.actor == f"user:{who}"

        @rule(who=st.sampled_from(names))
        def undo_own(self, who: str) -> None:
            self.check(f"user:{who}", lambda: reviewers[who].post("/api/review/undo"), undo=True)

        @rule(who=st.sampled_from([*names, "olga"]), index=st.integers(min_value=0, max_value=40))
        def undo_by_id(self, who: str, index: int) -> None:
            ids = sorted((c for c in known if heaters.get_clip(c).decisions), key=str)
            if not ids:
                return
            clip_id = ids[index % len(ids)]
            self.check(f"user:{who}", lambda: reviewers[who].post(f"/api/clips/{clip_id}/undo"), undo=True)

        @invariant()
        def clips_partition_the_video(self) -> None:
            if self.video_id is not None:
                video_agg = heaters.get_video(self.video_id)
                check_partition(video_agg.layout, video_agg.frame_count)

    run_state_machine_as_test(
        OverHttp,
        settings=settings(
            max_examples=12, stateful_step_count=25, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )  # fmt: skip
    assert outcomes[200] >= 10 and outcomes[409] >= 1, outcomes  # decisions stored, and refused
