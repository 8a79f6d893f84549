"""``heaters projections …``: the status of the read models, rebuilding and resuming them."""

from __future__ import annotations

import json
import logging

import click
from pydantic import ValidationError

from entrypoints.bootstrap import open_application
from infra.config import Settings
from projections.rebuild import RebuildRunning
from projections.rebuild import rebuild as rebuild_projections
from projections.runner import PROJECTIONS, ProjectionError, catch_up
from projections.runner import resume as resume_projection
from projections.status import daemon_status, drop_abandoned_rebuilds, projection_status

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
@click.option("--drop-abandoned", is_flag=True, help="Remove rebuilds whose process died.")
def status(as_json: bool, drop_abandoned: bool) -> None:
    """Position, lag, state, errors and the daemon keeping each projection caught up; the daemons'
    liveness and which one leads."""
    settings = _settings()
    with open_application(settings) as (app, address):
        dropped = drop_abandoned_rebuilds(app, address) if drop_abandoned else []
        rows = projection_status(app, address)
        daemons = daemon_status(address, settings.database_schema)
    if as_json:
        data = {
            "projections": [r.as_dict() for r in rows],
            "daemons": [d.as_dict() for d in daemons],
            "dropped": dropped,
        }
        click.echo(json.dumps(data, indent=2, default=str))
        return
    for name in dropped:
        click.echo(f"dropped abandoned rebuild {name}")
    click.echo(
        f"{'name':<18} {'state':<12} {'position':>9} {'head':>9} {'lag':>7} {'lag s':>8} {'errors':>6}"
        "  kept by / last error"
    )
    for r in rows:
        error = (r.last_error or "").splitlines()[0][:80] if r.last_error else ""
        keeper = r.daemon or ("" if r.state != "running" else "NO LIVE DAEMON")
        click.echo(
            f"{r.name:<18} {r.state:<12} {r.position:>9} {r.head:>9} {r.lag_events:>7} {r.lag_seconds:>8.1f} "
            f"{r.error_count:>6}  {' · '.join(x for x in (keeper, error) if x)}"
        )
    click.echo("")
    if not daemons:
        click.echo(
            "daemons: none has ever run on this schema (`heaters up --no-web --no-pipeline --no-worker`)"
        )
    for d in daemons:
        role = "leader" if d.leader else "standby"
        life = "alive" if d.alive else "DEAD"
        click.echo(f"daemon {d.id:<32} {role:<8} {life:<6} last beat {d.last_beat_seconds:.1f} s ago")


@projections.command("catch-up")
@click.argument("names", nargs=-1, type=click.Choice(list(PROJECTIONS)))
def catch_up_command(names: tuple[str, ...]) -> None:
    """Bring projections (default: all) up to the head of the log now."""
    settings = _settings()
    with open_application(settings) as (app, address):
        head = catch_up(app, address, list(names) or None)
    click.echo(f"caught up to position {head}")


@projections.command()
@click.argument("name", required=False, type=click.Choice(list(PROJECTIONS)))
def rebuild(name: str | None) -> None:
    """Replay the whole log into fresh tables beside the live ones and swap them in (default: all)."""
    settings = _settings()
    with open_application(settings) as (app, address):
        try:
            position = rebuild_projections(app, address, name)
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
