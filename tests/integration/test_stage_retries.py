"""How a stage's failures end, through the real actors and middleware on an in-process broker: Dramatiq
retries a transient failure, never retries a permanent one, and when its retries run out the stage's
``…Failed`` event is recorded once, with the last error and the attempt count."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest

from commands.service import HeatersApplication
from entrypoints.pipeline import Pipeline, build_pipeline
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import LocalObjectStorage
from tests.integration.pipeline_support import known_cuts_video, wait_until

pytestmark = pytest.mark.integration

Events = list[tuple[str, dict[str, object]]]
RunDownload = Callable[[str, int], tuple[Events, int]]


class FlakyStorage(LocalObjectStorage):
    """Local storage whose first ``failures`` writes fail, as an unreachable bucket would."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self._lock = threading.Lock()

    def put_file(self, key: str, path: Path, content_type: str | None = None, *, move: bool = False) -> None:
        with self._lock:
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("the bucket is unreachable")
        super().put_file(key, path, content_type, move=move)


@pytest.fixture
def run_download(
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    pg_schema: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[RunDownload]:
    """Submit ``source`` and send its download to a worker whose storage fails its first N writes (no
    process manager: nothing is sent again behind Dramatiq's retries). Returns the video's events once
    the stage has ended and Dramatiq has nothing left to retry, and how many times the stage ran."""
    caplog.set_level(logging.INFO, logger="heaters.pipeline")
    running: list[Pipeline] = []

    def run(source: str, storage_failures: int) -> tuple[Events, int]:
        settings = Settings(home=tmp_path / "home", database_schema=pg_schema, max_attempts=3)
        storage = FlakyStorage(tmp_path / "media", storage_failures)
        pipeline = build_pipeline(settings, pg_app, pg_address, storage, manager=False)
        running.append(pipeline)
        pipeline.start(queues={"ingest"})
        video_id = pg_app.submit(source, "user:alice")
        pipeline.dispatch("download", video_id)
        wait_until(lambda: _download_ended(pg_app, video_id), timeout=60)
        pipeline.broker.join("ingest", timeout=30_000, fail_fast=False)  # nothing left to retry
        runs = [r for r in caplog.records if r.getMessage().startswith(f"stage download for {video_id}:")]
        return [(e.event, e.payload) for e in pg_app.history(video_id)], len(runs)

    yield run
    for pipeline in running:
        pipeline.stop()


def _download_ended(app: HeatersApplication, video_id: UUID) -> bool:
    return app.get_video(video_id).stages["download"].status in ("done", "failed")


def test_a_transient_failure_is_retried_and_the_next_attempt_succeeds(
    run_download: RunDownload, tmp_path: Path
) -> None:
    events, runs = run_download(str(known_cuts_video(tmp_path / "a.mp4")), 1)  # the first write fails
    assert runs == 2
    assert [name for name, _ in events] == ["Submitted", "DownloadStarted", "DownloadStarted", "Downloaded"]
    assert [p["attempt"] for name, p in events if name == "DownloadStarted"] == [1, 2]


def test_a_permanent_failure_is_recorded_at_once_and_not_retried(
    run_download: RunDownload, tmp_path: Path
) -> None:
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_bytes(b"just some text, not a video\n" * 50)
    events, runs = run_download(str(not_a_video), 0)
    assert runs == 1
    assert [name for name, _ in events] == ["Submitted", "DownloadStarted", "DownloadFailed"]
    failed = events[-1][1]
    assert failed["attempt"] == 1 and "not a video" in str(failed["reason"])
    assert "gave up" not in str(failed["reason"])


def test_when_retries_run_out_the_failure_is_recorded_once_with_the_attempts(
    run_download: RunDownload, tmp_path: Path
) -> None:
    events, runs = run_download(str(known_cuts_video(tmp_path / "a.mp4")), 10)  # every write fails
    assert runs == 3  # HEATERS_MAX_ATTEMPTS
    names = [name for name, _ in events]
    assert names == ["Submitted", "DownloadStarted", "DownloadStarted", "DownloadStarted", "DownloadFailed"]
    failed = events[-1][1]
    assert failed["attempt"] == 3
    assert failed["reason"] == "ConnectionError: the bucket is unreachable (gave up after 3 attempts)"
