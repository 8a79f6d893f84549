"""No debris and no late writes: a killed worker's ffmpeg dies with it, its temporary directory is
removed by the next worker, and an attempt frozen past its heartbeat cannot overwrite or record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from uuid import UUID

import pytest

from commands.service import HeatersApplication
from infra.config import Settings
from infra.database import DatabaseAddress
from infra.object_storage import LocalObjectStorage
from processors import stages
from processors.process_manager import PipelineProcessManager
from processors.stages import PipelineContext, clean_workdirs
from processors.work_ledger import WorkLedger
from tests.helpers import PIPELINE
from tests.integration.pipeline_support import known_cuts_video, wait_until
from tests.integration.test_process_manager import Recorder

pytestmark = pytest.mark.integration

SLOW_FFMPEG = """
import sys
from infra.media._process import run_ffmpeg
print("started", flush=True)
run_ffmpeg(["-re", "-f", "lavfi", "-i", "testsrc=duration=120:size=64x64:rate=10", "-f", "null", "-"],
           what="a long media job", timeout=300)
"""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def media_jobs(pid: int) -> list[int]:
    """The children of ``pid`` running the long ffmpeg job (by their command line after exec)."""
    found = []
    for child in children_of(pid):
        try:
            cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"-hide_banner" in cmdline and b"testsrc" in cmdline:
            found.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_workers_ffmpeg_dies_with_it(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", SLOW_FFMPEG], stdout=subprocess.PIPE, env=os.environ.copy()
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == b"started"
        # imageio-ffmpeg checks its binary with a short `ffmpeg -version` child first: wait for the job
        # itself, exec'd (so past its setsid), not for whichever child shows up first
        wait_until(lambda: bool(media_jobs(worker.pid)), timeout=20)
        (ffmpeg,) = media_jobs(worker.pid)
        assert os.getpgid(ffmpeg) != os.getpgid(worker.pid)  # a process group of its own
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        wait_until(lambda: not alive(ffmpeg), timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_starting_worker_removes_what_dead_workers_left(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    work = tmp_path / "work"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (work / f"pid{dead.pid}-abc").mkdir(parents=True)
    (work / f"pid{dead.pid}-abc" / "normalised.mp4").write_bytes(b"\0" * 1024)
    (work / "tmpold").mkdir()  # from a version before directories were named after their process
    mine = work / f"pid{os.getpid()}-live"
    mine.mkdir()
    removed = clean_workdirs(settings)
    assert sorted(p.name for p in removed) == sorted([f"pid{dead.pid}-abc", "tmpold"])
    assert [p.name for p in work.iterdir()] == [mine.name]


class FreezingStorage(LocalObjectStorage):
    """Local storage where the first attempt's thread freezes when it starts reading (as SIGSTOP would)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.frozen_thread: int | None = None
        self.frozen = threading.Event()
        self.thaw = threading.Event()

    def local_path(self, key: str) -> Path | None:
        if threading.get_ident() == self.frozen_thread and not self.thaw.is_set():
            self.frozen.set()
            self.thaw.wait(60)
        return super().local_path(key)


def downloaded_video(app: HeatersApplication, storage: LocalObjectStorage, tmp_path: Path) -> UUID:
    source = known_cuts_video(tmp_path / "a.mp4")
    video_id = app.submit(str(source), "user:alice")
    key = f"videos/{video_id}/source.mp4"
    storage.put_file(key, source, "video/mp4")
    attempt = app.start_video_stage(video_id, "download", PIPELINE)
    app.record_downloaded(
        video_id, attempt, PIPELINE, media_key=key, title="a", original_url=None, checksum="0" * 64,
        duration=4.8, fps=25.0, frame_count=120, width=320, height=180, codec="h264",
    )  # fmt: skip
    return video_id


def test_an_attempt_frozen_past_its_heartbeat_writes_nothing_and_records_nothing(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    storage = FreezingStorage(tmp_path / "media")
    settings = Settings(home=tmp_path / "home", database_schema=pg_schema)
    ctx = PipelineContext(pg_app, storage, settings)
    video_id = downloaded_video(pg_app, storage, tmp_path)
    broker = Recorder()
    pm = PipelineProcessManager(pg_app, pg_address, pg_schema, broker, heartbeat_timeout_seconds=1.0)
    frozen_ledger = WorkLedger(pg_address, pg_schema, heartbeat_seconds=0.2, heartbeat_timeout_seconds=1.0)
    ledger = WorkLedger(pg_address, pg_schema, heartbeat_seconds=0.2, heartbeat_timeout_seconds=1.0)
    errors: list[BaseException] = []

    def run(on: WorkLedger) -> None:
        try:
            with on.running("proxy", video_id) as claim:
                assert claim is not None
                stages.proxy(ctx, video_id)
        except BaseException as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)

    try:
        pm.catch_up()
        assert ("proxy", video_id, None) in broker.sent
        first = threading.Thread(target=run, args=(frozen_ledger,))
        storage.frozen_thread = None
        first.start()
        storage.frozen_thread = first.ident
        # the first attempt has started (ProxyStarted, attempt 1) and freezes with its whole process
        wait_until(storage.frozen.is_set, timeout=20)
        frozen_ledger._stop.set()
        frozen_ledger._thread.join()
        time.sleep(1.3)
        assert [s for s, _, _ in pm.reconcile()] == ["proxy"]  # its heartbeat is gone: sent again
        run(ledger)  # the second delivery runs attempt 2 to the end
        video = pg_app.get_video(video_id)
        assert video.media["proxy"] == f"videos/{video_id}/proxy-a2.mp4"

        storage.thaw.set()  # the frozen process resumes
        first.join(60)
        assert errors == []
        assert not storage.exists(f"videos/{video_id}/proxy-a1.mp4")  # nothing written
        events = [e.event for e in pg_app.history(video_id)]
        assert events.count("ProxyCreated") == 1 and "ProxyFailed" not in events
        assert pg_app.get_video(video_id).media["proxy"] == f"videos/{video_id}/proxy-a2.mp4"
    finally:
        storage.thaw.set()
        frozen_ledger.close()
        ledger.close()
        pm.stop()
