"""Times Heaters' own projections on a generated log: catch-up of all five read models from nothing,
a rebuild of all five, a rebuild of the history one. Run by ``bench/projections.py`` in a subprocess,
for the code at hand and for a baseline commit of the same repository (so both are measured the same
way, on this machine, in one run): it only uses ``bench.projections.generate``, ``projections.runner.catch_up`` and
``projections.rebuild.rebuild``, called ``(app, address)`` or, in a baseline from before the log
follower, ``(address, schema)``.

    python bench/projection_timing.py EVENTS   # prints one JSON object
"""

from __future__ import annotations

import inspect
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA = "bench"


def server_cpu_seconds(home: str) -> float | None:
    """CPU seconds used so far by the embedded PostgreSQL under ``home`` (postmaster and backends),
    from /proc; None where there is no /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[str, list[str]] = {}
    masters: set[str] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[entry.name] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if home.encode() in cmdline and b"postgres" in cmdline:
            masters.add(entry.name)
    return sum(
        sum(int(x) for x in stat[11:15]) / tick
        for pid, stat in stats.items()
        if pid in masters or stat[1] in masters
    )


def measure(events: int, seed: int = 42) -> dict[str, Any]:
    import logging

    from bench.projections import generate
    from commands.service import HeatersApplication
    from infra.database import connect, embedded_postgres, eventsourcing_env

    try:
        from infra.schema import prepare_schema
    except ImportError:  # a baseline commit from before infra/schema.py
        from infra.database import prepare_schema  # type: ignore[attr-defined,no-redef]
    from projections.rebuild import rebuild
    from projections.runner import catch_up

    logging.getLogger("commands").setLevel(logging.WARNING)
    with (
        tempfile.TemporaryDirectory(prefix="heaters-bench-") as home,
        embedded_postgres(Path(home)) as address,
    ):
        prepare_schema(address, SCHEMA)
        app = HeatersApplication(env=eventsourcing_env(address, SCHEMA))
        started = time.perf_counter()
        head = generate(app, events, random.Random(seed))
        generated = time.perf_counter() - started
        with connect(address) as conn:
            row = conn.execute(
                "SELECT count(*), sum(octet_length(state)) FROM bench.heaters_events "
                "WHERE topic = 'heaters.clip:Embedded'"
            ).fetchone()
        embedded, embedded_bytes = (int(row[0]), int(row[1] or 0)) if row else (0, 0)
        results: dict[str, Any] = {
            "events": head,
            "generate_seconds": round(generated, 2),
            "embedded_events": embedded,
            "bytes_per_embedded_event": round(embedded_bytes / embedded) if embedded else None,
        }

        def timed(label: str, action: Callable[[], Any]) -> None:
            load = os.getloadavg()[0]
            server_before = server_cpu_seconds(home)
            cpu_before = time.process_time()
            started = time.perf_counter()
            action()
            seconds = time.perf_counter() - started
            client = time.process_time() - cpu_before
            server_after = server_cpu_seconds(home)
            server = None if server_before is None or server_after is None else server_after - server_before
            results[label] = {
                "events": head,
                "seconds": round(seconds, 3),
                "rate": head / seconds,
                "client_cpu_seconds": round(client, 3),
                "server_cpu_seconds": None if server is None else round(server, 3),
                # What the rate would be with both CPUs to itself and no overlap of client and server.
                "cpu_bound_rate": None if server is None else head / (client + server),
                "load_1min": round(load, 2),
            }

        # The log follower's projections read through the application (its mapper, its table).
        takes_app = next(iter(inspect.signature(catch_up).parameters)) == "app"
        log: Any = app if takes_app else address
        at: Any = address if takes_app else SCHEMA
        timed("catch_up_all_five", lambda: catch_up(log, at))
        timed("rebuild_all_five", lambda: rebuild(log, at))
        timed("rebuild_history", lambda: rebuild(log, at, "history"))
        app.close()
        return results


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 42)))
