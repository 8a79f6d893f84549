"""`heaters --help` and `heaters shots` start fast: the CLI module imports only click up front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def _modules_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
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


def test_lazy_command_groups_still_run() -> None:
    from click.testing import CliRunner

    from entrypoints.cli import main

    result = CliRunner().invoke(main, ["user", "--help"])
    assert result.exit_code == 0 and "Manage the accounts" in result.output
    result = CliRunner().invoke(main, ["projections", "--help"])
    assert result.exit_code == 0 and "read models" in result.output
    result = CliRunner().invoke(main, ["nonsense"])
    assert result.exit_code == 2 and "No such command" in result.output
