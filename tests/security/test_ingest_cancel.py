"""Ops cancel a download from /ops (ops role, CSRF) and from the CLI; it ends DownloadFailed with the reason."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from tests.integration.test_cli import heaters
from tests.integration.test_web_app import Web

pytestmark = pytest.mark.integration


def test_ops_cancel_a_download_from_the_ops_page(web: Web) -> None:
    video_id = web.heaters.submit("https://example.com/endless.mp4", "user:alice")
    web.heaters.start_video_stage(video_id, "download", "stage:download")

    web.login("rita")
    refused = web.client.post(
        f"/ops/cancel/{video_id}", data={"_csrf_token": web.token}, follow_redirects=False
    )
    assert refused.status_code == 403
    web.client.post("/logout", headers={"x-csrftoken": web.token})

    web.login("olga")
    page = web.client.get("/ops")
    downloads = page.text.split('id="downloads"')[1].split("</table>")[0]
    assert f'action="/ops/cancel/{video_id}"' in downloads and "download_running" in downloads
    no_token = web.client.post(f"/ops/cancel/{video_id}", data={"reason": "x"}, follow_redirects=False)
    assert no_token.status_code == 403
    assert web.heaters.get_video(video_id).state == "download_running"

    done = web.client.post(
        f"/ops/cancel/{video_id}",
        data={"_csrf_token": web.token, "reason": "endless stream"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    video = web.heaters.get_video(video_id)
    assert video.state == "download_failed"
    assert video.stages["download"].last_error == "cancelled by olga: endless stream"
    assert web.heaters.history(video_id)[-1].actor == "user:olga"
    ops_text = web.client.get("/ops").text
    assert "cancelled by olga: endless stream" in ops_text.split("Failures")[1]
    again = web.client.post(
        f"/ops/cancel/{video_id}", data={"_csrf_token": web.token}, follow_redirects=False
    )
    assert again.status_code == 422 and "no download to cancel" in again.text


def test_ops_cancel_a_download_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    submitted = heaters(home, "submit", "https://example.com/endless.mp4", "--as", "alice")
    assert submitted.returncode == 0, submitted.stderr
    video_id = submitted.stdout.strip()

    cancelled = heaters(home, "cancel", "video", video_id, "--reason", "duplicate", "--as", "ops1")
    assert cancelled.returncode == 0, cancelled.stderr
    # a CLI action names the operating-system user beside --as
    by = f"ops1 (os:{getpass.getuser()})"
    assert cancelled.stdout.strip() == f"video {video_id}: download cancelled by {by}: duplicate"

    shown = heaters(home, "history", "video", video_id)
    last = shown.stdout.strip().splitlines()[-1]
    assert "DownloadFailed" in last and "user:ops1" in last and f"cancelled by {by}: duplicate" in last

    again = heaters(home, "cancel", "video", video_id)
    assert again.returncode != 0
    assert "there is no download to cancel (download is failed" in again.stderr
