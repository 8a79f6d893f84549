"""`heaters submit --wait` and `heaters shots` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.pipeline_support import CUTS, known_cuts_video
from tests.integration.test_cli import heaters

pytestmark = pytest.mark.integration


def test_submit_wait_runs_the_pipeline_alone_and_reports_clips(tmp_path: Path) -> None:
    video = known_cuts_video(tmp_path / "a.mp4")
    result = heaters(tmp_path / "home", "-v", "submit", str(video), "--wait")
    assert result.returncode == 0, result.stderr
    assert "running the pipeline in this process" in result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "3 clips pending review"
    clips = json.loads(heaters(tmp_path / "home", "clips", "--video", lines[0], "--json").stdout)
    assert [(c["start"], c["end"]) for c in clips] == [(0, 40), (40, 85), (85, 120)]
    assert {c["state"] for c in clips} == {"pending_review"}


def test_submit_wait_reports_a_failed_download(tmp_path: Path) -> None:
    result = heaters(tmp_path / "home", "submit", "ftp://example.com/a.mp4", "--wait")
    assert result.returncode != 0
    assert "download failed" in result.stderr and "scheme 'ftp' is not allowed" in result.stderr


def test_shots_prints_boundaries_without_ingesting(tmp_path: Path) -> None:
    video = known_cuts_video(tmp_path / "a.mp4")
    result = heaters(tmp_path / "home", "shots", str(video), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cuts"] == CUTS
    listed = heaters(tmp_path / "home", "videos", "--json")
    assert json.loads(listed.stdout) == []
    bad = heaters(tmp_path / "home", "shots", str(tmp_path / "a.json"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
