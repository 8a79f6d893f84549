"""Typed request and response bodies of the JSON API (msgspec structs: validated and in the OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class SpritePlayer(msgspec.Struct):
    """Geometry of a video's sprite sheets: the player shows source frame ``f`` with the tile
    ``k = min(floor(f * sprite_fps / source_fps), sprite_count - 1)`` of sheet ``k // per_sheet``."""

    sheets: list[str]
    tile_width: int
    tile_height: int
    columns: int
    rows: int
    per_sheet: int
    sprite_count: int
    sprite_fps: str
    source_fps: str


class ClipView(msgspec.Struct):
    id: str
    video_id: str
    video_title: str | None
    state: str
    live: bool
    start_frame: int
    end_frame: int
    fps: float | None
    index: int
    clip_count: int
    previous_clip_id: str | None
    next_clip_id: str | None
    grouped_with: list[str]
    sprite: SpritePlayer | None
    leased_by: str | None
    version: int


class NextClips(msgspec.Struct):
    clips: list[ClipView]
    pending: int
    #: Of the clips the page holds (``exclude``), those no longer awaiting review or now on another
    #: reviewer's screen: the page drops them.
    gone: list[str] = msgspec.field(default_factory=list)


class Sibling(msgspec.Struct):
    id: str
    start_frame: int
    end_frame: int
    state: str
    index: int
    thumb_style: str | None


class Siblings(msgspec.Struct):
    video_id: str
    clips: list[Sibling]


class Pending(msgspec.Struct):
    pending: int


class DecisionBody(msgspec.Struct, forbid_unknown_fields=True):
    """``seen``: the clip's version on the reviewer's screen; a clip changed since is refused (409)."""

    seen: int | None = None


class SplitBody(msgspec.Struct, forbid_unknown_fields=True):
    frame: int
    seen: int | None = None


class TargetBody(msgspec.Struct, forbid_unknown_fields=True):
    """``with_clip_id`` absent or null: the previous clip of the same video."""

    with_clip_id: str | None = None
    seen: int | None = None


class HeartbeatBody(msgspec.Struct, forbid_unknown_fields=True):
    """``shown``: the clip on the page's screen."""

    shown: str | None = None


class SkippedClip(msgspec.Struct):
    id: str
    video_id: str
    video_title: str | None
    start_frame: int
    end_frame: int


class ActionResult(msgspec.Struct):
    action: str
    clip_id: str
    message: str
    pending: int
    caught_up: bool
    new_clip_ids: list[str] = msgspec.field(default_factory=list)
    other_clip_id: str | None = None
    undone: str | None = None
    #: Clips this action took out of review (a merge's partner, the clips an undone split or merge made).
    removed_clip_ids: list[str] = msgspec.field(default_factory=list)


class RetryResult(msgspec.Struct):
    id: str
    stage: str
    message: str
    caught_up: bool


class RebuildResult(msgspec.Struct):
    name: str
    message: str
    detail: Any = None


class LeaseRenewal(msgspec.Struct):
    renewed: int


class LeaseRelease(msgspec.Struct):
    released: int


class ErrorBody(msgspec.Struct):
    error: str
    status: int
    kind: Literal["conflict", "domain", "not_found", "bad_request", "unauthorized", "forbidden", "error"]
    clip_id: str | None = None
    state: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
