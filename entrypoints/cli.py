"""The ``heaters`` command line: the root group, and where each command lives.

The commands live in modules by role (``cli_library``: the videos and clips; ``cli_media``: shot
detection on a file; ``cli_run``: the services; ``cli_users``, ``cli_projections``), each importing
what it uses at its top. This module imports none of them: ``heaters --help`` shows the short help
kept in ``COMMANDS`` and a command's module loads only when that command runs (click's lazy group),
so the help and ``heaters shots`` start fast."""

from __future__ import annotations

import importlib
import logging

import click

from entrypoints.bootstrap import configure_logging
from entrypoints.cli_support import Context

#: Every command: its name → (the module that defines it, as a function named like the command with
#: ``_`` for ``-``; the short help `heaters --help` shows, the first sentence of the command's help).
#: tests/unit/test_cli_startup.py holds each entry to its module.
COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("entrypoints.cli_library", "Submit a video: a http(s) URL or a local file."),
    "videos": (
        "entrypoints.cli_library",
        "List every submitted video with its pipeline state, flagging work that waits longer than "
        "expected (and on what).",
    ),
    "clips": ("entrypoints.cli_library", "List the live clips (of one video, or of all), in frame order."),
    "history": (
        "entrypoints.cli_library",
        "Replay a video's or clip's history: every event with actor, time and payload.",
    ),
    "retry": (
        "entrypoints.cli_library",
        "Re-dispatch the failed stage of a video or clip, or else its stuck work (see `heaters videos`).",
    ),
    "cancel": (
        "entrypoints.cli_library",
        "Cancel a video's waiting or running download (it ends DownloadFailed; `heaters retry` restarts it).",
    ),
    "shots": (
        "entrypoints.cli_media",
        "Print a video file's shot boundaries (first frame of each new shot); ingests nothing.",
    ),
    "up": (
        "entrypoints.cli_run",
        "Run Heaters: web app, pipeline and projections (all embedded by default).",
    ),
    "worker": (
        "entrypoints.cli_run",
        "Run a Dramatiq worker for the pipeline's actors (production: with HEATERS_REDIS_URL).",
    ),
    "process-manager": (
        "entrypoints.cli_run",
        "Follow the event log and dispatch pipeline work (and reconcile stuck work).",
    ),
    "projections": (
        "entrypoints.cli_projections",
        "The read models built from the event log: status, catch-up, rebuild, resume.",
    ),
    "user": ("entrypoints.cli_users", "Manage the accounts of the web app."),
}


class _LazyGroup(click.Group):
    """A group whose commands are named in ``COMMANDS`` and load from their modules when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command = getattr(module, cmd_name.replace("-", "_"))
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their short help from ``COMMANDS``, shortened as click shortens a
        command's help, without loading a command's module."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)) for name in COMMANDS
        ]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (INFO level).")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Heaters: turn long source videos into reviewed, searchable clips.

    Settings come from HEATERS_* environment variables (see README). With none set, everything runs
    embedded under ./.heaters: PostgreSQL with pgvector, local media storage and an in-process broker.
    """
    configure_logging(logging.INFO if verbose else logging.WARNING)
    ctx.obj = Context(verbose)
