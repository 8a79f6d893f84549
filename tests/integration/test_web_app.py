"""The web app over the real application, read models and embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import LocalObjectStorage
from projections.runner import ProjectionDaemon, catch_up
from tests.helpers import PIPELINE, clipped_video
from web.app import create_app
from web.auth import add_user

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@dataclass
class Web:
    heaters: HeatersApplication
    address: DatabaseAddress
    schema: str
    storage: LocalObjectStorage
    client: TestClient[Any]

    def login(self, name: str, password: str = PASSWORD) -> Any:
        self.client.get("/login")
        return self.client.post(
            "/login",
            data={"name": name, "password": password, "_csrf_token": self.token, "next": "/"},
            follow_redirects=False,
        )

    @property
    def token(self) -> str:
        return str(self.client.cookies.get("csrftoken"))

    def post(self, url: str, json: Any = None) -> Any:
        return self.client.post(url, json=json, headers={"x-csrftoken": self.token})


@contextmanager
def open_web(
    address: DatabaseAddress, schema: str, heaters: HeatersApplication, tmp_path: Path
) -> Iterator[Web]:
    """The web app on a fresh schema with users rita (reviewer), aldo (auditor) and olga (ops), and a
    projection daemon keeping the read models caught up."""
    settings = Settings(database_schema=schema, home=tmp_path, media_dir=tmp_path / "media")
    storage = LocalObjectStorage(tmp_path / "media")
    for name, role in (("rita", "reviewer"), ("aldo", "auditor"), ("olga", "ops")):
        add_user(address, schema, name, role, PASSWORD)
    daemon = ProjectionDaemon(heaters, address)
    daemon.start()
    app = create_app(
        settings, heaters, address, storage, secret="test-secret", queue_depths=lambda: {"ingest": 2}
    )
    try:
        with TestClient(app, base_url="http://testserver.local") as client:
            yield Web(heaters, address, schema, storage, client)
    finally:
        daemon.stop()


def test_review_flow_reads_its_writes(web: Web) -> None:
    video_id, clips = clipped_video(web.heaters, cuts=(100, 200))
    assert web.login("rita").status_code == 303
    nxt = web.client.get("/api/review/next?count=3").json()
    assert [c["id"] for c in nxt["clips"]] == [str(c) for c in clips]
    assert nxt["pending"] == 3

    r = web.post(f"/api/clips/{clips[0]}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["caught_up"] and r.json()["pending"] == 2
    page = web.client.get("/review")
    assert page.status_code == 200
    assert f'href="/review?clip={clips[1]}"' in page.text  # the approved clip is gone from the queue

    r = web.post(f"/api/clips/{clips[1]}/split", {"frame": 150})
    assert r.status_code == 200, r.text
    left, right = r.json()["new_clip_ids"]
    assert web.client.get("/api/review/next?count=1").json()["clips"][0]["id"] == left
    r = web.post(f"/api/clips/{right}/merge", {"with_clip_id": left})
    assert r.status_code == 200, r.text
    merged = r.json()["new_clip_ids"][0]
    view = web.client.get(f"/api/clips/{merged}").json()
    assert (view["start_frame"], view["end_frame"], view["state"]) == (100, 200, "pending_review")
    r = web.post(f"/api/clips/{right}/undo")
    assert r.status_code == 200 and r.json()["undone"] == "merge"
    r = web.post(f"/api/clips/{clips[1]}/undo")  # undo of the split (the children are undecided again)
    assert r.status_code == 200 and r.json()["undone"] == "split", r.text
    assert web.client.get(f"/api/clips/{clips[1]}").json()["state"] == "pending_review"

    r = web.post(f"/api/clips/{clips[1]}/group")
    assert r.status_code == 200 and r.json()["other_clip_id"] == str(clips[0])
    r = web.post(f"/api/clips/{clips[2]}/skip")
    assert r.status_code == 200
    r = web.post(f"/api/clips/{clips[2]}/archive")
    assert (r.status_code == 422 and "skip" in r.json()["error"]) or r.status_code == 200
    assert web.client.get("/api/review/pending").json()["pending"] == 0
    assert "All clips reviewed!" in web.client.get("/review").text

    # the auditor sees every event at once
    web.client.post("/logout", headers={"x-csrftoken": web.token})
    web.login("aldo")
    history = web.client.get(f"/clips/{clips[1]}/history")
    assert history.status_code == 200
    for event in ("Split", "DecisionUndone", "Grouped"):
        assert f'data-event="{event}"' in history.text
    as_of = web.client.get(f"/clips/{clips[1]}/history?as_of=2")
    assert "State as of version 2" in as_of.text
    video = web.client.get(f"/videos/{video_id}/history")
    assert video.status_code == 200 and 'data-event="LayoutChanged"' in video.text


def test_clip_view_places_the_clip_among_its_live_siblings(web: Web) -> None:
    """The clip view's index, count and neighbours follow the live clips in frame order, through a
    split; a clip no longer live has no place; the next-clip answer shows the same views."""
    _video_id, clips = clipped_video(web.heaters, frame_count=400, cuts=(100, 200, 300))
    catch_up(web.heaters, web.address)
    web.login("rita")

    def place(clip: Any) -> tuple[int, int, str | None, str | None]:
        view = web.client.get(f"/api/clips/{clip}").json()
        return view["index"], view["clip_count"], view["previous_clip_id"], view["next_clip_id"]

    ids = [str(c) for c in clips]
    for i, clip in enumerate(ids):
        assert place(clip) == (i, 4, ids[i - 1] if i else None, ids[i + 1] if i < 3 else None)
    left, right = web.post(f"/api/clips/{ids[1]}/split", {"frame": 150}).json()["new_clip_ids"]
    assert place(ids[0]) == (0, 5, None, left)
    assert place(left) == (1, 5, ids[0], right)
    assert place(right) == (2, 5, left, ids[2])
    assert place(ids[3]) == (4, 5, ids[2], None)
    assert place(ids[1]) == (-1, 5, None, None)  # split: no longer live
    nxt = web.client.get("/api/review/next?count=3").json()["clips"]
    assert [
        (c["id"], c["index"], c["clip_count"], c["previous_clip_id"], c["next_clip_id"]) for c in nxt
    ] == [(c, *place(c)) for c in (ids[0], left, right)]


def test_errors_are_json_with_status(web: Web) -> None:
    _video_id, clips = clipped_video(web.heaters)
    web.login("rita")
    assert web.post("/api/clips/not-a-uuid/approve").status_code == 400
    missing = web.post("/api/clips/00000000-0000-0000-0000-000000000000/approve")
    assert missing.status_code == 404 and "no clip" in missing.json()["error"]
    bad_frame = web.post(f"/api/clips/{clips[0]}/split", {"frame": 1})
    assert bad_frame.status_code == 422 and bad_frame.json()["error"]
    assert web.post(f"/api/clips/{clips[0]}/split", {"frame": "x"}).status_code == 400
    first = web.post(f"/api/clips/{clips[0]}/merge")
    assert first.status_code == 422 and "first clip" in first.json()["error"]
    assert web.post(f"/api/clips/{clips[0]}/approve").status_code == 200
    again = web.post(f"/api/clips/{clips[0]}/approve")
    assert again.status_code == 409 and "it was approved by you at" in again.json()["error"]
    assert again.json()["decided_by"] == "user:rita" and again.json()["decided_at"]
    schema = web.client.get("/schema/openapi.json")
    assert schema.status_code == 200 and "/api/clips/{clip_id}/split" in schema.json()["paths"]


def test_two_reviewers_never_share_a_clip(web: Web, pg_app: HeatersApplication) -> None:
    _video_id, clips = clipped_video(web.heaters)
    web.login("rita")
    mine = [c["id"] for c in web.client.get("/api/review/next?count=2").json()["clips"]]
    add_user(web.address, web.schema, "rob", "reviewer", PASSWORD)
    with TestClient(web.client.app, base_url="http://testserver.local") as other_client:
        other = Web(web.heaters, web.address, web.schema, web.storage, other_client)
        other.login("rob")
        theirs = [c["id"] for c in other_client.get("/api/review/next?count=3").json()["clips"]]
        assert theirs == [str(clips[2])] and not set(mine) & set(theirs)
        refused = other.post(f"/api/clips/{mine[0]}/approve")
        assert refused.status_code == 409 and "rita" in refused.json()["error"]


def test_ops_page_retry_and_rebuild(web: Web) -> None:
    video_id = web.heaters.submit("/videos/broken.mp4", "user:tester")
    attempt = web.heaters.start_video_stage(video_id, "download", PIPELINE)
    web.heaters.record_video_failure(video_id, "download", attempt, "<b>403</b> from host", PIPELINE)
    web.login("olga")
    page = web.client.get("/ops")
    assert page.status_code == 200
    assert "&lt;b&gt;403&lt;/b&gt; from host" in page.text and "<b>403" not in page.text
    assert "ingest" in page.text
    r = web.post(f"/api/retry/{video_id}")
    assert r.status_code == 200 and r.json()["stage"] == "download"
    assert "403" not in web.client.get("/ops").text.split("Failures")[1]
    status = web.client.get("/api/projections").json()
    assert {s["name"] for s in status} >= {"clips", "videos", "history"}
    assert all({"lag_events", "lag_seconds", "error_count", "last_error"} <= set(s) for s in status)
    projections_table = web.client.get("/ops").text.split('id="projections"')[1].split("</table>")[0]
    assert projections_table.count(" events · ") == len(status)  # the lag of every projection is shown
    r = web.post("/api/projections/clips/rebuild")
    assert r.status_code == 200, r.text
    assert web.post("/api/projections/nope/rebuild").status_code == 400


def test_media_route_serves_and_refuses_traversal(web: Web, tmp_path: Path) -> None:
    web.storage.put_bytes("videos/v1/sprites/sheet_00000.jpg", b"\xff\xd8jpeg")
    (tmp_path / "secret.txt").write_text("secret")
    assert (
        web.client.get("/media/videos/v1/sprites/sheet_00000.jpg", follow_redirects=False).status_code == 303
    )
    web.login("rita")
    ok = web.client.get("/media/videos/v1/sprites/sheet_00000.jpg")
    assert (
        ok.status_code == 200 and ok.content == b"\xff\xd8jpeg" and ok.headers["content-type"] == "image/jpeg"
    )
    web.storage.put_bytes("videos/v0/sprites/sheet_00000.webp", b"RIFFwebp")  # an older video's sheets
    old = web.client.get("/media/videos/v0/sprites/sheet_00000.webp")
    assert old.status_code == 200 and old.headers["content-type"] == "image/webp"
    for bad in (
        "/media/..%2Fsecret.txt",
        "/media/videos/..%2F..%2Fsecret.txt",
        "/media/%2Fetc%2Fpasswd",
        "/media/videos%5C..%5Csecret.txt",
        "/media/../secret.txt",
        "/media/videos/%00x",
    ):
        r = web.client.get(bad)
        assert r.status_code in (400, 404), bad
        assert b"secret" not in r.content or r.status_code != 200
    assert web.client.get("/media/videos/v1/missing.jpg").status_code == 404


def test_search_page(web: Web) -> None:
    _video_id, clips = clipped_video(web.heaters)
    for i, clip in enumerate(clips):
        web.heaters.approve(clip, "user:rita")
        frames = [i * 100 + j for j in (10, 50, 90)]
        web.heaters.record_keyframes(clip, "multi", [f"k/{clip}/{j}.jpg" for j in frames], frames, PIPELINE)
        vector = [1.0, float(i), 0.5] + [0.0] * 509
        web.heaters.record_embedding(clip, "ViT-B-32", "openai", "keyframe_multi_avg", [vector], PIPELINE)
    web.login("aldo")
    from projections.runner import catch_up

    catch_up(web.heaters, web.address)
    page = web.client.get(f"/search?clip={clips[0]}&model=ViT-B-32")
    assert page.status_code == 200, page.text
    assert page.text.count('class="card result"') == 2
    assert "%" in page.text
    assert web.client.get("/search").status_code == 200  # a random clip
    assert web.client.get("/search?clip=bad").status_code == 400


def test_history_as_of_a_time(web: Web) -> None:
    from datetime import UTC, timedelta, timezone

    video_id, clips = clipped_video(web.heaters)
    web.heaters.approve(clips[0], "user:rita")
    web.login("aldo")
    entries = web.heaters.history(clips[0])
    assert [e.event for e in entries][-1] == "Approved" and len(entries) >= 2
    created, approved = entries[0].timestamp, entries[-1].timestamp
    url = f"/clips/{clips[0]}/history"

    page = web.client.get(url)
    assert page.status_code == 200 and 'name="as_of_time"' in page.text  # the form
    first = web.client.get(url, params={"as_of_time": created.isoformat()})
    assert first.status_code == 200, first.text
    assert f"version {entries[0].version} " in first.text
    assert '<th>state</th><td class="mono small">created</td>' in first.text
    # in another timezone, and with a "+" that a typed URL turned into a space
    later = approved.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    last = web.client.get(f"{url}?as_of_time={later.replace('+', '%20')}")
    assert last.status_code == 200, last.text
    assert f"version {entries[-1].version} " in last.text
    assert '<th>state</th><td class="mono small">approved</td>' in last.text
    zulu = (approved + timedelta(days=1)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert f"version {entries[-1].version} " in web.client.get(url, params={"as_of_time": zulu}).text

    video = web.client.get(
        f"/videos/{video_id}/history", params={"as_of_time": (approved + timedelta(seconds=1)).isoformat()}
    )
    assert video.status_code == 200 and f"version {web.heaters.get_video(video_id).version} " in video.text

    for value, words in (
        ("yesterday", "ISO-8601"),
        ("2026-01-31T12:00:00", "needs a timezone"),
        ((created - timedelta(hours=1)).isoformat(), "did not exist yet"),
        ("2026-13-01T00:00:00+00:00", "ISO-8601"),
    ):
        bad = web.client.get(url, params={"as_of_time": value})
        assert bad.status_code == 400 and words in bad.text, (value, bad.text)
        assert '<p class="error">' in bad.text  # the error page, not JSON
    both = web.client.get(url, params={"as_of": 1, "as_of_time": created.isoformat()})
    assert both.status_code == 400 and "not both" in both.text
    assert web.client.get(url, params={"as_of_time": ""}).status_code == 200  # an empty form field


def test_search_sorts_by_similarity_both_ways_and_cards_can_play(web: Web) -> None:
    import html
    import json
    import re

    from infra.media.sprites import SpriteManifest
    from projections.runner import catch_up

    video_id, clips = clipped_video(web.heaters, frame_count=500, cuts=(100, 200, 300, 400))
    manifest = SpriteManifest(
        source_fps="25", sprite_fps="25", source_frame_count=500, sprite_count=500, tile_width=320,
        tile_height=180, columns=5, rows=5, frames_per_sheet=25,
        sheets=[f"sheet_{i:05d}.jpg" for i in range(20)],
    )  # fmt: skip
    web.storage.put_bytes(f"videos/{video_id}/sprites/manifest.json", manifest.to_json().encode())
    for i, clip in enumerate(clips):
        web.heaters.approve(clip, "user:rita")
        frames = [i * 100 + j for j in (25, 50, 75)]
        web.heaters.record_keyframes(clip, "multi", [f"k/{clip}/{j}.jpg" for j in frames], frames, PIPELINE)
        vector = [1.0, float(i), 0.5] + [0.0] * 509  # farther from clip 0 as i grows
        web.heaters.record_embedding(clip, "ViT-B-32", "openai", "keyframe_multi_avg", [vector], PIPELINE)
    catch_up(web.heaters, web.address)
    web.login("aldo")

    def api(sort: str | None) -> list[tuple[str, float]]:
        params = {"clip": str(clips[0]), "model": "ViT-B-32", **({"sort": sort} if sort else {})}
        r = web.client.get("/api/search", params=params)
        assert r.status_code == 200, r.text
        assert r.json()["sort"] == (sort or "desc")
        return [(c["id"], c["score"]) for c in r.json()["results"]]

    nearest = api(None)
    assert [cid for cid, _ in nearest] == [str(c) for c in clips[1:]]
    assert [s for _, s in nearest] == sorted((s for _, s in nearest), reverse=True)
    assert api("desc") == nearest
    assert api("asc") == nearest[::-1]

    page = web.client.get("/search", params={"clip": str(clips[0]), "model": "ViT-B-32", "sort": "asc"})
    assert page.status_code == 200
    shown = re.findall(r'class="card result" data-id="([^"]+)"', page.text)
    assert shown == [str(c) for c in reversed(clips[1:])]
    assert '<option value="asc" selected>' in page.text and "sort=asc" in page.text  # links keep it
    assert web.client.get("/search", params={"clip": str(clips[0]), "sort": "sideways"}).status_code == 400
    assert web.client.get("/api/search", params={"sort": "up"}).status_code == 400

    # every card carries the sprite geometry the hover player needs, escaped into the attribute
    plays = [json.loads(html.unescape(p)) for p in re.findall(r'data-play="([^"]+)"', page.text)]
    assert len(plays) == len(clips)  # the main clip and the four results
    last = plays[1]  # the least similar: clip 4, frames 400-500
    assert (last["start"], last["end"], last["width"], last["per_sheet"]) == (400, 500, 200, 25)
    assert last["sheets"][0] == f"/media/videos/{video_id}/sprites/sheet_00000.jpg"
    assert '<script src="/static/search.js' in page.text
    script = web.client.get("/static/search.js")
    assert script.status_code == 200 and "mouseenter" in script.text


def test_two_web_processes_racing_on_one_clip_store_one_decision(
    web: Web, pg_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rita and Rob, each on their own web process (app, application service, pool), approve the same
    unleased clip at the same moment: one wins, the other is told who changed what, and one
    ``Approved`` event is stored. The first round forces the interleaving (both decide, then both
    save); the next rounds race freely (the loser gets 409, or 422 if it loaded the clip already
    approved)."""
    import threading

    _video_id, clips = clipped_video(web.heaters)
    add_user(web.address, web.schema, "rob", "reviewer", PASSWORD)
    other_heaters = HeatersApplication(env=pg_env)
    settings = Settings(database_schema=web.schema, home=tmp_path, media_dir=tmp_path / "media")
    other_app = create_app(settings, other_heaters, web.address, web.storage, secret="test-secret")

    barrier = threading.Barrier(2)
    gated = {"on": True}
    for heaters in (web.heaters, other_heaters):
        original = heaters.save

        def save(*aggregates: Any, _original: Any = original, **kwargs: Any) -> Any:
            if gated["on"]:  # both commands have loaded and decided: now both save
                barrier.wait(timeout=20)
            return _original(*aggregates, **kwargs)

        monkeypatch.setattr(heaters, "save", save)

    def race(rita: Web, rob: Web, clip: Any) -> dict[str, Any]:
        results: dict[str, Any] = {}

        def act(name: str, who: Web) -> None:
            results[name] = who.post(f"/api/clips/{clip}/approve")

        threads = [threading.Thread(target=act, args=(n, w)) for n, w in (("rita", rita), ("rob", rob))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(results) == {"rita", "rob"}
        return results

    try:
        with TestClient(other_app, base_url="http://testserver.local") as other_client:
            rob = Web(other_heaters, web.address, web.schema, web.storage, other_client)
            assert web.login("rita").status_code == 303 and rob.login("rob").status_code == 303

            results = race(web, rob, clips[0])
            codes = sorted(r.status_code for r in results.values())
            assert codes == [200, 409], {k: (r.status_code, r.text) for k, r in results.items()}
            winner = next(k for k, r in results.items() if r.status_code == 200)
            lost = next(r for r in results.values() if r.status_code == 409).json()
            assert lost["kind"] == "conflict" and lost["clip_id"] == str(clips[0])
            assert lost["state"] == "approved" and f"clip {str(clips[0])[:8]}" in lost["error"]
            assert f"was approved by {winner} at" in lost["error"] and "nothing was saved" in lost["error"]
            assert lost["decided_by"] == f"user:{winner}"
            approved = [e for e in web.heaters.history(clips[0]) if e.event == "Approved"]
            assert [e.actor for e in approved] == [f"user:{winner}"]

            gated["on"] = False
            for clip in clips[1:]:
                results = race(web, rob, clip)
                codes = sorted(r.status_code for r in results.values())
                assert codes == [200, 409], {k: (r.status_code, r.text) for k, r in results.items()}
                assert len([e for e in web.heaters.history(clip) if e.event == "Approved"]) == 1
            assert web.client.get("/api/review/pending").json()["pending"] == 0
    finally:
        other_heaters.close()
