"""Issue 9, item 5: every bad input is a 4xx with a short message, never a 500."""

from __future__ import annotations

import threading

import pytest

from projections.rebuild import RebuildRunning, _rebuild_lock
from tests.helpers import clipped_video
from tests.integration.test_web_app import Web

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("url", ["/api/search", "/search"])
@pytest.mark.parametrize("field", ["model", "strategy", "clip", "video", "sort"])
def test_a_nul_byte_in_a_search_filter_is_a_400(web: Web, url: str, field: str) -> None:
    assert web.login("rita").status_code == 303
    response = web.client.get(url, params={field: "ViT\x00B"})
    assert response.status_code == 400, response.text
    assert "NUL" in response.text


def test_a_nul_byte_in_the_login_name_is_a_400_and_counts_nothing(web: Web) -> None:
    for name in ("rita\x00", "\x00", "ri\x07ta"):
        response = web.login(name)
        assert response.status_code == 400, response.text
        assert "control characters" in response.text
    assert web.login("rita").status_code == 303


def test_json_nested_5000_deep_on_split_is_a_400(web: Web) -> None:
    _video_id, clips = clipped_video(web.heaters)
    assert web.login("rita").status_code == 303
    body = '{"frame": ' + "[" * 5000 + "]" * 5000 + "}"
    response = web.client.post(
        f"/api/clips/{clips[0]}/split",
        content=body,
        headers={"x-csrftoken": web.token, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "the request body is nested too deeply"
    assert web.heaters.get_clip(clips[0]).state == "pending_review"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/clips/{huge}"),
        ("GET", "/videos/{huge}/history"),
        ("POST", "/api/clips/{huge}/approve"),
        ("GET", "/api/search?clip={huge}"),
    ],
)
def test_error_messages_do_not_echo_huge_input(web: Web, method: str, url: str) -> None:
    assert web.login("olga").status_code == 303
    huge = "x" * 30_000
    response = web.client.request(method, url.format(huge=huge), headers={"x-csrftoken": web.token})
    assert 400 <= response.status_code < 500, response.text[:300]
    assert len(response.text) < 5000, len(response.text)
    assert "more characters" in response.text


def test_a_rebuild_while_one_is_running_is_a_409(web: Web) -> None:
    assert web.login("olga").status_code == 303
    # a rebuild of clips running elsewhere (another web process, the CLI) holds its lock
    with _rebuild_lock(web.address, web.schema, ["clips"]):
        api = web.post("/api/projections/clips/rebuild")
        assert api.status_code == 409, api.text
        assert "already running" in api.json()["error"]
        page = web.client.post("/ops/rebuild/clips", data={"_csrf_token": web.token}, follow_redirects=False)
        assert page.status_code == 409 and "already running" in page.text
        assert web.post("/api/projections/videos/rebuild").status_code == 200  # others are free
    assert web.post("/api/projections/clips/rebuild").status_code == 200  # and it is free again


def test_two_concurrent_rebuilds_of_one_projection_one_runs_the_other_is_refused(web: Web) -> None:
    from projections.rebuild import rebuild

    clipped_video(web.heaters)
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        try:
            rebuild(web.heaters, web.address, "clips")
            outcomes.append("rebuilt")
        except RebuildRunning:
            outcomes.append("refused")
        except Exception as error:  # the bug: KeyError 'clips__rebuild', a broken swap, ...
            outcomes.append(f"error: {error!r}")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert "rebuilt" in outcomes
    assert all(o in ("rebuilt", "refused") for o in outcomes), outcomes
    assert web.login("rita").status_code == 303
    assert web.client.get("/api/review/pending").json()["pending"] == 3
