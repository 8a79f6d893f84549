"""The auditor's shared views (``commands.audit``): what the CLI's ``history --as-of`` and the web's
history pages parse and show."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest

from commands.audit import jsonable, parse_as_of, parse_time, state_of
from commands.service import HeatersApplication
from domain.base import StageProgress


def test_as_of_is_a_version_or_a_time_with_a_timezone() -> None:
    assert parse_as_of(" 7 ") == 7
    assert parse_as_of("2026-01-31T12:00:00Z") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    # A "+" typed into a URL arrives as a space.
    assert parse_time("2026-01-31T12:00:00 01:00") == datetime(
        2026, 1, 31, 12, tzinfo=timezone(timedelta(hours=1))
    )
    with pytest.raises(ValueError, match="neither a version number nor an ISO-8601 time"):
        parse_as_of("yesterday")
    with pytest.raises(ValueError, match="needs a timezone"):
        parse_as_of("2026-01-31T12:00:00")
    with pytest.raises(ValueError, match="is not an ISO-8601 time"):
        parse_time("7")


def test_state_and_payloads_become_json() -> None:
    app = HeatersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    video_id = app.submit("/videos/a.mp4", "user:alice")
    state = state_of(app.get_video(video_id))
    assert state["state"] == "submitted" and state["id"] == video_id and "pending_events" not in state
    ident = uuid4()
    text = json.dumps(
        {
            "ids": {ident},
            "at": datetime(2026, 1, 1, tzinfo=UTC),
            "path": Path("/x"),
            "stage": StageProgress(),
        },
        default=jsonable,
        sort_keys=True,
    )
    assert json.loads(text) == {
        "at": "2026-01-01T00:00:00+00:00",
        "ids": [str(ident)],
        "path": "/x",
        "stage": StageProgress().as_dict(),
    }
    json.dumps(state, default=jsonable)  # every field of an aggregate serialises
