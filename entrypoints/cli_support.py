"""What the ``heaters`` commands share: their context (the settings, the application), one-line
errors, output with control characters escaped (lines, tables, JSON) and the ``up.lock``.

The root group's callback and ``heaters shots`` load this module, so it imports only light modules;
the settings (pydantic) load when a command first asks for them."""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from commands.audit import jsonable
from commands.errors import Conflict, NotFound
from domain.errors import DomainError
from entrypoints.bootstrap import open_application

if TYPE_CHECKING:
    from commands.service import HeatersApplication
    from infra.config import Settings
    from infra.database import DatabaseAddress

#: C0 and C1 control characters (and DEL): a file name or title must not ring the bell, move the
#: cursor or fake output lines on the operator's terminal.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters shown escaped (``\\n``, ``\\x07``); ``newlines`` keeps line
    breaks (and tabs) of the output's own layout."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if newlines and char in "\n\t":
            return char
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")

    return CONTROL.sub(escape, text)


def echo(text: str) -> None:
    """Print a line that may carry data (names, titles, errors) with its control characters escaped."""
    click.echo(printable(text))


def print_json(data: object) -> None:
    click.echo(json.dumps(data, default=jsonable, indent=2))  # json escapes control characters


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """``rows`` as aligned ``columns`` under an upper-case header."""
    cells = [[("" if r[c] is None else printable(str(r[c]), newlines=False)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


class CliError(click.ClickException):
    """A one-line error whose message's control characters are escaped."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn every expected error into a one-line message and a non-zero exit."""
    try:
        yield
    except (DomainError, NotFound, Conflict, ValueError) as error:
        raise CliError(str(error)) from None


class Context:
    """What every command shares: the settings, loaded once."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    @cached_property
    def settings(self) -> Settings:
        # Imported here, not at the top: pydantic is heavy, and neither `heaters --help` nor a
        # command's usage error may pay for it.
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
        with open_application(self.settings) as (app, _address):
            yield app

    @contextmanager
    def session(self) -> Iterator[tuple[HeatersApplication, DatabaseAddress]]:
        with open_application(self.settings) as opened:
            yield opened


pass_context = click.make_pass_decorator(Context)


@contextmanager
def up_lock(settings: Settings) -> Iterator[bool]:
    """Hold ``HEATERS_HOME/up.lock`` while a pipeline runs here; yields False when another holds it."""
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
