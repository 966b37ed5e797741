"""Auth on every admin operation (a role × operation matrix read from the OpenAPI document)
and one error format (RFC 9457 problem details) for every failure."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from service.api.app import create_app
from service.api.deps import ROLE_RANK
from service.runtime import Resources

pytestmark = pytest.mark.integration

API_DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
METHODS = {"get", "post", "patch", "put", "delete"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _concrete(path: str, operation: dict[str, Any]) -> str:
    """Fill path parameters with values of the right type that name nothing stored."""
    kinds = {
        parameter["name"]: parameter["schema"].get("type")
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    return re.sub(
        r"\{(\w+)\}",
        lambda m: "999999" if kinds.get(m.group(1)) == "integer" else "no-such-thing",
        path,
    )


async def test_every_admin_operation_declares_a_role_and_enforces_it(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = _operations(spec)
    assert len(operations) >= 30
    checked: dict[str, int] = {}
    for method, path, operation in operations:
        if operation.get("x-public") is True:
            assert "x-required-role" not in operation, (method, path)
            assert "security" not in operation, (method, path)
            if method == "GET":
                public = await client.get(_concrete(path, operation))
                assert public.status_code not in {401, 403}, (method, path)
            continue
        required = operation.get("x-required-role")
        assert required in ROLE_RANK, f"{method} {path} declares neither a role nor x-public"
        assert "ApiKey" in str(operation.get("security")), f"{method} {path} has no security"
        url = _concrete(path, operation)
        body: dict[str, object] | None = {} if method in {"POST", "PATCH", "PUT"} else None

        anonymous = await client.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        assert anonymous.headers["content-type"] == "application/problem+json"
        forged = await client.request(
            method, url, json=body, headers={"Authorization": "Bearer dwk_not-a-real-key"}
        )
        assert forged.status_code == 401, (method, path)

        for role, key in keys.items():
            response = await client.request(
                method, url, json=body, headers={"Authorization": f"Bearer {key}"}
            )
            allowed = ROLE_RANK[role] >= ROLE_RANK[required]
            if allowed:
                assert response.status_code not in {401, 403}, (role, method, path)
                assert response.status_code < 500, (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.status_code)
        checked[required] = checked.get(required, 0) + 1
    assert set(checked) == {"viewer", "editor", "admin"}


async def test_the_documented_permission_matrix(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    roles = {
        (method, path): operation["x-required-role"]
        for method, path, operation in _operations(spec)
        if not operation.get("x-public")
    }
    assert roles[("GET", "/rules")] == "viewer"
    assert roles[("POST", "/rules/preview")] == "viewer"
    assert roles[("PATCH", "/rules/{rule_id}")] == "editor"
    assert roles[("POST", "/sources/{source_id}/poll")] == "editor"
    assert roles[("POST", "/subscriptions")] == "admin"
    assert roles[("GET", "/keys")] == "admin"
    assert roles[("GET", "/audit")] == "admin"
    assert roles[("POST", "/deliveries/{delivery_id}/retry")] == "admin"


async def test_openapi_documents_problems_and_examples(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, operation in _operations(spec):
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, code)
        if not operation.get("x-public"):
            assert {"401", "403", "500"} <= set(operation["responses"]), (method, path)
    create_rule = spec["paths"]["/rules"]["post"]
    schema_ref = create_rule["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]["examples"]
    patch = spec["paths"]["/rules/{rule_id}"]["patch"]
    assert {"412", "428"} <= set(patch["responses"])


async def test_unknown_path_wrong_method_and_bad_json_are_problems(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    missing = await client.get("/nowhere", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
        "instance": "/nowhere",
    }
    wrong = await client.put("/rules", headers=admin)
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == "application/problem+json"
    assert "GET" in wrong.headers["allow"]
    broken = await client.post(
        "/rules", content=b"{not json", headers={**admin, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["type"] == "json_invalid"
    nested = await client.post(
        "/subscriptions", json={"subscriber_id": 1, "rule_ids": [5]}, headers=admin
    )
    assert nested.status_code == 422
    assert ["body", "rule_ids", 0] in [error["loc"] for error in nested.json()["errors"]]


async def test_unexpected_errors_are_logged_500_problems(
    resources: Resources, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(resources.settings, resources=resources)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with caplog.at_level(logging.ERROR, logger="service.api.errors"):
                response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "internal server error"
    assert "kaboom" not in response.text
    record = next(r for r in caplog.records if r.name == "service.api.errors")
    assert "path=/boom" in record.getMessage()
    assert record.exc_info is not None


async def test_docs_permission_matrix_matches_the_openapi_document(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    documented = {
        (method, path): "none" if operation.get("x-public") else operation["x-required-role"]
        for method, path, operation in _operations(spec)
    }
    text = API_DOC.read_text()
    rows = re.findall(r"^\| `(\w+) (\S+)` \| (\w+) \|", text, flags=re.MULTILINE)
    assert {(method, path): role for method, path, role in rows} == documented
