"""docker-compose.yaml stays true to the code: the services it names exist and their commands parse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from entrypoints.cli import main
from infra.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def heaters_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == "heaters:latest"}


def heaters_command(name: str) -> click.Command:
    """The `heaters` command of that name (commands load lazily, so not from ``main.commands``)."""
    command = main.get_command(click.Context(main), name)
    assert command is not None, f"no command `heaters {name}`"
    return command


def test_compose_runs_every_part_of_heaters_and_its_servers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("pgvector/pgvector")
    assert services["redis"]["image"].startswith("redis")
    assert services["minio"]["image"].startswith("minio/minio")
    commands = {name: s["command"] for name, s in heaters_services(compose).items()}
    assert any(c[0] == "up" and "--no-web" not in c for c in commands.values())  # the web app
    assert any(c[0] == "up" and "--no-web" in c and "--no-projections" not in c for c in commands.values())
    assert any(c[0] == "process-manager" for c in commands.values())
    assert {q for c in commands.values() if c[0] == "worker" for q in c[c.index("--queue") + 1 :: 4]} == {
        "ingest",
        "media",
        "embeddings",
    }


def test_every_heaters_service_command_parses(compose: dict[str, Any]) -> None:
    for name, service in heaters_services(compose).items():
        args = list(service["command"])
        try:
            heaters_command(args[0]).make_context(args[0], args[1:])
        except click.ClickException as error:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"service {name}: `heaters {' '.join(args)}` does not parse: {error}")


def test_compose_environment_names_real_settings(compose: dict[str, Any]) -> None:
    fields = {f"HEATERS_{name.upper()}" for name in Settings.model_fields}
    environment = next(iter(heaters_services(compose).values()))["environment"]
    assert set(environment) <= fields


PROCFILE = COMPOSE.with_name("Procfile")


def test_every_procfile_command_parses_and_the_shape_matches_compose(compose: dict[str, Any]) -> None:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            words = [w for w in command.split() if "=" not in w]  # leading VAR=value assignments
            assert words[0] == "heaters", line
            entries[name] = words[1:]
    for name, args in entries.items():
        try:
            heaters_command(args[0]).make_context(args[0], args[1:])
        except click.ClickException as error:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"Procfile {name}: `heaters {' '.join(args)}` does not parse: {error}")
    in_compose = {tuple(s["command"]) for s in heaters_services(compose).values()}
    in_procfile = {tuple(a) for a in entries.values()}
    web = next(c for c in in_compose if "--port" in c)
    assert {c for c in in_compose if c != web} <= in_procfile
