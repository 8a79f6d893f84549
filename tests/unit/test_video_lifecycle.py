"""A video moves through download → proxy → sprites → shots; results are idempotent."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import DomainError
from domain.video import Video

ACTOR = "stage:test"


def record_download(video: Video, attempt: int, frames: int = 100) -> bool:
    """Report a download of ``frames`` frames for ``attempt``; whether it stored an event."""
    return video.record_downloaded(
        ACTOR,
        attempt,
        media_key="k",
        title="t",
        original_url=None,
        checksum="c",
        duration=4.0,
        fps=25.0,
        frame_count=frames,
        width=320,
        height=240,
        codec="h264",
    )


def downloaded(video: Video, frames: int = 100) -> None:
    record_download(video, video.start_stage("download", ACTOR), frames)


def test_submitted_video_records_source_actor_and_time() -> None:
    video = Video.submit(uuid4(), "https://example.com/v.mp4", "user:alice")
    event = video.collect_events()[0]
    assert type(event).TOPIC == "heaters.video:Submitted"
    assert event.actor == "user:alice"  # type: ignore[attr-defined]
    assert event.timestamp.tzinfo is not None  # type: ignore[attr-defined]
    assert video.state == "submitted"


def test_empty_source_is_refused() -> None:
    with pytest.raises(DomainError, match="needs a source"):
        Video.submit(uuid4(), "   ", "user:alice")


def test_stages_run_in_order_and_count_attempts() -> None:
    video = Video.submit(uuid4(), "/a.mp4", "user:a")
    with pytest.raises(DomainError, match="proxy needs download done first"):
        video.start_stage("proxy", ACTOR)
    assert video.start_stage("download", ACTOR) == 1
    assert video.state == "download_running"
    assert video.start_stage("download", ACTOR) == 2  # a redelivered job is a new attempt
    assert video.record_failure("download", 2, "HTTP 404 from https://x", ACTOR) is True
    assert video.state == "download_failed"
    assert video.stages["download"].last_error == "HTTP 404 from https://x"
    with pytest.raises(DomainError, match="heaters retry video"):
        video.start_stage("download", ACTOR)
    assert video.request_retry("user:ops") == "download"
    assert video.stages["download"].retry_base == 2  # the retry gets a fresh budget of attempts
    assert video.start_stage("download", ACTOR) == 3


def test_reporting_a_result_twice_stores_one_event() -> None:
    video = Video.submit(uuid4(), "/a.mp4", "user:a")
    downloaded(video)
    before = len(video.pending_events)
    assert record_download(video, 1) is False
    assert len(video.pending_events) == before
    assert video.record_failure("download", 1, "late failure report", ACTOR) is False


def test_shots_make_the_layout_once() -> None:
    video = Video.submit(uuid4(), "/a.mp4", "user:a")
    downloaded(video, frames=90)
    video.record_proxy(ACTOR, video.start_stage("proxy", ACTOR), "p", 320, 240)
    video.record_sprites(ACTOR, video.start_stage("sprites", ACTOR), "s")
    attempt = video.start_stage("shots", ACTOR)
    layout = video.record_shots(
        ACTOR, attempt, [30, 60], "det", {"threshold": 0.5}, [uuid4() for _ in range(3)]
    )
    assert layout is not None
    assert [(s.start, s.end) for s in video.layout] == [(0, 30), (30, 60), (60, 90)]
    assert video.state == "clipped"
    assert video.record_shots(ACTOR, attempt, [30, 60], "det", {}, [uuid4() for _ in range(3)]) is None


def test_failure_needs_a_reason_and_a_known_stage() -> None:
    video = Video.submit(uuid4(), "/a.mp4", "user:a")
    with pytest.raises(DomainError, match="reason"):
        video.record_failure("download", 1, " ", ACTOR)
    with pytest.raises(DomainError, match="unknown video stage"):
        video.record_failure("teleport", 1, "x", ACTOR)
    with pytest.raises(DomainError, match="no failed stage"):
        video.request_retry("user:ops")


def test_clips_follow_the_proxy_when_its_frame_count_differs() -> None:
    """A variable-frame-rate source made constant can gain or lose frames: clips index the proxy."""
    video = Video.submit(uuid4(), "/vfr.mp4", "user:a")
    downloaded(video, frames=100)
    video.record_proxy(ACTOR, video.start_stage("proxy", ACTOR), "p", 320, 240, frame_count=103)
    assert video.frame_count == 103
    video.record_sprites(ACTOR, video.start_stage("sprites", ACTOR), "s")
    video.record_shots(ACTOR, video.start_stage("shots", ACTOR), [50], "det", {}, [uuid4(), uuid4()])
    assert [(s.start, s.end) for s in video.layout] == [(0, 50), (50, 103)]


def test_a_proxy_with_the_source_frame_count_records_none() -> None:
    video = Video.submit(uuid4(), "/a.mp4", "user:a")
    downloaded(video, frames=100)
    video.record_proxy(ACTOR, video.start_stage("proxy", ACTOR), "p", 320, 240, frame_count=100)
    created = [e for e in video.pending_events if isinstance(e, Video.ProxyCreated)]
    assert created[0].frame_count is None and video.frame_count == 100
    with pytest.raises(DomainError, match="must have frames"):
        other = Video.submit(uuid4(), "/b.mp4", "user:a")
        downloaded(other)
        other.record_proxy(ACTOR, other.start_stage("proxy", ACTOR), "p", 320, 240, frame_count=0)


def test_a_person_cancels_a_download_and_a_late_result_of_that_attempt_is_dropped() -> None:
    video = Video.submit(uuid4(), "https://example.com/v.mp4", "user:a")
    attempt = video.start_stage("download", ACTOR)
    assert video.cancel_download("user:ops1", "  endless\n stream ") == "cancelled by ops1: endless stream"
    assert video.state == "download_failed"
    event = video.collect_events()[-1]
    assert isinstance(event, Video.DownloadFailed) and event.actor == "user:ops1"
    assert (event.attempt, event.reason) == (attempt, "cancelled by ops1: endless stream")
    # the worker finishes just after the cancel: its result and its failure are no news
    assert not video.record_failure("download", attempt, "stopped", ACTOR)
    assert not video.record_downloaded(ACTOR, attempt, frame_count=10)
    assert video.state == "download_failed" and not video.collect_events()
    with pytest.raises(DomainError, match="there is no download to cancel"):
        video.cancel_download("user:ops1")
    video.request_retry("user:ops1")
    assert video.start_stage("download", ACTOR) == attempt + 1


def test_a_waiting_download_can_be_cancelled_but_not_a_finished_one() -> None:
    video = Video.submit(uuid4(), "/a.mp4", "user:a")
    assert video.cancel_download("user:ops1") == "cancelled by ops1"
    assert video.state == "download_failed"
    done = Video.submit(uuid4(), "/b.mp4", "user:a")
    downloaded(done)
    with pytest.raises(DomainError, match=r"no download to cancel \(download is done"):
        done.cancel_download("user:ops1")
