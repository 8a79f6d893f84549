"""`heaters up` as a new user runs it: everything embedded, serving the web app, stopping cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.harness import free_port
from tests.integration.pipeline_support import known_cuts_video

pytestmark = pytest.mark.integration

HEATERS = str(Path(sys.executable).with_name("heaters"))


def test_up_serves_the_pipeline_and_the_pages_then_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    env["HEATERS_HOME"] = str(tmp_path / "home")
    port = free_port()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([HEATERS, "up", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"{base}/review", follow_redirects=False, timeout=2)
                break
            except httpx.TransportError:
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                assert time.monotonic() < deadline, "heaters up did not start serving within 60 s"
                time.sleep(0.2)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
        assert "No accounts yet" in (tmp_path / "up.log").read_text()

        # With `up` running, `submit --wait` leaves the work to it and reports the clips.
        video = known_cuts_video(tmp_path / "a.mp4")
        submitted = subprocess.run(
            [HEATERS, "-v", "submit", str(video), "--wait", "--timeout", "120"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout.strip().splitlines()[-1] == "3 clips pending review"
        assert "running the pipeline in this process" not in submitted.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    assert code == 0, (tmp_path / "up.log").read_text()[-2000:]
