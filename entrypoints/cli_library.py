"""``heaters submit|videos|clips|history|retry|cancel``: what operators and auditors do with the
library of videos and clips."""

from __future__ import annotations

import getpass
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from uuid import UUID

import click

from commands.audit import jsonable, parse_as_of, state_of
from commands.errors import NotFound, parse_id
from domain.base import user_actor
from domain.stages import StageStatus, VideoStage
from entrypoints.cli_support import (
    CONTROL,
    CliError,
    Context,
    clear_errors,
    echo,
    pass_context,
    print_json,
    table,
    up_lock,
)
from entrypoints.pipeline import build_pipeline
from infra.object_storage import storage_from_settings
from processors.work_ledger import retry_work, waiting_work
from projections.runner import catch_up, schema_connection
from projections.views import VIEW_PROJECTIONS, live_clip_list, video_exists, video_list

if TYPE_CHECKING:
    import psycopg

    from commands.service import HeatersApplication
    from domain.video import Video
    from infra.database import DatabaseAddress

log = logging.getLogger("heaters.cli")


def cli_actor(who: str | None) -> str:
    """The actor of a CLI action: the operating-system user, and beside it whom ``--as`` names
    (``user:ops1 (os:root)``), so events show who really ran the command."""
    os_user = getpass.getuser()
    if who is None or who == os_user:
        return user_actor(os_user)
    if CONTROL.search(who) or not who.strip():
        raise CliError(f"--as needs a printable name, got {who!r}")
    return f"{user_actor(who)} (os:{os_user})"


def _normalise_source(source: str) -> str:
    parsed = urlparse(source)
    if parsed.scheme and len(parsed.scheme) > 1:
        return source  # URLs, including forbidden schemes, are judged by the download stage
    path = Path(source).expanduser()
    if not path.exists():
        raise CliError(f"no such file: {source} (give a http(s) URL or a local video file)")
    if not path.is_file():
        raise CliError(f"not a file: {source}")
    return str(path.resolve())


@click.command()
@click.argument("source")
@click.option("--as", "who", default=None, help="Who submits (default: the OS user).")
@click.option("--wait", is_flag=True, help="Show progress per stage until the clips are pending review.")
@click.option(
    "--timeout", default=3600.0, show_default=True, help="With --wait: give up after this many seconds."
)
@pass_context
def submit(obj: Context, source: str, who: str | None, wait: bool, timeout: float) -> None:
    """Submit a video: a http(s) URL or a local file. Prints the new video's id.

    With --wait it shows progress per stage and ends with the clip count; when no `heaters up` is
    running it runs the pipeline to "pending review" in its own process.
    """
    normalised = _normalise_source(source)
    with clear_errors(), obj.session() as (app, address), up_lock(obj.settings) as alone:
        video_id = app.submit(normalised, cli_actor(who))
        echo(str(video_id))
        if not wait:
            return
        if alone:  # no `heaters up` is running: run the pipeline here until review
            log.info("no running `heaters up` found; running the pipeline in this process")
            pipeline = build_pipeline(obj.settings, app, address, storage_from_settings(obj.settings))
            pipeline.start()
            try:
                video = _wait_for_clips(app, video_id, timeout)
            finally:
                pipeline.stop()
        else:
            video = _wait_for_clips(app, video_id, timeout)
    if video.failed_stage is not None:
        progress = video.stages[video.failed_stage]
        raise CliError(f"{video.failed_stage} failed (attempt {progress.attempts}): {progress.last_error}")
    echo(f"{len(video.layout)} clips pending review")


def _wait_for_clips(app: HeatersApplication, video_id: UUID, timeout: float) -> Video:
    """Show progress per stage until the video's clips are pending review or a stage failed."""
    deadline = time.monotonic() + timeout
    with click.progressbar(length=len(VideoStage), label="waiting", show_pos=True) as bar:
        done = 0
        while True:
            video = app.get_video(video_id)
            finished = sum(video.stages[s].status == StageStatus.DONE for s in VideoStage)
            if finished > done:
                bar.update(finished - done)
                done = finished
            stage = video.current_stage
            label = "done" if stage is None else "shot detection" if stage == VideoStage.SHOTS else stage
            bar.label = f"{label:<15}"
            if stage is None or video.failed_stage is not None:
                return video
            if time.monotonic() > deadline:
                raise CliError(f"video {video_id} is still at {video.state} after {timeout:.0f} s")
            time.sleep(0.2)


@contextmanager
def _read_models(obj: Context) -> Iterator[tuple[psycopg.Connection[Any], DatabaseAddress]]:
    """A connection on the read models, brought up to the log head first (no daemon may be running)."""
    with obj.session() as (app, address):
        catch_up(app, address, VIEW_PROJECTIONS)
        with schema_connection(address, obj.settings.database_schema) as conn:
            yield conn, address


def _video_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "frames": row["frames"] or None, "fps": row["fps"] or None}


def _clip_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "grouped_with": sorted(str(c) for c in row["grouped_with"] or ())}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def videos(obj: Context, as_json: bool) -> None:
    """List every submitted video with its pipeline state, flagging work that waits longer than
    expected (and on what)."""
    s = obj.settings
    with clear_errors(), _read_models(obj) as (conn, address):
        rows = [_video_row(row) for row in video_list(conn)]
        late = waiting_work(
            address,
            s.database_schema,
            start_timeout_seconds=s.dispatch_start_timeout_seconds,
            heartbeat_timeout_seconds=s.stage_heartbeat_timeout_seconds,
        )
    waiting = {w.aggregate_id: f"{w.stage} waits on {w.waiting_on}" for w in late}
    for row in rows:
        row["waiting"] = waiting.get(row["id"])
    if as_json:
        print_json(rows)
    elif not rows:
        echo("no videos yet: heaters submit SOURCE")
    else:
        table(rows, ["id", "state", "clips", "frames", "title", "failure", "waiting"])
        if waiting:
            click.echo(
                f"\n{len(waiting)} waiting longer than expected: `heaters retry video ID` sends it again"
            )


@click.command()
@click.option("--video", "video_id", default=None, help="Only the clips of this video.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def clips(obj: Context, video_id: str | None, as_json: bool) -> None:
    """List the live clips (of one video, or of all), in frame order."""
    with clear_errors():
        vid = parse_id(video_id, "video id") if video_id else None
        with _read_models(obj) as (conn, _address):
            if vid is not None and not video_exists(conn, vid):
                raise NotFound("video", vid)
            rows = [_clip_row(row) for row in live_clip_list(conn, vid)]
    if as_json:
        print_json(rows)
    elif not rows:
        echo("no clips yet")
    else:
        table(rows, ["id", "video_id", "start", "end", "state", "origin"])


def _parse_as_of(value: str) -> int | datetime:
    try:
        return parse_as_of(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.argument("kind", type=click.Choice(["video", "clip"]))
@click.argument("ident")
@click.option("--as-of", "as_of", default=None, help="A version number or an ISO time: show the state then.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def history(obj: Context, kind: str, ident: str, as_of: str | None, as_json: bool) -> None:
    """Replay a video's or clip's history: every event with actor, time and payload."""
    point = _parse_as_of(as_of) if as_of else None
    with clear_errors(), obj.app() as app:
        aggregate = app.get_video(ident) if kind == "video" else app.get_clip(ident)
        entries = app.history(aggregate.id)
        state = None
        if point is not None:
            version = point if isinstance(point, int) else app.version_at(aggregate.id, point)
            state = state_of(app.state_at(aggregate.id, version))
            entries = [e for e in entries if e.version <= version]
    if as_json:
        print_json({"id": aggregate.id, "kind": kind, "events": [asdict(e) for e in entries], "as_of": state})
        return
    for entry in entries:
        payload = json.dumps(entry.payload, default=jsonable, sort_keys=True)
        echo(
            f"v{entry.version:<4} {entry.timestamp.isoformat()}  {entry.event:<22} {entry.actor:<20} {payload}"
        )
    if state is not None:
        echo(f"\nstate as of v{state['version']}:")
        echo(json.dumps(state, default=jsonable, indent=2, sort_keys=True))


@click.command()
@click.argument("kind", type=click.Choice(["video", "clip"]))
@click.argument("ident")
@click.option("--as", "who", default=None, help="Who asks (default: the OS user).")
@pass_context
def retry(obj: Context, kind: str, ident: str, who: str | None) -> None:
    """Re-dispatch the failed stage of a video or clip, or else its stuck work (see `heaters videos`)."""
    with clear_errors(), obj.session() as (app, address):
        aggregate = app.get_video(ident) if kind == "video" else app.get_clip(ident)
        done = retry_work(app, address, obj.settings.database_schema, aggregate.id, cli_actor(who))
    echo(f"{kind} {ident}: {done}")


@click.command()
@click.argument("kind", type=click.Choice(["video"]))
@click.argument("ident")
@click.option("--reason", default=None, help="Why, recorded in the DownloadFailed event.")
@click.option("--as", "who", default=None, help="Who cancels (default: the OS user).")
@pass_context
def cancel(obj: Context, kind: str, ident: str, reason: str | None, who: str | None) -> None:
    """Cancel a video's waiting or running download (it ends DownloadFailed; `heaters retry` restarts it)."""
    with clear_errors(), obj.app() as app:
        video = app.get_video(ident)
        text = app.cancel_download(video.id, cli_actor(who), reason)
    echo(f"{kind} {ident}: download {text}")
