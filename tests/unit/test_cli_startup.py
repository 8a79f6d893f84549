"""`heaters --help` and `heaters shots` start fast: the root group names every command (``COMMANDS``)
and loads a command's module only when that command is used; the names stay true to the modules."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from entrypoints.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "torch",
    "cv2",
    "open_clip",
    "onnxruntime",
    "pydantic",
    "litestar",
    "psycopg",
    "eventsourcing",
    "numpy",
)


def _modules_after(code: str, watched: tuple[str, ...] = HEAVY) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {watched!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return [m for m in done.stdout.strip().splitlines()[-1].split(",") if m] if done.stdout.strip() else []


def test_help_loads_no_heavy_module() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "from entrypoints.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0 and 'projections' in r.output and 'user' in r.output, r.output\n"
        "r = CliRunner().invoke(main, ['shots', '--help'])\n"
        "assert r.exit_code == 0 and '--detector' in r.output, r.output\n"
    )
    assert _modules_after(code) == []


def test_help_loads_no_command_module() -> None:
    modules = tuple(sorted({module for module, _help in COMMANDS.values()}))
    code = (
        "from click.testing import CliRunner\n"
        "from entrypoints.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
    )
    assert _modules_after(code, modules) == []


def test_lazy_command_groups_still_run() -> None:
    result = CliRunner().invoke(main, ["user", "--help"])
    assert result.exit_code == 0 and "Manage the accounts" in result.output
    result = CliRunner().invoke(main, ["projections", "--help"])
    assert result.exit_code == 0 and "read models" in result.output
    result = CliRunner().invoke(main, ["nonsense"])
    assert result.exit_code == 2 and "No such command" in result.output


def test_help_lists_every_command_with_its_short_help() -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=400, max_content_width=400)
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1].splitlines()
    rows = dict(line.strip().split(maxsplit=1) for line in listed if line.strip())
    assert rows == {name: short for name, (_module, short) in COMMANDS.items()}


def test_each_command_is_named_where_it_lives_with_its_own_short_help() -> None:
    for name, (module_name, short) in COMMANDS.items():
        command = main.get_command(click.Context(main), name)
        assert isinstance(command, click.Command), name
        assert command.name == name
        assert command.callback is not None and command.callback.__module__ == module_name
        assert command.get_short_help_str(limit=10_000) == short, name


def test_every_command_of_the_command_modules_is_named() -> None:
    """A command added to a module but not to ``COMMANDS`` would never run."""
    named: dict[str, set[str]] = {}
    for name, (module, _help) in COMMANDS.items():
        named.setdefault(module, set()).add(name)
    for module_name, names in named.items():
        module = importlib.import_module(module_name)
        defined = {c for c in vars(module).values() if isinstance(c, click.Command)}
        subcommands = {s for c in defined if isinstance(c, click.Group) for s in c.commands.values()}
        assert {c.name for c in defined - subcommands} == names, module_name
