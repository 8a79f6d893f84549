"""The clips of a video always partition [0, frame_count) exactly: no gap, no overlap."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, PartitionError
from domain.partition import Segment, check_partition, layout_from_cuts, merge_layout, split_layout


def ids(n: int) -> list[UUID]:
    return [uuid4() for _ in range(n)]


def test_cuts_make_a_partition() -> None:
    layout = layout_from_cuts([100, 200], 300, ids(3))
    assert [(s.start, s.end) for s in layout] == [(0, 100), (100, 200), (200, 300)]


def test_cuts_outside_the_video_and_duplicates_are_ignored() -> None:
    layout = layout_from_cuts([0, 50, 50, 300, 999], 300, ids(2))
    assert [(s.start, s.end) for s in layout] == [(0, 50), (50, 300)]


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ([(0, 10), (12, 20)], "frames [10, 12) are covered by no clip"),
        ([(0, 10), (8, 20)], "overlaps"),
        ([(0, 10), (10, 19)], "not at frame_count 20"),
        ([(1, 20)], "frames [0, 1) are covered by no clip"),
        ([(0, 10), (10, 10), (10, 20)], "empty"),
        ([], "no clips cover"),
    ],
)
def test_broken_layouts_are_named(ranges: list[tuple[int, int]], message: str) -> None:
    with pytest.raises(PartitionError, match=message.replace("[", r"\[").replace(")", r"\)")):
        check_partition([Segment(s, e, uuid4()) for s, e in ranges], 20)


def test_split_keeps_the_partition_and_the_minimum_length() -> None:
    a, b, left, right = ids(4)
    layout = [Segment(0, 10, a), Segment(10, 20, b)]
    assert [(s.start, s.end) for s in split_layout(layout, 20, b, 15, left, right, 3)] == [
        (0, 10),
        (10, 15),
        (15, 20),
    ]
    with pytest.raises(DomainError, match="strictly inside"):
        split_layout(layout, 20, b, 10, left, right, 3)
    with pytest.raises(DomainError, match="at least 3 frames"):
        split_layout(layout, 20, b, 18, left, right, 3)


def test_merge_needs_adjacent_clips() -> None:
    a, b, c, m = ids(4)
    layout = [Segment(0, 10, a), Segment(10, 20, b), Segment(20, 30, c)]
    assert [(s.start, s.end) for s in merge_layout(layout, 30, c, b, m)] == [(0, 10), (10, 30)]
    with pytest.raises(DomainError, match="not adjacent"):
        merge_layout(layout, 30, a, c, m)
    with pytest.raises(DomainError, match="with itself"):
        merge_layout(layout, 30, a, a, m)


@given(
    frame_count=st.integers(min_value=1, max_value=5000),
    cuts=st.lists(st.integers(min_value=-10, max_value=6000), max_size=40),
)
def test_any_cut_list_yields_a_partition(frame_count: int, cuts: list[int]) -> None:
    inside = {c for c in cuts if 0 < c < frame_count}
    layout = layout_from_cuts(cuts, frame_count, ids(len(inside) + 1))
    check_partition(layout, frame_count)
    assert {s.start for s in layout[1:]} == inside
