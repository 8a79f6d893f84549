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
from projections.runner import ProjectionDaemon
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
    daemon = ProjectionDaemon(address, schema)
    daemon.start()
    app = create_app(
        settings, heaters, address, storage, secret="test-secret", queue_depths=lambda: {"ingest": 2}
    )
    try:
        with TestClient(app, base_url="http://testserver.local") as client:
            yield Web(heaters, address, schema, storage, client)
    finally:
        daemon.stop()


@pytest.fixture
def web(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> Iterator[Web]:
    with open_web(pg_address, pg_schema, pg_app, tmp_path) as opened:
        yield opened


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
    assert again.status_code == 422 and "approved" in again.json()["error"]
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

    catch_up(web.address, web.schema)
    page = web.client.get(f"/search?clip={clips[0]}&model=ViT-B-32")
    assert page.status_code == 200, page.text
    assert page.text.count('class="card result"') == 2
    assert "%" in page.text
    assert web.client.get("/search").status_code == 200  # a random clip
    assert web.client.get("/search?clip=bad").status_code == 400
