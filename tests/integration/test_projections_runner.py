"""On real PostgreSQL: the projection runner is exactly-once across crashes, records poisoned events,
follows the log continuously (daemon) and reports its status."""

from __future__ import annotations

import json
import time
from uuid import uuid4

import psycopg
import pytest

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from projections.base import Cursor, EventRecord
from projections.clips import ClipsProjection
from projections.rebuild import rebuild
from projections.runner import (
    ProjectionDaemon,
    build_projections,
    catch_up,
    resume,
    schema_connection,
    wait_for,
)
from projections.status import projection_status
from tests.helpers import clipped_video
from tests.projection_helpers import REVIEWER, checksums, positions, varied_history

pytestmark = pytest.mark.integration


class CrashingClips(ClipsProjection):
    """Kills its own database session after writing the rows of its ``crash_on``-th batch."""

    def __init__(self, address: DatabaseAddress, crash_on: int) -> None:
        super().__init__()
        self.address = address
        self.crash_on = crash_on
        self.flushes = 0

    def flush(self, cur: Cursor) -> None:
        super().flush(cur)
        self.flushes += 1
        if self.flushes == self.crash_on:
            pid = cur.connection.info.backend_pid
            with connect(self.address, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_crash_mid_batch_loses_nothing_and_applies_nothing_twice(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    varied_history(pg_app)
    projections = [*build_projections(["videos", "history"]), CrashingClips(pg_address, crash_on=3)]
    with pytest.raises(psycopg.OperationalError):
        catch_up(pg_app, pg_address, projections=projections, batch_size=10)
    # The first two batches committed with their positions; the third rolled back entirely.
    assert positions(pg_address, pg_schema)["clips"] == (20, "running")
    with schema_connection(pg_address, pg_schema) as conn:
        ((max_version_seen,),) = conn.execute("SELECT count(*) FROM rm_clips").fetchall()
    assert max_version_seen > 0
    head = catch_up(pg_app, pg_address, batch_size=10)  # resume
    assert all(p == (head, "running") for p in positions(pg_address, pg_schema).values())
    incremental = checksums(pg_address, pg_schema)
    rebuild(pg_app, pg_address)  # an uninterrupted replay from 0
    assert checksums(pg_address, pg_schema) == incremental


def _poison(app: HeatersApplication, address: DatabaseAddress, schema: str) -> int:
    """Append a stored event with a topic nobody knows; returns its position."""
    with schema_connection(address, schema) as conn:
        row = conn.execute(
            "INSERT INTO heaters_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, 'heaters.clip:Bogus', %s) RETURNING notification_id",
            (uuid4(), json.dumps({"x": 1}).encode()),
        ).fetchone()
        conn.commit()
    assert row is not None
    return int(row[0])


def test_a_poisoned_event_stops_a_projection_visibly(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    _, (a, _, _) = clipped_video(pg_app)
    catch_up(pg_app, pg_address)
    bad = _poison(pg_app, pg_address, pg_schema)
    pg_app.approve(a, REVIEWER)
    catch_up(pg_app, pg_address)
    status = {s.name: s for s in projection_status(pg_app, pg_address)}
    clips = status["clips"]
    assert (clips.state, clips.position, clips.error_count) == ("stopped", bad - 1, 1)
    assert clips.lag_events == 2 and clips.head == bad + 1
    assert clips.last_error is not None and "heaters.clip:Bogus" in clips.last_error
    with schema_connection(pg_address, pg_schema) as conn:
        assert conn.execute("SELECT state FROM rm_clips WHERE id = %s", (a,)).fetchone() == (
            "pending_review",
        )
        errors = conn.execute(
            "SELECT name, position, topic, skipped FROM projection_errors ORDER BY name"
        ).fetchall()
    assert ("clips", bad, "heaters.clip:Bogus", False) in errors
    catch_up(pg_app, pg_address)  # a stopped projection stays stopped
    assert positions(pg_address, pg_schema)["clips"] == (bad - 1, "stopped")
    resume(pg_address, pg_schema, "clips", skip=True)  # the operator skips it
    catch_up(pg_app, pg_address)
    assert positions(pg_address, pg_schema)["clips"] == (bad + 1, "running")
    with schema_connection(pg_address, pg_schema) as conn:
        assert conn.execute("SELECT state FROM rm_clips WHERE id = %s", (a,)).fetchone() == ("approved",)


def test_with_policy_skip_the_read_models_go_on(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    video_id, (a, _, _) = clipped_video(pg_app)
    bad = _poison(pg_app, pg_address, pg_schema)
    # A Created event whose frame does not fit the column: fails when written, not when applied.
    with schema_connection(pg_address, pg_schema) as conn:
        (state,) = conn.execute(
            "SELECT state FROM heaters_events WHERE originator_id = %s AND originator_version = 1", (a,)
        ).fetchone() or (b"",)
        created = json.loads(bytes(state))
        created["start"] = 2**40
        (too_big,) = conn.execute(
            "INSERT INTO heaters_events (originator_id, originator_version, topic, state) "
            "VALUES (%s, 1, 'heaters.clip:Created', %s) RETURNING notification_id",
            (uuid4(), json.dumps(created).encode()),
        ).fetchone() or (0,)
        conn.commit()
    pg_app.approve(a, REVIEWER)
    policies = dict.fromkeys(["videos", "clips", "history", "similarity", "stats"], "skip")
    head = catch_up(pg_app, pg_address, policies=policies)  # type: ignore[arg-type]
    assert all(p == (head, "running") for p in positions(pg_address, pg_schema).values())
    with schema_connection(pg_address, pg_schema) as conn:
        assert conn.execute("SELECT state FROM rm_clips WHERE id = %s", (a,)).fetchone() == ("approved",)
        assert conn.execute("SELECT pending_count FROM rm_videos WHERE id = %s", (video_id,)).fetchone() == (
            2,
        )
        errors = conn.execute("SELECT name, position, skipped, error FROM projection_errors").fetchall()
    assert {(n, p) for n, p, _, _ in errors} >= {("clips", bad), ("clips", too_big), ("history", bad)}
    assert all(skipped for _, _, skipped, _ in errors)
    assert any("out of range" in e for n, p, _, e in errors if (n, p) == ("clips", too_big))
    status = {s.name: s for s in projection_status(pg_app, pg_address)}
    assert status["clips"].error_count == 2 and status["clips"].state == "running"


def test_the_daemon_follows_the_log_and_wait_for_sees_it(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    _, (a, b, _) = clipped_video(pg_app)
    with ProjectionDaemon(pg_app, pg_address, poll_interval=0.05) as daemon:
        head = pg_app.recorder.max_notification_id() or 0
        assert wait_for(pg_address, pg_schema, head, timeout=10)
        pg_app.approve(a, REVIEWER)
        pg_app.skip(b, REVIEWER)
        head = pg_app.recorder.max_notification_id() or 0
        started = time.monotonic()
        assert wait_for(pg_address, pg_schema, head, names=["clips"], timeout=5)
        assert time.monotonic() - started < 2
        with schema_connection(pg_address, pg_schema) as conn:
            assert conn.execute("SELECT state FROM rm_clips WHERE id = %s", (b,)).fetchone() == ("skipped",)
        assert daemon.running and daemon.last_error is None
    assert not daemon.running
    status = projection_status(pg_app, pg_address)
    assert {s.name for s in status} == {"videos", "clips", "history", "similarity", "stats"}
    assert all(s.lag_events == 0 and s.lag_seconds == 0 and s.state == "running" for s in status)
    assert not wait_for(pg_address, pg_schema, head + 1, timeout=0.2)


def test_one_daemon_leads_a_schema_and_a_standby_takes_over(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    _, (a, b, _) = clipped_video(pg_app)
    first = ProjectionDaemon(pg_app, pg_address, poll_interval=0.05)
    second = ProjectionDaemon(pg_app, pg_address, poll_interval=0.05)
    first.start()
    deadline = time.monotonic() + 10
    while not first.leader and time.monotonic() < deadline:
        time.sleep(0.02)
    second.start()
    try:
        assert first.leader
        pg_app.approve(a, REVIEWER)
        assert wait_for(pg_address, pg_schema, pg_app.recorder.max_notification_id() or 0, timeout=10)
        assert second.running and not second.leader  # standing by, doing no work twice

        first.stop()
        pg_app.skip(b, REVIEWER)
        head = pg_app.recorder.max_notification_id() or 0
        assert wait_for(pg_address, pg_schema, head, names=["clips"], timeout=10)
        assert second.leader
        with schema_connection(pg_address, pg_schema) as conn:
            assert conn.execute("SELECT state FROM rm_clips WHERE id = %s", (b,)).fetchone() == ("skipped",)
    finally:
        first.stop()
        second.stop()


def test_a_value_postgresql_refuses_stops_the_projection_at_its_event(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str
) -> None:
    """A NaN frame rate (the domain takes what the probe reported) cannot go into jsonb or a JSON row:
    the set-based batch fails, the runner finds the event and records it instead of crashing."""
    video_id = pg_app.submit("/videos/nan.mp4", "user:tester")
    attempt = pg_app.start_video_stage(video_id, "download", "stage:test")
    pg_app.record_downloaded(
        video_id, attempt, "stage:test", media_key="k", title="t", original_url=None, checksum="0" * 64,
        duration=float("nan"), fps=float("nan"), frame_count=10, width=1, height=1, codec="h264",
    )  # fmt: skip
    head = pg_app.recorder.max_notification_id()
    catch_up(pg_app, pg_address, ["videos", "history", "clips"])
    status = {s.name: s for s in projection_status(pg_app, pg_address)}
    for name in ("videos", "history"):
        assert status[name].state == "stopped" and status[name].position == (head or 0) - 1, status[name]
        assert "NaN" in (status[name].last_error or "") or "invalid" in (status[name].last_error or "")
    assert status["clips"].state == "running" and status["clips"].position == head


def test_an_event_whose_handler_fails_midway_leaves_no_change_and_the_others_stay(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is first applied without each event's undo; a handler that raises after changing its
    row makes the runner load the rows again and apply the batch event by event, so the failed event
    (skipped) leaves nothing and the events around it in the same batch are all applied."""
    from domain.clip import Clip

    _, (a, b, c) = clipped_video(pg_app)
    catch_up(pg_app, pg_address)  # the clips' rows are loaded by the next batch, not made in it
    changed = ClipsProjection._changed

    def failing(self: ClipsProjection, record: EventRecord) -> None:
        changed(self, record)  # the row is changed in memory …
        if record.originator_id == b and record.topic == Clip.Approved.TOPIC:
            raise RuntimeError("boom after the change")  # … then the handler fails

    monkeypatch.setattr(ClipsProjection, "_changed", failing)
    for clip_id in (a, b, c):
        pg_app.approve(clip_id, REVIEWER)
    head = catch_up(pg_app, pg_address, policies={"clips": "skip"})
    assert positions(pg_address, pg_schema)["clips"] == (head, "running")
    with schema_connection(pg_address, pg_schema) as conn:
        states = dict(conn.execute("SELECT id, state FROM rm_clips").fetchall())
        errors = conn.execute("SELECT name, skipped, error FROM projection_errors").fetchall()
    assert states == {a: "approved", b: "pending_review", c: "approved"}
    assert [(n, s) for n, s, _ in errors] == [("clips", True)] and "boom" in errors[0][2]
