"""The embedded PostgreSQL as Heaters starts it: with its own settings, written beside its data."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import Settings
from infra.database import EMBEDDED_CONF, connect, database

pytestmark = pytest.mark.integration


def test_the_embedded_server_starts_with_the_configured_shared_buffers(tmp_path: Path) -> None:
    for size in ("48MB", "40MB"):  # a restart takes the new value; the include is written once
        settings = Settings(home=tmp_path, database_url=None, embedded_shared_buffers=size)
        with database(settings) as address, connect(address) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone() == (size,)
    main = (tmp_path / "pgdata" / "postgresql.conf").read_text()
    assert main.count(f"include_if_exists = '{EMBEDDED_CONF}'") == 1
    with pytest.raises(ValueError, match="shared_buffers"):
        Settings(embedded_shared_buffers="lots")
