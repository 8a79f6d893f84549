"""The ``heaters`` command line."""

from __future__ import annotations

import getpass
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse
from uuid import UUID

import click

# Only click is imported up front: `heaters --help` and `heaters shots` must start fast. Every
# command imports what it uses (pydantic, the event store, torch, the web app) when it runs.
if TYPE_CHECKING:
    import psycopg

    from commands.service import HeatersApplication
    from domain.video import Video
    from infra.config import Settings
    from infra.database import DatabaseAddress

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("heaters.cli")


def _print_json(data: object) -> None:
    from commands.audit import jsonable

    click.echo(json.dumps(data, default=jsonable, indent=2))  # json escapes control characters


#: C0 and C1 control characters (and DEL): a file name or title must not ring the bell, move the
#: cursor or fake output lines on the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters shown escaped (``\\n``, ``\\x07``); ``newlines`` keeps line
    breaks (and tabs) of the output's own layout."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if newlines and char in "\n\t":
            return char
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")

    return _CONTROL.sub(escape, text)


def _echo(text: str) -> None:
    """Print a line that may carry data (names, titles, errors) with its control characters escaped."""
    click.echo(printable(text))


class CliError(click.ClickException):
    """A one-line error whose message's control characters are escaped."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


def _cli_actor(who: str | None) -> str:
    """The actor of a CLI action: the operating-system user, and beside it whom ``--as`` names
    (``user:ops1 (os:root)``), so events show who really ran the command."""
    from domain.base import user_actor

    os_user = getpass.getuser()
    if who is None or who == os_user:
        return user_actor(os_user)
    if _CONTROL.search(who) or not who.strip():
        raise CliError(f"--as needs a printable name, got {who!r}")
    return f"{user_actor(who)} (os:{os_user})"


class Context:
    """What every command shares: the settings, loaded once."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    @cached_property
    def settings(self) -> Settings:
        from pydantic import ValidationError

        from infra.config import Settings

        try:
            return Settings()
        except ValidationError as error:
            first = error.errors()[0]
            name = "HEATERS_" + str(first["loc"][0]).upper() if first["loc"] else "HEATERS_*"
            raise CliError(f"bad setting {name}: {first['msg']}") from None

    @contextmanager
    def app(self) -> Iterator[HeatersApplication]:
        from entrypoints.bootstrap import open_application

        with open_application(self.settings) as (app, _address):
            yield app

    @contextmanager
    def session(self) -> Iterator[tuple[HeatersApplication, DatabaseAddress]]:
        from entrypoints.bootstrap import open_application

        with open_application(self.settings) as opened:
            yield opened


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn every expected error into a one-line message and a non-zero exit."""
    from commands.errors import Conflict, NotFound
    from domain.errors import DomainError

    try:
        yield
    except (DomainError, NotFound, Conflict, ValueError) as error:
        raise CliError(str(error)) from None


pass_context = click.make_pass_decorator(Context)


class _LazyGroup(click.Group):
    """Command groups that live in their own modules load when used, not for `heaters --help`."""

    lazy: dict[str, tuple[str, str]] = {
        "projections": (
            "entrypoints.cli_projections",
            "The read models built from the event log: status, catch-up, rebuild, resume.",
        ),
        "user": ("entrypoints.cli_users", "Manage the accounts of the web app."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            command = getattr(importlib.import_module(self.lazy[cmd_name][0]), cmd_name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        width = formatter.width - 6 - max(len(n) for n in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            if name in self.lazy:
                text = self.lazy[name][1]
                rows.append(
                    (
                        name,
                        text if len(text) <= width else text[: max(width - 3, 0)].rsplit(" ", 1)[0] + "...",
                    )
                )
                continue
            command = self.commands[name]
            if not command.hidden:
                rows.append((name, command.get_short_help_str(width)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (INFO level).")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Heaters: turn long source videos into reviewed, searchable clips.

    Settings come from HEATERS_* environment variables (see README). With none set, everything runs
    embedded under ./.heaters: PostgreSQL with pgvector, local media storage and an in-process broker.
    """
    from entrypoints.bootstrap import configure_logging

    configure_logging(logging.INFO if verbose else logging.WARNING)
    ctx.obj = Context(verbose)


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


@main.command()
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
    _submit(obj, source, who, wait, timeout)


@contextmanager
def _read_models(obj: Context) -> Iterator[tuple[psycopg.Connection[Any], DatabaseAddress]]:
    """A connection on the read models, brought up to the log head first (no daemon may be running)."""
    from projections.runner import catch_up, schema_connection
    from projections.views import VIEW_PROJECTIONS

    with obj.session() as (app, address):
        catch_up(app, address, VIEW_PROJECTIONS)
        with schema_connection(address, obj.settings.database_schema) as conn:
            yield conn, address


def _video_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "frames": row["frames"] or None, "fps": row["fps"] or None}


def _clip_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "grouped_with": sorted(str(c) for c in row["grouped_with"] or ())}


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[("" if r[c] is None else printable(str(r[c]), newlines=False)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    _echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        _echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def videos(obj: Context, as_json: bool) -> None:
    """List every submitted video with its pipeline state, flagging work that waits longer than
    expected (and on what)."""
    from processors.work_ledger import waiting_work
    from projections.views import video_list

    s = obj.settings
    with _clear_errors(), _read_models(obj) as (conn, address):
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
        _print_json(rows)
    elif not rows:
        _echo("no videos yet: heaters submit SOURCE")
    else:
        _table(rows, ["id", "state", "clips", "frames", "title", "failure", "waiting"])
        if waiting:
            click.echo(
                f"\n{len(waiting)} waiting longer than expected: `heaters retry video ID` sends it again"
            )


@main.command()
@click.option("--video", "video_id", default=None, help="Only the clips of this video.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def clips(obj: Context, video_id: str | None, as_json: bool) -> None:
    """List the live clips (of one video, or of all), in frame order."""
    from commands.errors import NotFound, parse_id
    from projections.views import live_clip_list, video_exists

    with _clear_errors():
        vid = parse_id(video_id, "video id") if video_id else None
        with _read_models(obj) as (conn, _address):
            if vid is not None and not video_exists(conn, vid):
                raise NotFound("video", vid)
            rows = [_clip_row(row) for row in live_clip_list(conn, vid)]
    if as_json:
        _print_json(rows)
    elif not rows:
        _echo("no clips yet")
    else:
        _table(rows, ["id", "video_id", "start", "end", "state", "origin"])


def _parse_as_of(value: str) -> int | datetime:
    from commands.audit import parse_as_of

    try:
        return parse_as_of(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@main.command()
@click.argument("kind", type=click.Choice(["video", "clip"]))
@click.argument("ident")
@click.option("--as-of", "as_of", default=None, help="A version number or an ISO time: show the state then.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def history(obj: Context, kind: str, ident: str, as_of: str | None, as_json: bool) -> None:
    """Replay a video's or clip's history: every event with actor, time and payload."""
    from commands.audit import jsonable, state_of

    point = _parse_as_of(as_of) if as_of else None
    with _clear_errors(), obj.app() as app:
        aggregate = app.get_video(ident) if kind == "video" else app.get_clip(ident)
        entries = app.history(aggregate.id)
        state = None
        if point is not None:
            version = point if isinstance(point, int) else app.version_at(aggregate.id, point)
            state = state_of(app.state_at(aggregate.id, version))
            entries = [e for e in entries if e.version <= version]
    if as_json:
        _print_json(
            {"id": aggregate.id, "kind": kind, "events": [asdict(e) for e in entries], "as_of": state}
        )
        return
    for entry in entries:
        payload = json.dumps(entry.payload, default=jsonable, sort_keys=True)
        _echo(
            f"v{entry.version:<4} {entry.timestamp.isoformat()}  {entry.event:<22} {entry.actor:<20} {payload}"
        )
    if state is not None:
        _echo(f"\nstate as of v{state['version']}:")
        _echo(json.dumps(state, default=jsonable, indent=2, sort_keys=True))


@main.command()
@click.argument("kind", type=click.Choice(["video", "clip"]))
@click.argument("ident")
@click.option("--as", "who", default=None, help="Who asks (default: the OS user).")
@pass_context
def retry(obj: Context, kind: str, ident: str, who: str | None) -> None:
    """Re-dispatch the failed stage of a video or clip, or else its stuck work (see `heaters videos`)."""
    from processors.work_ledger import retry_work

    with _clear_errors(), obj.session() as (app, address):
        aggregate = app.get_video(ident) if kind == "video" else app.get_clip(ident)
        done = retry_work(app, address, obj.settings.database_schema, aggregate.id, _cli_actor(who))
    _echo(f"{kind} {ident}: {done}")


@main.command()
@click.argument("kind", type=click.Choice(["video"]))
@click.argument("ident")
@click.option("--reason", default=None, help="Why, recorded in the DownloadFailed event.")
@click.option("--as", "who", default=None, help="Who cancels (default: the OS user).")
@pass_context
def cancel(obj: Context, kind: str, ident: str, reason: str | None, who: str | None) -> None:
    """Cancel a video's waiting or running download (it ends DownloadFailed; `heaters retry` restarts it)."""
    with _clear_errors(), obj.app() as app:
        video = app.get_video(ident)
        text = app.cancel_download(video.id, _cli_actor(who), reason)
    _echo(f"{kind} {ident}: download {text}")


# -- pipeline and serving ---------------------------------------------------------------------------


@contextmanager
def _up_lock(settings: Settings) -> Iterator[bool]:
    """Hold ``HEATERS_HOME/up.lock`` while a pipeline runs here; yields False when another holds it."""
    import fcntl

    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    with (home / "up.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for_clips(app: HeatersApplication, video_id: UUID, timeout: float) -> Video:
    """Show progress per stage until the video's clips are pending review or a stage failed."""
    import time

    from domain.stages import StageStatus, VideoStage

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


def _submit(obj: Context, source: str, who: str | None, wait: bool, timeout: float) -> None:
    from entrypoints.pipeline import build_pipeline
    from infra.object_storage import storage_from_settings

    normalised = _normalise_source(source)
    with _clear_errors(), obj.session() as (app, address), _up_lock(obj.settings) as alone:
        video_id = app.submit(normalised, _cli_actor(who))
        _echo(str(video_id))
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
    _echo(f"{len(video.layout)} clips pending review")


@main.command()
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--detector",
    type=click.Choice(["auto", "fast", "cascade", "neural"]),
    default=None,
    help="Override HEATERS_SHOT_DETECTOR (default auto: neural on a GPU, cascade otherwise).",
)
@pass_context
def shots(obj: Context, video: Path, as_json: bool, detector: str | None) -> None:
    """Print a video file's shot boundaries (first frame of each new shot); ingests nothing."""
    from infra.media.ffmpeg import MediaError
    from infra.media.shot_detection import detect_shots, make_detector

    kind = detector or obj.settings.shot_detector
    try:
        result = detect_shots(video, make_detector(kind))  # type: ignore[arg-type]
    except MediaError as error:
        raise CliError(str(error)) from None
    if as_json:
        _print_json(
            {
                "video": str(video),
                "frame_count": result.frame_count,
                "fps": result.fps,
                "cuts": result.cuts,
                "shots": [{"start": s, "end": e} for s, e in result.shots],
                "detector": result.detector,
                "params": result.params,
            }
        )
        return
    _echo(f"{video}: {result.frame_count} frames at {result.fps:.3f} fps, {len(result.shots)} shots")
    for start, end in result.shots:
        _echo(f"{start:>8} {end:>8}  {start / result.fps:9.3f}s")


@main.command()
@click.option(
    "--threads",
    default=2,
    show_default=True,
    help="Worker threads (for the queues other than ingest; downloads get HEATERS_INGEST_WORKER_THREADS).",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(["ingest", "media", "embeddings"]),
    help="Only these queues (repeatable; default all).",
)
@pass_context
def worker(obj: Context, threads: int, queues: tuple[str, ...]) -> None:
    """Run a Dramatiq worker for the pipeline's actors (production: with HEATERS_REDIS_URL)."""
    # Workers only work (no process-manager pool here); `heaters process-manager` dispatches.
    _run_pipeline_until_stopped(
        obj, f"worker running ({threads} threads)", worker=True, threads=threads, queues=set(queues) or None
    )


@main.command("process-manager")
@pass_context
def process_manager(obj: Context) -> None:
    """Follow the event log and dispatch pipeline work (and reconcile stuck work)."""
    # Logs what it sends, refused sends, resends.
    _run_pipeline_until_stopped(obj, "process manager running", worker=False)


def _run_pipeline_until_stopped(
    obj: Context, running: str, *, worker: bool, threads: int = 2, queues: set[str] | None = None
) -> None:
    """Run the pipeline as a service until SIGTERM or Ctrl+C: its workers (``worker``: the actors of
    ``queues`` on ``threads`` threads) or else its process manager."""
    import signal
    import threading

    from entrypoints.bootstrap import configure_logging
    from entrypoints.pipeline import build_pipeline
    from infra.metrics import serve
    from infra.object_storage import storage_from_settings

    configure_logging(logging.INFO)  # a service: one line per stage run or send, always
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if obj.settings.metrics_port:
        serve(obj.settings.metrics_port)
    with obj.session() as (app, address):
        pipeline = build_pipeline(
            obj.settings, app, address, storage_from_settings(obj.settings), manager=not worker, worker=worker
        )
        pipeline.start(worker=worker, worker_threads=threads, queues=queues)
        _echo(f"{running}; Ctrl+C stops")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            pipeline.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web app listens on.")
@click.option("--port", default=8000, show_default=True, help="Port the web app listens on.")
@click.option("--web/--no-web", default=True, help="Serve the review, search, audit and ops pages.")
@click.option("--pipeline/--no-pipeline", default=True, help="Run the process manager (and reconciler).")
@click.option("--worker/--no-worker", default=True, help="Run pipeline actors in this process.")
@click.option("--projections/--no-projections", default=True, help="Keep the read models caught up.")
@pass_context
def up(
    obj: Context, host: str, port: int, web: bool, pipeline: bool, worker: bool, projections: bool
) -> None:
    """Run Heaters: web app, pipeline and projections (all embedded by default).

    With no HEATERS_* settings this needs no servers: PostgreSQL with pgvector runs embedded under
    HEATERS_HOME, media goes to HEATERS_HOME/media and the broker runs in-process.
    """
    import signal
    import threading

    import uvicorn

    from entrypoints.bootstrap import configure_logging
    from entrypoints.pipeline import build_pipeline
    from infra.object_storage import storage_from_settings
    from projections.runner import ProjectionDaemon, catch_up
    from web.app import create_app
    from web.auth import user_count
    from web.security import server_options

    configure_logging(logging.INFO)
    settings = obj.settings
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with obj.session() as (app, address), _up_lock(settings) as alone:
        if not alone and pipeline:
            raise CliError(f"another `heaters up` is running on {settings.resolved_home}")
        storage = storage_from_settings(settings, base_url="/media")
        running = build_pipeline(settings, app, address, storage, manager=pipeline, worker=worker)
        daemon = ProjectionDaemon(app, address)
        catch_up(app, address)
        if projections:
            daemon.start()
        if pipeline or worker:
            running.start(worker=worker)
        try:
            if web:
                web_app = create_app(
                    settings,
                    app,
                    address,
                    storage,
                    queue_depths=running.queue_depths,
                    secret=settings.web_secret,
                )
                _echo(f"Heaters is up: http://{host}:{port}/review  (Ctrl+C stops)")
                if user_count(address, settings.database_schema) == 0:
                    _echo(
                        "No accounts yet: create one with `heaters user add NAME --role reviewer|auditor|ops`"
                    )
                # forwarded headers only from HEATERS_TRUSTED_PROXIES (default: none)
                uvicorn.run(web_app, host=host, port=port, log_level="info", **server_options(settings))
            else:
                _echo("Heaters is up (no web); Ctrl+C stops")
                stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
            daemon.stop()
