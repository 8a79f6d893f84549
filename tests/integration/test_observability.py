"""Observable by default: health endpoints compose can probe and a Prometheus /metrics, no login needed."""

from __future__ import annotations

import pytest

from tests.helpers import clipped_video
from tests.integration.test_web_app import Web

pytestmark = pytest.mark.integration


def sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_health_endpoints_answer_without_a_login(web: Web) -> None:
    assert web.client.get("/healthz").json() == {"status": "ok"}
    ready = web.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_metrics_count_review_actions_and_measure_lag_queues_and_the_outbox(web: Web) -> None:
    _, clips = clipped_video(web.heaters)
    assert web.login("rita").status_code == 303
    before = web.client.get("/metrics").text
    approved = (
        sample(before, 'heaters_review_actions_total{action="approve"}') if "approve" in before else 0.0
    )
    assert web.post(f"/api/clips/{clips[0]}/approve").status_code == 200
    web.client.cookies.clear()  # Prometheus has no session
    r = web.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, 'heaters_review_actions_total{action="approve"}') == approved + 1
    assert sample(text, 'heaters_queue_depth{queue="ingest"}') == 2
    assert sample(text, 'heaters_projection_lag_events{projection="clips"}') == 0
    assert 'heaters_projection_lag_seconds{projection="videos"}' in text
    assert "heaters_read_your_writes_timeouts_total" in text
    assert "heaters_outbox_unsent 0.0" in text  # no process manager table yet: nothing unsent
