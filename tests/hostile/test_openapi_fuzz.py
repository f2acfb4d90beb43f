"""Schemathesis over the OpenAPI schema the app serves: every documented operation, valid and invalid input.

The schema is loaded from ``/api/schema/`` through the WSGI app, and every generated case is sent to the same
in-process app with a real API key holding every scope. No case may answer 5xx, answer a status the schema does
not document, or answer a body that does not match the documented one; invalid input must be refused with 4xx.
Hypothesis runs derandomized, so the same cases run every time.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from analytics import panels
from tests.conftest import Api

pytestmark = [pytest.mark.django_db]

# Per operation and mode (and real metric names). With the review and QA API the schema has about 17 operations,
# so 40 each is some 1,400 cases, over the 1,000 the drill asks for; 120 each took ~10 minutes of CI's budget.
EXAMPLES = 40
MIN_CASES = 1_000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def in_test_transaction(app: Any) -> Any:
    """The real WSGI app, minus closing the database connection around each request (as Django's test client
    does): the test's transaction holds the data the requests read, and rolls it all back at the end."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = app(environ, start_response)
            try:
                return list(response)
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)

    return wsgi


def fuzz(strategy: Any, *, auth: dict[str, str], label: str, cases: Counter[str]) -> None:
    """Send every case the strategy generates (a fixed sequence: derandomized) and check each answer."""

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(headers=auth)
        case.validate_response(response, checks=CHECKS, headers=auth)
        cases[f"{label} -> {response.status_code}"] += 1

    run()


def test_generated_requests_get_documented_answers_and_never_5xx(api: Api, settings: Any) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]  # the host schemathesis' WSGI client sends
    # The fuzzer sends far more than the default rate in a minute; the limit itself is tested elsewhere.
    api.client.rate_limit_per_minute = 10**6
    api.client.save(update_fields=["rate_limit_per_minute"])
    schema = schemathesis.openapi.from_wsgi("/api/schema/", in_test_transaction(get_wsgi_application()))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    auth = {"Authorization": f"Bearer {api.key}"}
    cases: Counter[str] = Counter()
    started = time.monotonic()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} {mode.value}"
            fuzz(operation.as_strategy(generation_mode=mode), auth=auth, label=label, cases=cases)
            if operation.path == "/api/v1/metrics/{name}":
                # A generated name is almost never a metric: fuzz every real metric's filter as well.
                names = st.sampled_from(sorted(p.name for p in panels.panels_all()))
                strategy = names.flatmap(
                    lambda name, mode=mode, operation=operation: operation.as_strategy(
                        generation_mode=mode, path_parameters={"name": name}
                    )
                )
                fuzz(strategy, auth=auth, label=f"{label} (real metric names)", cases=cases)

    elapsed = time.monotonic() - started
    print(f"schemathesis: {sum(cases.values())} cases over {len(operations)} operations in {elapsed:.1f}s")
    for label, n in sorted(cases.items()):
        print(f"  {n:5d}  {label}")
    assert sum(cases.values()) >= MIN_CASES
