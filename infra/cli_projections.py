"""``heaters projections …``: the status of the read models, rebuilding and resuming them."""

from __future__ import annotations

import json
import logging

import click
from pydantic import ValidationError

from infra.config import Settings
from infra.runtime import open_application
from projections.rebuild import RebuildRunning
from projections.rebuild import rebuild as rebuild_projections
from projections.runner import PROJECTIONS, ProjectionError, catch_up
from projections.runner import resume as resume_projection
from projections.status import projection_status

log = logging.getLogger("heaters.cli.projections")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise click.ClickException(f"bad setting: {error.errors()[0]['msg']}") from None


@click.group("projections")
def projections() -> None:
    """The read models built from the event log: status, catch-up, rebuild, resume."""


@projections.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Position, lag, state and errors of every projection."""
    settings = _settings()
    with open_application(settings) as (_app, address):
        rows = projection_status(address, settings.database_schema)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    click.echo(
        f"{'name':<12} {'state':<12} {'position':>9} {'head':>9} {'lag':>7} {'lag s':>8} {'errors':>6}  last error"
    )
    for r in rows:
        error = (r.last_error or "").splitlines()[0][:80] if r.last_error else ""
        click.echo(
            f"{r.name:<12} {r.state:<12} {r.position:>9} {r.head:>9} {r.lag_events:>7} {r.lag_seconds:>8.1f} "
            f"{r.error_count:>6}  {error}"
        )


@projections.command("catch-up")
@click.argument("names", nargs=-1, type=click.Choice(list(PROJECTIONS)))
def catch_up_command(names: tuple[str, ...]) -> None:
    """Bring projections (default: all) up to the head of the log now."""
    settings = _settings()
    with open_application(settings) as (_app, address):
        head = catch_up(address, settings.database_schema, list(names) or None)
    click.echo(f"caught up to position {head}")


@projections.command()
@click.argument("name", required=False, type=click.Choice(list(PROJECTIONS)))
def rebuild(name: str | None) -> None:
    """Replay the whole log into fresh tables beside the live ones and swap them in (default: all)."""
    settings = _settings()
    with open_application(settings) as (_app, address):
        try:
            position = rebuild_projections(address, settings.database_schema, name)
        except (ProjectionError, RebuildRunning) as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"rebuilt {name or 'all projections'} up to position {position}")


@projections.command()
@click.argument("name", type=click.Choice(list(PROJECTIONS)))
@click.option("--skip", is_flag=True, help="Skip the event it stopped at instead of retrying it.")
def resume(name: str, skip: bool) -> None:
    """Restart a projection that stopped on an error."""
    settings = _settings()
    with open_application(settings) as (_app, address):
        position = resume_projection(address, settings.database_schema, name, skip=skip)
    click.echo(f"{name} running again from position {position}")
