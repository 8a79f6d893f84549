"""The JSON a read model's rows and payloads are written with: msgspec where it gives the value
``json_text`` gives (as PostgreSQL reads it), ``json_text`` itself where it would not (a NaN, which
PostgreSQL must refuse; sets, which json_text sorts; datetimes inside a jsonb value)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.stages import ClipState
from projections.base import json_document, json_rows, json_text

AT = datetime(2026, 11, 27, 16, 33, 15, 39072, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.uuids(),
    st.sampled_from(list(ClipState)),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


@given(values)
def test_a_jsonb_value_reads_back_as_json_text_writes_it(value: Any) -> None:
    assert json.loads(_text(json_document(value))) == json.loads(json_text(value))


@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), values), max_size=4))
def test_rows_read_back_as_json_text_writes_them(rows: list[dict[str, Any]]) -> None:
    assert json.loads(json_rows(rows)) == json.loads(json_text(rows))


@given(st.lists(st.lists(values, max_size=4), max_size=4))
def test_rows_of_values_by_position_read_back_as_json_text_writes_them(rows: list[list[Any]]) -> None:
    assert json.loads(json_rows(rows)) == json.loads(json_text(rows))


def test_a_datetime_at_the_top_of_a_row_is_the_same_instant() -> None:
    """Top-level datetimes are timestamptz values: PostgreSQL reads ``Z`` and ``+00:00`` alike."""
    east = timezone(timedelta(hours=2))
    rows = [{"id": uuid4(), "updated_at": AT, "created_at": AT.astimezone(east), "state": ClipState.APPROVED}]
    fast, slow = json.loads(json_rows(rows)), json.loads(json_text(rows))
    for column in ("updated_at", "created_at"):
        assert datetime.fromisoformat(fast[0][column]) == datetime.fromisoformat(slow[0][column])
    assert {k: v for k, v in fast[0].items() if not k.endswith("_at")} == {
        k: v for k, v in slow[0].items() if not k.endswith("_at")
    }


@pytest.mark.parametrize(
    "value",
    [
        {"fps": math.nan},  # json_text writes NaN, which PostgreSQL refuses (the runner pins the event)
        {"scores": [1.0, math.inf]},
        {"ids": {UUID(int=2), UUID(int=1)}},  # json_text sorts sets
        {"nested": {"at": AT}},  # a datetime inside jsonb keeps json_text's "+00:00"
        {"amount": Decimal("1.10"), "at": [AT]},
    ],
)
def test_what_msgspec_would_write_otherwise_is_written_by_json_text(value: Any) -> None:
    assert _text(json_document(value)) == json_text(value)
    assert json_rows([value]) == json_text([value])


def test_a_nan_in_a_row_is_written_as_nan_not_null() -> None:
    assert "NaN" in json_rows([{"id": uuid4(), "fps": math.nan, "updated_at": AT}])
