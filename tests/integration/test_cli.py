"""The ``heaters`` command as a new user runs it: a real process on the embedded PostgreSQL."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HEATERS = str(Path(sys.executable).with_name("heaters"))


def heaters(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    env["HEATERS_HOME"] = str(home)
    return subprocess.run([HEATERS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def test_submit_then_history_shows_the_submitted_event(home: Path, tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 16)
    submitted = heaters(home, "submit", "./a.mp4", "--as", "alice", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    video_id = submitted.stdout.strip()

    shown = heaters(home, "history", "video", video_id)
    assert shown.returncode == 0, shown.stderr
    assert "Submitted" in shown.stdout and "user:alice" in shown.stdout

    as_json = json.loads(heaters(home, "history", "video", video_id, "--json").stdout)
    (event,) = as_json["events"]
    assert event["event"] == "Submitted"
    assert event["actor"] == f"user:alice (os:{getpass.getuser()})"  # who really ran it, too
    assert event["payload"]["source"] == str(tmp_path / "a.mp4")
    assert event["timestamp"].endswith("+00:00")

    listed = json.loads(heaters(home, "videos", "--json").stdout)
    assert video_id in [v["id"] for v in listed]

    as_of = json.loads(heaters(home, "history", "video", video_id, "--as-of", "1", "--json").stdout)
    assert as_of["as_of"]["state"] == "submitted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "./missing.mp4"], "no such file"),
        (["history", "clip", "not-an-id"], "is not a valid id"),
        (["history", "video", "00000000-0000-0000-0000-000000000000"], "no video with id"),
        (
            ["history", "video", "00000000-0000-0000-0000-000000000000", "--as-of", "yesterday"],
            "neither a version",
        ),
        (["history", "planet", "x"], "Invalid value"),
        (["clips", "--video", "zzz"], "is not a valid id"),
        (["retry", "video", "00000000-0000-0000-0000-000000000000"], "no video with id"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_reason(
    home: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = heaters(home, *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_help(home: Path) -> None:
    top = heaters(home, "--help")
    assert top.returncode == 0
    for command in ("submit", "videos", "clips", "history", "retry"):
        assert command in top.stdout
        sub = heaters(home, command, "--help")
        assert sub.returncode == 0 and "Usage:" in sub.stdout


def test_user_add_creates_and_updates_accounts(home: Path) -> None:
    created = heaters(home, "user", "add", "rita", "--role", "reviewer", "--password", "a-long-password")
    assert created.returncode == 0, created.stderr
    assert "added" in created.stdout
    updated = heaters(home, "user", "add", "rita", "--role", "ops", "--password", "another-password")
    assert updated.returncode == 0 and "updated" in updated.stdout
    bad = heaters(home, "user", "add", "bob", "--role", "admin", "--password", "a-long-password")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_projections_status_reports_every_read_model(home: Path) -> None:
    caught = heaters(home, "projections", "catch-up")
    assert caught.returncode == 0, caught.stderr
    status = heaters(home, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["projections"]
    assert {r["name"] for r in rows} == {"videos", "clips", "history", "similarity", "stats"}
    assert all(r["lag_events"] == 0 and r["state"] == "running" for r in rows)
