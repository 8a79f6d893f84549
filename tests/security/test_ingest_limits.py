"""Downloads that never end are stopped with the reason (issue 9, item 2): an overall deadline, a
minimum rate, and cancellation by a person. The servers trickle on loopback; every test is bounded."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.service import HeatersApplication
from domain.errors import DomainError
from entrypoints.pipeline import Pipeline, build_pipeline
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.media.download import DownloadError, fetch_source
from infra.object_storage import LocalObjectStorage
from tests.integration.pipeline_support import known_cuts_video, tiny_embedder, video_settled, wait_until
from tests.security.servers import serving

pytestmark = pytest.mark.integration


def trickle(chunk: bytes, every: float, length: int | None) -> object:
    """A route that sends ``chunk`` every ``every`` seconds until the client goes away."""

    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        deadline = time.monotonic() + 60  # never outlive the test run
        try:
            while time.monotonic() < deadline:
                handler.wfile.write(chunk)
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass

    return route


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path / "home", allow_private_hosts=True, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("route", "limits", "reasons", "at_least"),
    [
        pytest.param(
            trickle(b"x" * 10, 0.1, 10_000_000),
            {"download_min_rate": 1000.0, "download_min_rate_window": 1.0},
            ["download too slow", "HEATERS_DOWNLOAD_MIN_RATE"],
            0.0,
            id="10 bytes every 0.1 s never trips a socket timeout: the minimum rate stops it",
        ),
        pytest.param(
            trickle(b"x" * 65536, 0.02, None),
            {"download_deadline": 2.0, "download_min_rate": 1000.0},
            ["did not finish within 2 s (HEATERS_DOWNLOAD_DEADLINE)"],
            1.5,
            id="fast enough for the rate floor but endless (no Content-Length): the deadline stops it",
        ),
    ],
)
def test_a_download_that_never_ends_is_stopped_for_its_limit(
    tmp_path: Path, route: object, limits: dict[str, float], reasons: list[str], at_least: float
) -> None:
    with serving({"/video.mp4": route}) as server:  # type: ignore[dict-item]
        started = time.monotonic()
        with pytest.raises(DownloadError) as info:
            fetch_source(server.url("/video.mp4"), tmp_path / "dl", _settings(tmp_path, **limits))
        elapsed = time.monotonic() - started
    for reason in reasons:
        assert reason in info.value.reason
    assert at_least < elapsed < 10, elapsed
    assert [p.name for p in (tmp_path / "dl").iterdir()] == []


def test_should_stop_cancels_a_running_download(tmp_path: Path) -> None:
    cancelled = threading.Event()
    with serving({"/video.mp4": trickle(b"x" * 1000, 0.05, 10_000_000)}) as server:  # type: ignore[dict-item]
        threading.Timer(1.0, cancelled.set).start()
        started = time.monotonic()
        with pytest.raises(DownloadError) as info:
            fetch_source(
                server.url("/video.mp4"),
                tmp_path / "dl",
                _settings(tmp_path),
                should_stop=lambda: "cancelled by user:ops1: wrong video" if cancelled.is_set() else None,
            )
        elapsed = time.monotonic() - started
    assert info.value.reason.startswith("cancelled by user:ops1: wrong video")
    assert elapsed < 10, elapsed


@pytest.fixture
def pipeline(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> Iterator[Pipeline]:
    settings = Settings(
        home=tmp_path / "home",
        database_schema=pg_schema,
        allow_private_hosts=True,
        download_min_rate=0.0,  # the stuck download below must stay stuck until it is cancelled
        ingest_worker_threads=2,
        max_attempts=1,
    )
    running = build_pipeline(
        settings, pg_app, pg_address, LocalObjectStorage(tmp_path / "media"), embedder_factory=tiny_embedder
    )
    running.start(worker_threads=1, poll_seconds=0.05)
    yield running
    running.stop()


def test_a_stuck_download_delays_no_other_video_and_ops_can_cancel_it(
    pipeline: Pipeline, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    gone = threading.Event()

    def endless(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Content-Length", "10000000")
        handler.end_headers()
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                handler.wfile.write(b"x" * 10)
                handler.wfile.flush()
                time.sleep(0.2)
        except OSError:
            gone.set()  # the worker dropped the connection

    # downloads have a worker of their own: the stuck one cannot take the media queue's only thread
    # (embeddings have one too, whose threads share batches: HEATERS_EMBEDDING_WORKER_THREADS)
    assert sorted((sorted(w.consumer_whitelist or ()), w.worker_threads) for w in pipeline.workers) == [
        (["embeddings"], 8),
        (["ingest"], 2),
        (["media"], 1),
    ]
    with serving({"/video.mp4": endless}) as server:
        stuck = pg_app.submit(server.url("/video.mp4"), "user:alice")
        wait_until(lambda: pg_app.get_video(stuck).state == "download_running", timeout=30)
        other = pg_app.submit(str(known_cuts_video(tmp_path / "b.mp4")), "user:alice")
        wait_until(lambda: video_settled(pg_app, other), timeout=180)
        assert pg_app.get_video(other).state == "clipped"
        assert pg_app.get_video(stuck).state == "download_running"

        reason = pg_app.cancel_download(stuck, "user:ops1", "wrong\nvideo")
        assert reason == "cancelled by ops1: wrong video"
        assert gone.wait(15), "the worker kept the connection open after the cancel"
        wait_until(lambda: pipeline.context.app.get_video(stuck).state == "download_failed", timeout=10)

    video = pg_app.get_video(stuck)
    assert video.stages["download"].last_error == "cancelled by ops1: wrong video"
    history = pg_app.history(stuck)
    assert [e.event for e in history] == ["Submitted", "DownloadStarted", "DownloadFailed"]
    assert history[-1].actor == "user:ops1"
    with pytest.raises(DomainError, match="there is no download to cancel"):
        pg_app.cancel_download(stuck, "user:ops1")
