"""Property-based fuzzing of every directory endpoint, in process (the real app on a
real SQLite file and on a real PostgreSQL database): whatever arrives, the answer is
a 2xx/4xx JSON body, never a 5xx."""

from __future__ import annotations

import json
from typing import Iterator
from urllib.parse import quote

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mesh_directory.app import DirectoryConfig, create_app
from mesh_directory.store import open_store

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=6),
                    max_leaves=25)
FIELDS = ["token", "mesh_id", "name", "region", "models_served", "models_wanted", "models_on_disk",
          "total_vram_gb", "node_count", "client_count", "max_clients", "version"]
LISTINGISH = st.fixed_dictionaries({}, optional={f: JSON for f in FIELDS})
PUBLISHISH = st.fixed_dictionaries({}, optional={"listing": LISTINGISH | JSON, "public_key": JSON, "signed_at": JSON,
                                                 "signature": JSON})


@pytest.fixture
def client(directory_db: str) -> Iterator[TestClient]:
    app = create_app(open_store(directory_db), DirectoryConfig(read_rate=0, write_rate=0))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check(response) -> None:  # noqa: ANN001
    assert response.status_code < 500, response.text
    json.loads(response.text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=PUBLISHISH | JSON)
def test_publish_never_5xx(client: TestClient, body: object) -> None:
    check(client.post("/v1/meshes", json=body))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lid=st.text(max_size=40), body=JSON)
def test_delete_never_5xx(client: TestClient, lid: str, body: object) -> None:
    check(client.request("DELETE", f"/v1/meshes/{quote(lid, safe='') or 'x'}", json=body))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["model", "region", "name", "limit", "cursor", "other"]), st.text(max_size=300)))
def test_list_never_5xx(client: TestClient, params: dict) -> None:
    check(client.get("/v1/meshes", params=params))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=3000))
def test_raw_bytes_never_5xx(client: TestClient, raw: bytes) -> None:
    check(client.post("/v1/meshes", content=raw, headers={"content-type": "application/json"}))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_operation_in_the_openapi_document_survives_random_input(client: TestClient, data: st.DataObject) -> None:
    """Driven by the OpenAPI document itself: pick any documented operation, fill its
    path and query parameters and body with random values, never get a 5xx."""
    c = client
    spec = c.get("/openapi.json").json()
    operations = sorted((path, method) for path, item in spec["paths"].items() for method in item)
    assert len(operations) >= 5
    path, method = data.draw(st.sampled_from(operations))
    op = spec["paths"][path][method]
    url = path
    params = {}
    for param in op.get("parameters", []):
        value = data.draw(st.text(max_size=80) | st.integers(-10**6, 10**6).map(str))
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", quote(value, safe="") or "x")
        elif data.draw(st.booleans()):
            params[param["name"]] = value
    body = data.draw(PUBLISHISH | JSON) if "requestBody" in op else None
    check(c.request(method.upper(), url, params=params, json=body))


def test_rate_limits_count_an_ipv6_64_as_one_client() -> None:
    from mesh_directory.limits import client_key

    assert client_key({"client": ("2001:db8:1:2:aaaa::1", 1)}) == client_key({"client": ("2001:db8:1:2:ffff::9", 2)})
    assert client_key({"client": ("2001:db8:1:3::1", 1)}) != client_key({"client": ("2001:db8:1:2::1", 1)})
    assert client_key({"client": ("192.0.2.7", 1)}) == "192.0.2.7"
    assert client_key({"client": ("::ffff:192.0.2.7", 1)}) == "192.0.2.7"
    assert client_key({}) == "unknown"
