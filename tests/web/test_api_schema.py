"""Schemathesis against the OpenAPI schema of a live portal: no request makes a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import live_client
from tests.web.test_tasks import fits_bytes


@pytest.fixture
def api_schema(live_server):
    client = live_client(live_server)
    page = client.post("/profile/tokens", data={"name": "schemathesis"}).text
    token = page.split('id="new-token">')[1].split("<")[0]
    # one real task so that generated ids sometimes hit something
    client.post(
        "/tasks/upload",
        content=fits_bytes(),
        headers={"x-filename": "a.fits", "accept": "application/json"},
    )
    client.close()
    schema = schemathesis.openapi.from_url(
        f"{live_server}/api/schema/openapi.json", headers={"authorization": f"Bearer {token}"}
    )
    schema.token = token
    return schema


def test_api_has_no_server_errors(api_schema):
    """Every operation, 25 generated requests each (ids, bodies, queries), with a valid token."""
    headers = {"authorization": f"Bearer {api_schema.token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case):
            response = case.call(headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        check()
    assert not failures, failures
