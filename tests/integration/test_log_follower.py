"""The log follower the projections and the process manager share: it resumes from its tracked
position after a restart, reads only its consumer's topics, and decodes with the application's own
mapper (its compression, its upcasting)."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from commands.service import HeatersApplication
from domain.clip import Clip
from domain.video import Video
from infra.database import DatabaseAddress, connect
from infra.log_follower import LogFollower, Step
from tests.helpers import clipped_video, version_one_clip_created

pytestmark = pytest.mark.integration

NAME = "follower-test"


class Consumer:
    """Records each event it is given, with its position, in the same transaction."""

    def __init__(self, follower: LogFollower) -> None:
        self.follower = follower
        self.seen: list[int] = []
        self.lock = threading.Lock()

    @contextmanager
    def session(self, _listener: psycopg.Connection[Any]) -> Iterator[Step]:
        with connect(self.follower.address) as conn:
            with conn.transaction():
                self.follower.track(conn, [NAME])

            def step() -> int:
                with conn.transaction():
                    tracked = self.follower.lock(conn, NAME)
                    assert tracked is not None
                    events = self.follower.read(tracked.position)
                    if events:
                        self.follower.advance(conn, NAME, events[-1].position)
                with self.lock:
                    self.seen += [e.position for e in events]
                return len(events)

            yield step


def _follower(app: HeatersApplication, address: DatabaseAddress, **kwargs: Any) -> LogFollower:
    return LogFollower(app, address, "pipeline_tracking", batch_size=3, **kwargs)


def _wait(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_it_resumes_from_its_tracked_position_after_a_restart(
    pg_app: HeatersApplication, pg_address: DatabaseAddress
) -> None:
    clipped_video(pg_app)
    first = _follower(pg_app, pg_address)
    consumer = Consumer(first)
    first.start(consumer.session, thread_name="follower-test", poll_seconds=0.05)
    try:
        _wait(lambda: consumer.seen[-1:] == [first.head()], "the first follower at the head")
    finally:
        first.stop()
    before = list(consumer.seen)
    assert before == list(range(1, first.head() + 1))  # every event once, in order, in batches of 3

    pg_app.submit("/videos/later.mp4", "user:alice")  # stored while no follower runs
    restarted = _follower(pg_app, pg_address)
    again = Consumer(restarted)
    restarted.start(again.session, thread_name="follower-test", poll_seconds=0.05)
    try:
        _wait(lambda: again.seen[-1:] == [restarted.head()], "the restarted follower at the head")
        pg_app.submit("/videos/live.mp4", "user:alice")  # woken by the log's NOTIFY (or the poll)
        _wait(lambda: again.seen[-1:] == [restarted.head()], "the live event")
    finally:
        restarted.stop()
    assert again.seen == list(range(before[-1] + 1, restarted.head() + 1))  # none again, none missed
    with connect(pg_address) as conn:
        assert restarted.positions(conn, [NAME])[NAME].position == restarted.head()


def test_a_step_that_read_to_the_end_waits_for_the_next_commit_rather_than_reading_again(
    pg_app: HeatersApplication, pg_address: DatabaseAddress
) -> None:
    """Under a trickle of commands each batch is short: the follower then waits for the log's NOTIFY
    (it polls only every 30 s here), and misses none of the events that commit meanwhile."""
    clipped_video(pg_app)
    follower = _follower(pg_app, pg_address)
    consumer = Consumer(follower)
    steps: list[int] = []

    @contextmanager
    def counted(listener: psycopg.Connection[Any]) -> Iterator[Step]:
        with consumer.session(listener) as step:

            def counting() -> int:
                applied = step()
                steps.append(applied)
                return applied

            yield counting

    follower.start(counted, thread_name="follower-test", poll_seconds=30.0)
    try:
        _wait(lambda: consumer.seen[-1:] == [follower.head()], "the follower at the head")
        before = len(steps)
        for n in range(10):
            pg_app.submit(f"/videos/trickle-{n}.mp4", "user:alice")
            _wait(lambda: consumer.seen[-1:] == [follower.head()], f"event {n}, woken by its NOTIFY")
        trickle = steps[before:]
    finally:
        follower.stop()
    assert consumer.seen == list(range(1, follower.head() + 1))
    assert sum(trickle) == 10
    assert trickle.count(0) <= 2, trickle  # it was one empty read per batch: 10


def test_events_committed_while_it_steps_wake_it(
    pg_app: HeatersApplication, pg_address: DatabaseAddress
) -> None:
    """Commits racing the follower's steps (four writers at once): each reaches the follower within a few
    seconds of the last one, by NOTIFY (it polls only every 30 s here; 5 s leaves a loaded CI host room)."""
    follower = _follower(pg_app, pg_address)
    consumer = Consumer(follower)
    follower.start(consumer.session, thread_name="follower-test", poll_seconds=30.0)

    def write(writer: int) -> None:
        for n in range(15):
            pg_app.submit(f"/videos/race-{writer}-{n}.mp4", "user:alice")

    try:
        for _ in range(3):
            writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
            for thread in writers:
                thread.start()
            for thread in writers:
                thread.join()
            head = follower.head()
            _wait(lambda: consumer.seen[-1:] == [head], "the last commit", timeout=5.0)  # noqa: B023
    finally:
        follower.stop()
    assert consumer.seen == list(range(1, follower.head() + 1))


def test_reading_ahead_gives_the_batches_reading_then_would(
    pg_app: HeatersApplication, pg_address: DatabaseAddress
) -> None:
    """The projections read the next batch while they apply one: what comes back is what a plain read
    gives at that moment, while the log grows too, and a batch read ahead for another position is
    not used."""
    clipped_video(pg_app)
    ahead, plain = _follower(pg_app, pg_address), _follower(pg_app, pg_address)

    def seen(records: list[Any]) -> list[tuple[int, str]]:
        return [(r.position, r.topic) for r in records]

    try:
        after, positions = 0, []
        while batch := ahead.read(after, ahead=True):
            assert seen(batch) == seen(plain.read(after))
            positions += [r.position for r in batch]
            after = batch[-1].position
            if len(positions) == 6:
                pg_app.submit("/videos/meanwhile.mp4", "user:alice")  # stored while a batch is read ahead
        assert positions == list(range(1, ahead.head() + 1))
        ahead.read(0, ahead=True)  # starts reading after position 3
        again = ahead.read(1)  # another position: read now, not taken from the batch read ahead
        assert seen(again) == seen(plain.read(1))
        assert [r.position for r in again] == [2, 3, 4]
    finally:
        ahead.close_reader()


def test_it_reads_only_its_topics(pg_app: HeatersApplication, pg_address: DatabaseAddress) -> None:
    first = pg_app.submit("/videos/a.mp4", "user:alice")
    second = pg_app.submit("/videos/b.mp4", "user:alice")
    clipped, _ = clipped_video(pg_app)  # submitted, then many events of other topics
    follower = _follower(pg_app, pg_address, topics=[Video.Created.TOPIC])
    records = follower.read(0, 100)
    assert [r.originator_id for r in records] == [first, second, clipped]
    assert all(isinstance(r.event, Video.Created) for r in records)
    assert follower.read(records[-1].position) == []  # nothing of its topics after the last one
    assert follower.head() > records[-1].position  # the head is the whole log's


def test_it_decodes_with_the_applications_mapper_upcasting_included(
    pg_env: dict[str, str], pg_address: DatabaseAddress
) -> None:
    """An application that compresses its events: a hand-made mapper could not read them."""
    app = HeatersApplication(env={**pg_env, "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor"})
    try:
        video_id = app.submit("/videos/a.mp4", "user:alice")
        clip_id = uuid4()
        version_one = version_one_clip_created(video_id)  # before clips had an origin and parents
        app.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=clip_id,
                    originator_version=1,
                    topic="heaters.clip:Created",
                    state=zlib.compress(json.dumps(version_one).encode()),
                )
            ]
        )
        submitted, created = _follower(app, pg_address).read(0)
        assert submitted.decode_error is None and isinstance(submitted.event, Video.Created)
        assert submitted.event.source == "/videos/a.mp4"
        assert created.decode_error is None and isinstance(created.event, Clip.Created)
        assert (created.event.origin, created.event.parent_ids) == ("shots", [])  # upcast from version 1
        assert (created.originator_id, created.originator_version, created.name, created.kind) == (
            clip_id,
            1,
            "Created",
            "clip",
        )
    finally:
        app.close()


def test_an_event_it_cannot_decode_comes_back_with_the_reason(
    pg_app: HeatersApplication, pg_address: DatabaseAddress
) -> None:
    pg_app.recorder.insert_events(
        [StoredEvent(originator_id=uuid4(), originator_version=1, topic="heaters.clip:Created", state=b"{")]
    )
    (record,) = _follower(pg_app, pg_address).read(0)
    assert record.event is None and record.decode_error is not None
    assert (
        record.decode_error.startswith("MapperDeserialisationError")
        and "heaters.clip:Created" in record.decode_error
    )
