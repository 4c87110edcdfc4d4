"""The OpenAPI surface, fuzzed by schemathesis in-process: never a 5xx.

The gateway runs with fake backends, quota store and audit log; every
generated request carries a valid token of a user in every group, so the
fuzzer reaches admission, routing and forwarding, not only the 401.
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from tests.unit.gateway.conftest import Clock, FakeIdp, Harness, make_config

IDP = FakeIdp()
HARNESS = Harness(make_config(), IDP, clock=Clock())
GROUPS = ["staff", "power", "clinicians", "researchers"]


def _token() -> str:
    return IDP.token(groups=GROUPS, exp=int(time.time()) + 3600)


TOKEN = _token()
# The API description is behind authentication too.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", HARNESS.app, headers={"Authorization": f"Bearer {TOKEN}"}
)


def test_the_document_describes_the_surface() -> None:
    with HARNESS.client() as client:
        document = client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert set(document["paths"]) == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
    }
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    parameter = document["components"]["parameters"]["DataClass"]
    assert parameter["name"] == "X-Sovereign-Data-Class"
    assert "Error" in document["components"]["schemas"]


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_5xx(case: Case[Any]) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
