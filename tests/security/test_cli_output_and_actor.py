"""Issue 9, item 6 (CLI): output strips control characters, and actions record the operating-system
user beside any ``--as``."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from tests.helpers import PIPELINE

pytestmark = pytest.mark.integration

HEATERS = str(Path(sys.executable).with_name("heaters"))


def heaters(
    address: DatabaseAddress, schema: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    a = address
    env["HEATERS_DATABASE_URL"] = f"postgresql://{a.user}:@/{a.dbname}?host={a.host}&port={a.port}"
    env["HEATERS_DATABASE_SCHEMA"] = schema
    return subprocess.run([HEATERS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_videos_prints_no_control_characters_from_titles(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication
) -> None:
    evil = "clip\nFAKE-ID  done  99\x07\x1b[31mred\r.mp4"
    video_id = pg_app.submit("/videos/evil.mp4", "user:tester")
    attempt = pg_app.start_video_stage(video_id, "download", PIPELINE)
    pg_app.record_downloaded(
        video_id, attempt, PIPELINE, media_key=f"videos/{video_id}/source.mp4", title=evil,
        original_url=None, checksum="0" * 64, duration=12.0, fps=25.0, frame_count=300, width=320,
        height=240, codec="h264",
    )  # fmt: skip
    listed = heaters(pg_address, pg_schema, "videos")
    assert listed.returncode == 0, listed.stderr
    assert not any(c in listed.stdout for c in "\x07\x1b\r")
    lines = listed.stdout.rstrip("\n").split("\n")
    assert len(lines) == 2, lines  # the header and one row: the title's newline made no fake row
    assert "clip\\nFAKE-ID  done  99\\x07\\x1b[31mred\\r.mp4" in lines[1]
    shown = heaters(pg_address, pg_schema, "history", "video", str(video_id))
    assert shown.returncode == 0 and "\x07" not in shown.stdout
    as_json = json.loads(heaters(pg_address, pg_schema, "videos", "--json").stdout)
    assert as_json[0]["title"] == evil  # JSON keeps the data, escaped by JSON itself


def test_submit_as_records_the_os_user_beside_the_named_one(
    pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 16)
    os_user = getpass.getuser()
    submitted = heaters(pg_address, pg_schema, "submit", "./a.mp4", "--as", "ops1", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    video_id = submitted.stdout.strip()
    history = json.loads(heaters(pg_address, pg_schema, "history", "video", video_id, "--json").stdout)
    assert history["events"][0]["actor"] == f"user:ops1 (os:{os_user})"

    plain = heaters(pg_address, pg_schema, "submit", "./a.mp4", cwd=tmp_path)
    history = json.loads(
        heaters(pg_address, pg_schema, "history", "video", plain.stdout.strip(), "--json").stdout
    )
    assert history["events"][0]["actor"] == f"user:{os_user}"

    retried = heaters(pg_address, pg_schema, "retry", "video", video_id, "--as", "ops\x07")
    assert retried.returncode != 0 and "printable name" in retried.stderr and "\x07" not in retried.stderr
