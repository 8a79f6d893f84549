"""On real PostgreSQL, replaying the stored events rebuilds identical aggregates."""

from __future__ import annotations

import pytest

from commands.service import HeatersApplication
from tests.helpers import assert_replay_rebuilds, clipped_video

pytestmark = pytest.mark.integration


def test_replay_from_postgres_rebuilds_identical_aggregates(
    pg_app: HeatersApplication, pg_env: dict[str, str]
) -> None:
    video_id, (a, b, c) = clipped_video(pg_app)
    pg_app.approve(a, "user:alice")
    pg_app.record_keyframes(a, "multi", ["k1", "k2", "k3"], [25, 50, 75], "stage:keyframes")
    pg_app.record_embedding(a, "ViT-B-32", "openai", "keyframe_multi_avg", [[0.6, 0.8]], "stage:embedding")
    left, _ = pg_app.split(b, 150, "user:alice")
    pg_app.group(c, None, "user:bob")
    pg_app.undo(c, "user:bob")
    live = {i: pg_app.repository.get(i) for i in (video_id, a, b, c, left)}

    fresh = HeatersApplication(env=pg_env)  # a new process's view: nothing cached
    try:
        for aggregate_id, aggregate in live.items():
            assert_replay_rebuilds(fresh, aggregate_id, aggregate)
    finally:
        fresh.close()
