"""The process manager dispatches each event's work once, across restarts, and reconciles lost work."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from processors.process_manager import PipelineProcessManager
from tests.helpers import clipped_video

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, UUID, int | None]] = []

    def __call__(self, stage: str, aggregate_id: UUID, delay_ms: int | None) -> None:
        self.sent.append((stage, aggregate_id, delay_ms))


_started: list[PipelineProcessManager] = []


@pytest.fixture(autouse=True)
def _stop_managers() -> Iterator[None]:
    yield
    while _started:
        _started.pop().stop()


def manager(
    app: HeatersApplication, address: DatabaseAddress, schema: str, sent: Recorder
) -> PipelineProcessManager:
    pm = PipelineProcessManager(app, address, schema, sent, archive_grace_seconds=3600, batch_size=3)
    _started.append(pm)
    return pm


def test_each_event_dispatches_once_across_restarts(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    sent = Recorder()
    video_id = pg_app.submit("/videos/a.mp4", "user:alice")
    manager(pg_app, pg_address, pg_schema, sent).catch_up()
    assert sent.sent == [("download", video_id, None)]

    restarted = manager(pg_app, pg_address, pg_schema, sent)
    assert restarted.catch_up() == 0
    assert len(sent.sent) == 1

    _, (a, b, _) = clipped_video(pg_app)
    pg_app.approve(a, "user:alice")
    pg_app.archive(b, "user:alice")
    restarted.catch_up()
    assert ("keyframes", a, None) in sent.sent
    assert ("purge", b, 3_600_000) in sent.sent  # archived media is purged after the grace period
    stages = [s for s, _, _ in sent.sent]
    assert stages.count("download") == 2 and stages.count("keyframes") == 1


def test_reconciler_re_dispatches_work_whose_message_was_lost(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    lost = Recorder()
    video_id = pg_app.submit("/videos/a.mp4", "user:alice")
    first = manager(pg_app, pg_address, pg_schema, lost)
    first.catch_up()  # "sent", but say Redis restarted and the message is gone

    sent = Recorder()
    second = manager(pg_app, pg_address, pg_schema, sent)
    assert second.reconcile() == []  # not stuck yet: within its stage's timeout
    assert second.reconcile(older_than_seconds=0) == [("download", video_id)]
    assert sent.sent == [("download", video_id, None)]


def test_finished_and_failed_work_is_not_reconciled(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    sent = Recorder()
    pm = manager(pg_app, pg_address, pg_schema, sent)
    video_id, _ = clipped_video(pg_app)
    failing = pg_app.submit("/videos/b.mp4", "user:alice")
    attempt = pg_app.start_video_stage(failing, "download", "stage:download")
    pg_app.record_video_failure(failing, "download", attempt, "HTTP 404 from https://x", "stage:download")
    pm.catch_up()
    assert pm.reconcile(older_than_seconds=0) == []
    pg_app.request_retry(failing, "user:ops")
    pm.catch_up()
    assert sent.sent[-1] == ("download", failing, None)
    assert video_id not in {i for _, i in pm.reconcile(older_than_seconds=0)}
