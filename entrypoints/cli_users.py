"""``heaters user add|disable|remove NAME``: accounts of the web app.

The password comes from ``--password``, else the ``HEATERS_PASSWORD`` environment variable (for
scripts), else a prompt (typed twice, not echoed). It needs 12 characters or more and must not be a
common password. Changing a user's role or password, disabling or removing the user ends all of
that user's web sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import click
from pydantic import ValidationError

from entrypoints.bootstrap import open_database
from infra.config import Settings
from infra.database import DatabaseAddress
from web.auth import ROLES, add_user, disable_user, remove_user, validate_name, validate_role

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
    """Create a user, or set the role and password of an existing one (which ends its sessions and
    enables it again if it was disabled)."""
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
        with open_database(settings) as address:
            created = add_user(address, settings.database_schema, name, role, password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"user {name} {'added' if created else 'updated'} with role {role}")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise click.ClickException(str(error)) from None


def _end_account(name: str, end: Callable[[DatabaseAddress, str, str], int], done: str) -> None:
    settings = _settings()
    try:
        with open_database(settings) as address:
            ended = end(address, settings.database_schema, name)
    except LookupError as error:
        raise click.ClickException(str(error.args[0])) from None
    click.echo(f"user {name} {done}; {ended} session(s) ended")


@user.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Refuse the user's logins and end their sessions (`user add` with a new password enables it)."""
    _end_account(name, disable_user, "disabled")


@user.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Delete the account and end its sessions (the events it recorded keep its name)."""
    _end_account(name, remove_user, "removed")
