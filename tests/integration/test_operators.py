"""What an operator sees and does when work is stuck or a projection daemon died: ``heaters videos``,
``heaters retry``, ``heaters projections status`` and the ops page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from psycopg import sql

from commands.service import HeatersApplication
from infra.database import DatabaseAddress, connect
from processors.process_manager import PipelineProcessManager
from processors.work_ledger import waiting_work
from tests.helpers import clipped_video
from tests.integration.pipeline_support import wait_until
from tests.integration.test_process_manager import Recorder
from tests.integration.test_web_app import open_web

pytestmark = pytest.mark.integration

HEATERS = str(Path(sys.executable).with_name("heaters"))


def env_for(address: DatabaseAddress, schema: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATERS_")}
    env |= {
        "HEATERS_HOME": str(home),
        "HEATERS_DATABASE_URL": f"postgresql://{address.user}:@/{address.dbname}?host={address.host}",
        "HEATERS_DATABASE_SCHEMA": schema,
    }
    return env


def heaters(
    address: DatabaseAddress, schema: str, home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEATERS, *args], capture_output=True, text=True, env=env_for(address, schema, home), timeout=120
    )


def age_sent_work(address: DatabaseAddress, schema: str, aggregate_id: UUID, seconds: float) -> None:
    """As if the work had been sent ``seconds`` ago (a lost message no worker took)."""
    with connect(address, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET sent_at = now() - make_interval(secs => %s),"
                " start_by = now() + interval '1 hour' WHERE aggregate_id = %s"
            ).format(sql.Identifier(schema, "pipeline_work")),
            (seconds, aggregate_id),
        )


def test_stuck_work_is_flagged_with_what_it_waits_on_and_retry_sends_it_again(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    broker = Recorder()
    broker.down = True
    pm = PipelineProcessManager(pg_app, pg_address, pg_schema, broker)
    try:
        video_id = pg_app.submit("/videos/a.mp4", "user:alice")
        with pytest.raises(ConnectionError):
            pm.catch_up()
        late = waiting_work(pg_address, pg_schema, outbox_grace_seconds=0)
        assert [(w.aggregate_id, w.stage) for w in late] == [(video_id, "download")]
        assert late[0].waiting_on.startswith("the broker: not accepted")

        broker.down = False
        pm.send_due()
        assert waiting_work(pg_address, pg_schema) == []  # sent, and within the start timeout
        age_sent_work(pg_address, pg_schema, video_id, 600)

        listed = heaters(pg_address, pg_schema, tmp_path, "videos")
        assert listed.returncode == 0, listed.stderr
        assert "download waits on a worker on queue ingest: sent 10 min ago, not started" in listed.stdout
        as_json = json.loads(heaters(pg_address, pg_schema, tmp_path, "videos", "--json").stdout)
        assert "queue ingest" in as_json[0]["waiting"]

        retried = heaters(pg_address, pg_schema, tmp_path, "retry", "video", str(video_id), "--as", "olga")
        assert retried.returncode == 0, retried.stderr
        assert "download sent again" in retried.stdout
        pm.send_due()
        assert broker.sent == [("download", video_id, None)] * 2
        assert waiting_work(pg_address, pg_schema) == []

        clean, _ = clipped_video(pg_app)  # every stage done: nothing to retry
        pm.catch_up()
        refused = heaters(pg_address, pg_schema, tmp_path, "retry", "video", str(clean))
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "no work waiting to be sent again" in refused.stderr
    finally:
        pm.stop()


def test_ops_page_shows_stuck_work_and_its_button_sends_it_again(
    pg_app: HeatersApplication, pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    broker = Recorder()
    pm = PipelineProcessManager(pg_app, pg_address, pg_schema, broker)
    try:
        with open_web(pg_address, pg_schema, pg_app, tmp_path) as web:
            video_id = pg_app.submit("/videos/a.mp4", "user:alice")
            pm.catch_up()
            age_sent_work(pg_address, pg_schema, video_id, 300)
            assert web.login("olga").status_code == 303
            page = web.client.get("/ops")
            assert page.status_code == 200
            assert "Waiting longer than expected" in page.text and str(video_id) in page.text
            assert "a worker on queue ingest: sent 5 min ago, not started" in page.text
            r = web.client.post(
                f"/ops/retry/{video_id}", data={"_csrf_token": web.token}, follow_redirects=True
            )
            assert r.status_code == 200 and "download sent again" in r.text
            pm.send_due()
            assert len(broker.sent) == 2
            assert "Nothing is stuck." in web.client.get("/ops").text
            # the projection daemon of the web fixture leads and is alive
            assert "leader" in page.text and "no live daemon" not in page.text

            with connect(pg_address, autocommit=True) as conn:  # what a killed rebuild leaves behind
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (name, position, state) VALUES ('videos__rebuild', 1, 'rebuilding')"
                    ).format(sql.Identifier(pg_schema, "projection_positions"))
                )
            page = web.client.get("/ops").text
            assert "videos__rebuild" in page and "abandoned" in page
            r = web.client.post("/ops/drop-abandoned", data={"_csrf_token": web.token}, follow_redirects=True)
            assert r.status_code == 200 and "dropped videos__rebuild" in r.text
            assert "videos__rebuild" not in web.client.get("/ops").text
    finally:
        pm.stop()


def test_projections_status_shows_daemon_liveness_the_leader_and_abandoned_rebuilds(
    pg_address: DatabaseAddress, pg_schema: str, tmp_path: Path
) -> None:
    env = env_for(pg_address, pg_schema, tmp_path)
    command = [HEATERS, "-v", "up", "--no-web", "--no-pipeline", "--no-worker"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def daemons() -> list[dict[str, object]]:
            out = heaters(pg_address, pg_schema, tmp_path, "projections", "status", "--json")
            assert out.returncode == 0, out.stderr
            return list(json.loads(out.stdout)["daemons"])

        wait_until(lambda: len(daemons()) == 2, timeout=60)
        wait_until(lambda: sum(bool(d["leader"]) for d in daemons()) == 1, timeout=30)
        table = heaters(pg_address, pg_schema, tmp_path, "projections", "status").stdout
        assert "leader   alive" in table and "standby  alive" in table and "NO LIVE DAEMON" not in table

        for process in (first, second):  # both daemons die without a word
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        time.sleep(11)
        table = heaters(pg_address, pg_schema, tmp_path, "projections", "status").stdout
        assert "DEAD" in table and "alive" not in table
        assert "NO LIVE DAEMON" in table

        with connect(pg_address, autocommit=True) as conn:  # what a killed rebuild leaves behind
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, position, state) VALUES ('clips__rebuild', 3, 'rebuilding')"
                ).format(sql.Identifier(pg_schema, "projection_positions"))
            )
        table = heaters(pg_address, pg_schema, tmp_path, "projections", "status").stdout
        assert "clips__rebuild" in table and "abandoned" in table
        dropped = heaters(pg_address, pg_schema, tmp_path, "projections", "status", "--drop-abandoned")
        assert "dropped abandoned rebuild clips__rebuild" in dropped.stdout
        assert (
            "clips__rebuild"
            not in heaters(pg_address, pg_schema, tmp_path, "projections", "status")
            .stdout.split("dropped")[-1]
            .split("\n", 1)[-1]
        )
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait(10)
