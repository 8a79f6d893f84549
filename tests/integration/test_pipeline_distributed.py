"""Production shape: Redis broker, S3 (moto server), PostgreSQL + pgvector, workers in other processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import redis
import torch
from psycopg import sql

from bench.harness import free_port
from commands.service import HeatersApplication
from entrypoints.pipeline import Pipeline, build_pipeline
from infra.config import Settings
from infra.database import DatabaseAddress, connect
from infra.object_storage import S3ObjectStorage
from projections.runner import catch_up
from tests.integration.pipeline_support import known_cuts_video, tiny_embedder, video_settled, wait_until

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def settings(
    pg_address: DatabaseAddress, pg_schema: str, s3_endpoint: str, tmp_path: Path
) -> Iterator[Settings]:
    weights = tmp_path / "clip-weights.pt"
    torch.save(tiny_embedder().model.state_dict(), weights)
    namespace = f"heaters-test-{uuid4().hex[:8]}"
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"postgresql://{pg_address.user}:@/{pg_address.dbname}?host={pg_address.host}",
        database_schema=pg_schema,
        redis_url=REDIS_URL,
        redis_namespace=namespace,
        redis_heartbeat_timeout_ms=3_000,
        stage_heartbeat_seconds=0.5,
        stage_heartbeat_timeout_seconds=3.0,
        dispatch_start_timeout_seconds=10.0,
        metrics_port=free_port(),
        s3_endpoint=s3_endpoint,
        s3_bucket=f"heaters-{uuid4().hex[:12]}",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        clip_model="ViT-S-32",
        clip_pretrained=str(weights),
        max_attempts=3,
    )
    S3ObjectStorage.from_settings(settings).ensure_bucket()
    yield settings
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"HEATERS_{name.upper()}"] = str(value)
    return env


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    heaters = str(Path(sys.executable).with_name("heaters"))
    handle = log.open("ab")
    return subprocess.Popen(
        [heaters, "worker", "--threads", "1"], env=settings_env(settings), stdout=handle, stderr=handle
    )


@pytest.fixture
def manager(
    settings: Settings, pg_app: HeatersApplication, pg_address: DatabaseAddress
) -> Iterator[Pipeline]:
    """The process manager in this process; the work happens in worker processes."""
    pipeline = build_pipeline(settings, pg_app, pg_address, S3ObjectStorage.from_settings(settings))
    pipeline.start(worker=False, poll_seconds=0.05)
    yield pipeline
    pipeline.stop()


def test_worker_killed_mid_job_loses_and_duplicates_nothing(
    settings: Settings,
    manager: Pipeline,
    pg_app: HeatersApplication,
    pg_address: DatabaseAddress,
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        video_id = pg_app.submit(str(known_cuts_video(tmp_path / "a.mp4")), "user:alice")
        # Kill the worker with SIGKILL as soon as it has started a stage, i.e. mid-job.
        wait_until(lambda: any(p.status == "running" for p in pg_app.get_video(video_id).stages.values()), 60)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        # A fresh worker takes over: Redis requeues the dead worker's unacknowledged message once its
        # heartbeat times out, and the process manager sends again work whose worker stopped beating.
        worker = start_worker(settings, log)
        wait_until(lambda: video_settled(pg_app, video_id), timeout=120)
        video = pg_app.get_video(video_id)
        assert video.state == "clipped", log.read_text()[-3000:]
        # services log at INFO without -v: one line per stage run, with the attempt the events record
        killed = next(s for s, p in video.stages.items() if p.attempts == 2)
        assert re.search(rf"stage {killed} for {video_id}: ok in [0-9.]+ s \(attempt 2\)", log.read_text())
        clips = pg_app.clips_of(video_id)
        assert [(c.start, c.end) for c in clips] == [(0, 40), (40, 85), (85, 120)]
        kinds = [e.event for e in pg_app.history(video_id)]
        for result in ("Downloaded", "ProxyCreated", "SpritesCreated", "ShotsDetected"):
            assert kinds.count(result) == 1, kinds

        storage = S3ObjectStorage.from_settings(settings)
        assert storage.exists(video.media["proxy"])
        pg_app.approve(clips[0].id, "user:alice")
        wait_until(lambda: pg_app.get_clip(clips[0].id).state == "exported", timeout=120)
        clip = pg_app.get_clip(clips[0].id)
        assert (
            clip.embedding["model"] == "ViT-S-32" and clip.embedding["pretrained"] == settings.clip_pretrained
        )
        assert storage.exists(clip.export_key or "")

        # The similarity read model holds one L2-normalised pgvector row per (clip, model, strategy).
        catch_up(pg_app, pg_address)
        with connect(pg_address) as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT model, strategy, dimension, vector_norm(embedding) FROM {} WHERE clip_id = %s AND live"
                ).format(sql.Identifier(settings.database_schema, "rm_embeddings")),
                (clip.id,),
            ).fetchall()
        assert [(m, s, d) for m, s, d, _ in rows] == [
            ("ViT-S-32", "keyframe_multi_avg", clip.embedding["dimension"])
        ]
        assert abs(rows[0][3] - 1.0) < 1e-4
    finally:
        worker.kill()
        worker.wait(10)


def test_a_message_delivered_twice_stores_one_result(
    settings: Settings, manager: Pipeline, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        video_id = pg_app.submit(str(known_cuts_video(tmp_path / "a.mp4")), "user:alice")
        wait_until(lambda: video_settled(pg_app, video_id), timeout=120)
        for stage in ("download", "proxy", "sprites", "shots"):
            manager.dispatch(stage, video_id)  # deliver every stage's message again
        clip_id = pg_app.clips_of(video_id)[1].id
        pg_app.approve(clip_id, "user:alice")
        wait_until(lambda: pg_app.get_clip(clip_id).state == "exported", timeout=120)
        for stage in ("keyframes", "embedding", "export"):
            manager.dispatch(stage, clip_id)
        manager.broker.join("media", timeout=60_000)
        manager.broker.join("ingest", timeout=60_000)
        manager.broker.join("embeddings", timeout=60_000)
        video_events = [e.event for e in pg_app.history(video_id)]
        clip_events = [e.event for e in pg_app.history(clip_id)]
        assert video_events.count("Downloaded") == 1 and video_events.count("ShotsDetected") == 1
        assert video_events.count("DownloadStarted") == 1
        for result in ("KeyframesExtracted", "Embedded", "Exported"):
            assert clip_events.count(result) == 1, clip_events
        # the worker's own /metrics: stage durations by stage and outcome
        metrics = httpx.get(f"http://127.0.0.1:{settings.metrics_port}/metrics").text
        assert 'heaters_stage_seconds_count{outcome="ok",stage="download"}' in metrics
    finally:
        worker.kill()
        worker.wait(10)
