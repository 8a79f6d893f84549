"""``heaters videos`` and ``heaters clips`` read the read models (caught up first, since no daemon runs
beside a one-off command): what was just submitted is listed, oldest first, with the aggregate's facts."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import pytest

from tests.integration.test_cli import heaters

pytestmark = pytest.mark.integration


def test_lists_come_from_the_read_models_right_after_a_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ids = []
    for name in ("first.mp4", "second.mp4"):
        (tmp_path / name).write_bytes(b"\x00" * 16)
        submitted = heaters(home, "submit", f"./{name}", "--as", "alice", cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        ids.append(submitted.stdout.strip())

    listed = heaters(home, "videos", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == ids  # oldest first
    assert rows[0]["source"] == str(tmp_path / "first.mp4")
    assert {r["state"] for r in rows} == {"submitted"}
    assert {r["clips"] for r in rows} == {0} and {r["failure"] for r in rows} == {None}

    table = heaters(home, "videos")
    assert table.returncode == 0 and ids[1] in table.stdout and "STATE" in table.stdout

    clips = heaters(home, "clips", "--video", ids[0], "--json")
    assert clips.returncode == 0 and json.loads(clips.stdout) == []

    unknown = uuid4()
    missing = heaters(home, "clips", "--video", str(unknown))
    assert missing.returncode != 0 and f"no video with id {unknown}" in missing.stderr
