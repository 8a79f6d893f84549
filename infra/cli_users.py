"""``heaters user add NAME --role reviewer|auditor|ops``: accounts of the web app.

The password comes from ``--password``, else the ``HEATERS_PASSWORD`` environment variable (for
scripts), else a prompt (typed twice, not echoed).
"""

from __future__ import annotations

import logging

import click
from pydantic import ValidationError

from infra.config import Settings
from infra.database import database
from web.auth import ROLES, add_user, validate_name, validate_role

log = logging.getLogger(__name__)


@click.group("user")
def user() -> None:
    """Manage the accounts of the web app."""


@user.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="reviewer, auditor or ops.")
@click.option(
    "--password",
    envvar="HEATERS_PASSWORD",
    default=None,
    help="The password (default: $HEATERS_PASSWORD, else prompted).",
)
def add(name: str, role: str, password: str | None) -> None:
    """Create a user, or set the role and password of an existing one."""
    try:
        validate_name(name)
        validate_role(role)
        settings = Settings()
    except (ValueError, ValidationError) as error:
        raise click.ClickException(str(error)) from None
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert password is not None
    try:
        with database(settings) as address:
            created = add_user(address, settings.database_schema, name, role, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"user {name} {'added' if created else 'updated'} with role {role}")
