"""Issue 9: schemathesis against ``/schema/openapi.json`` of the app served on loopback, with a
logged-in session of each role: valid and invalid inputs for every operation, never a 500.

Bounded: the coverage phase plus a few fuzzed examples per operation and role, within a time budget
(about a minute and a half in all)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.core.result import Ok
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test

from commands.service import HeatersApplication
from infra.database import DatabaseAddress
from projections.runner import ProjectionDaemon
from tests.helpers import clipped_video
from tests.security.web_support import PASSWORD, USERS, make_app, serve, settings_for
from web.auth import add_user

pytestmark = pytest.mark.integration

#: Fuzzed examples per operation and role (besides the coverage phase's cases), and a time budget.
EXAMPLES = 30
BUDGET_SECONDS = 150.0
#: Logging in or out would end the session the run is made with: those two are fuzzed anonymously.
SESSION_ENDING = {"POST /login", "POST /logout"}


def _session(base: str, name: str) -> tuple[requests.Session, str]:
    """A requests session logged in as ``name``, and its CSRF token."""
    session = requests.Session()
    session.get(f"{base}/login", timeout=10)
    response = session.post(
        f"{base}/login",
        data={"name": name, "password": PASSWORD, "_csrf_token": session.cookies["csrftoken"], "next": "/"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 303, response.text
    return session, str(session.cookies["csrftoken"])


def _probe(
    schema: Any,
    base: str,
    who: str,
    session: requests.Session,
    token: str,
    operation: Any,
    failures: list[str],
    statuses: Counter[int],
) -> None:
    """Schemathesis' coverage phase (boundary and invalid values of each parameter, one at a time) and
    ``EXAMPLES`` fuzzed cases, valid and invalid, of one operation as ``who``; counts the statuses."""

    def probe(case: Any) -> None:
        response = case.call(
            base_url=base, session=session, headers={"x-csrftoken": token}, timeout=30, allow_redirects=False
        )
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(
                f"{who}: {case.method} {case.formatted_path} query={case.query!r} "
                f"body={str(case.body)[:200]!r} -> {response.status_code} {response.text[:200]}"
            )

    test = create_test(
        operation=operation,
        test_func=probe,
        config=HypothesisTestConfig(
            project=schema.config,
            modes=[HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING],
            settings=settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        ),
    )
    test()


def test_no_input_makes_a_500_for_any_role(
    pg_address: DatabaseAddress, pg_schema: str, pg_app: HeatersApplication, tmp_path: Path
) -> None:
    for name, role in USERS:
        add_user(pg_address, pg_schema, name, role, PASSWORD)
    clipped_video(pg_app, cuts=(100, 200))
    daemon = ProjectionDaemon(pg_app, pg_address)
    daemon.start()
    config = settings_for(pg_schema, tmp_path)
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}
    started = time.monotonic()
    try:
        with serve(make_app(config, pg_app, pg_address, tmp_path), config) as base:
            schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
            results = list(schema.get_all_operations())
            operations = [result.ok() for result in results if isinstance(result, Ok)]
            assert len(operations) == len(results), "the app's OpenAPI schema has invalid operations"
            assert len(operations) >= 15, [op.label for op in operations]
            for name, _role in USERS:
                session, token = _session(base, name)
                seen = statuses.setdefault(name, Counter())
                for operation in operations:
                    if operation.label in SESSION_ENDING or time.monotonic() - started > BUDGET_SECONDS:
                        continue
                    _probe(schema, base, name, session, token, operation, failures, seen)
                    alive = session.get(f"{base}/api/review/pending", timeout=10)
                    assert alive.status_code == 200, f"{name}'s session ended during {operation.label}"
            # logging in and out, anonymously (each case with a fresh CSRF cookie)
            anonymous = requests.Session()
            anonymous.get(f"{base}/login", timeout=10)
            seen = statuses.setdefault("anonymous", Counter())
            for operation in operations:
                if operation.label in SESSION_ENDING:
                    token = str(anonymous.cookies["csrftoken"])
                    _probe(schema, base, "anonymous", anonymous, token, operation, failures, seen)
    finally:
        daemon.stop()
    assert failures == [], "\n".join(failures[:20])
    for name, _role in USERS:  # each role's run really got past the guards
        ok = sum(n for status, n in statuses[name].items() if 200 <= status < 300)
        assert ok > 100 and sum(statuses[name].values()) > 500, (name, statuses[name])
    assert sum(statuses["anonymous"].values()) > 20, statuses["anonymous"]
