"""What the ops page's buttons and the ops API both do: retry a video or clip, rebuild a projection."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import UUID

from projections.schema import PROJECTION_TABLES

if TYPE_CHECKING:
    from web.auth import User
    from web.review import Projections

log = logging.getLogger(__name__)


def retry(projections: Projections, ident: UUID, user: User) -> tuple[str, bool]:
    """Re-open the failed stage of a video or clip, or else send its stuck work again; then wait for
    the projections. Returns what was done, in words, and whether the projections caught up."""
    from processors.work_ledger import retry_work

    done = retry_work(projections.app, projections.address, projections.schema, ident, user.actor)
    return done, projections.settle(None)


def rebuild(projections: Projections, user: User, name: str) -> int:
    """Rebuild one projection's read models from the whole log; returns the log position they were
    swapped in at."""
    if name not in PROJECTION_TABLES:
        raise ValueError(f"no projection named {name!r}; known: {', '.join(sorted(PROJECTION_TABLES))}")
    log.info("%s rebuilds projection %s", user.name, name)
    return int(projections.rebuild(name))
