"""Attacks through the whole HTTP path (API Gateway's authorizer semantics + the authorizer + the API
function) on moto: every route of the OpenAPI document against every kind of bad credential, other
tenants' IDs, identity smuggled in headers, query or body, traversal in file names, hostile bodies.
Each case asserts the exact status and that no response ever carries the other tenant's data; at the
end no key string is in any table, object or log line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from api.app import lambda_handler as api_handler
from authorizer.app import lambda_handler as authorizer_handler
from stratus.localcloud.gateway import GatewayResponse, HttpApiGateway
from stratus_core import keys as keys_module
from stratus_core.keys import IssuedKey, KeyCreate, Scope
from stratus_core.services import Services
from stratus_core.tenants import TenantCreate
from tests.helpers import multipart_file
from tests.reliability.report import Section, write_section

MODEL = "smollm2-135m-instruct"
OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
ROUTES = [(method.upper(), path) for path, ops in OPENAPI["paths"].items() for method in ops]
ALL_SCOPES = [Scope.INFERENCE, Scope.BATCH, Scope.USAGE]
SENT: dict[str, int] = {}  # attack requests per test (for docs/RELIABILITY.md)
CURRENT = {"test": ""}


@dataclass
class World:
    gateway: HttpApiGateway
    keys: dict[str, IssuedKey]
    ids: dict[str, str]  # acme's job, file and batch

    def call(
        self, method: str, path: str, key: str | None, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> GatewayResponse:
        sent = {"content-type": "application/json", "prefer": "respond-async", **(headers or {})}
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        path, _, query = path.partition("?")
        SENT[CURRENT["test"]] = SENT.get(CURRENT["test"], 0) + 1
        return self.gateway.handle(method, path, query, sent, body)

    def as_(self, who: str, method: str, path: str, payload: Any = None, **kw: Any) -> GatewayResponse:
        body = json.dumps(payload).encode() if payload is not None else b""
        return self.call(method, path, self.keys[who].api_key, body, **kw)


def chat(content: str = "hello") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4}


@pytest.fixture
def world(
    services: Services, cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[World]:
    for tenant in ("operators", "acme", "globex"):
        services.tenants.create(TenantCreate(tenant_id=tenant, name=tenant.title()))
    create = services.keys.create
    keys = {
        "admin": create("operators", KeyCreate(scopes=[Scope.ADMIN, Scope.USAGE])),
        "acme": create("acme", KeyCreate(scopes=ALL_SCOPES)),
        "globex": create("globex", KeyCreate(scopes=ALL_SCOPES)),
        "acme_usage_only": create("acme", KeyCreate(scopes=[Scope.USAGE])),
        "acme_revoked": create("acme", KeyCreate(scopes=ALL_SCOPES)),
        "acme_expiring": create(
            "acme", KeyCreate(scopes=ALL_SCOPES, expires_at=datetime.now(UTC) + timedelta(minutes=5))
        ),
    }
    services.keys.revoke(keys["acme_revoked"].key_id)
    gateway = HttpApiGateway(authorizer_handler, api_handler, cache_ttl_seconds=0)
    world = World(gateway, keys, {})
    CURRENT["test"] = "setting up acme's job, file and batch"
    job = world.as_("acme", "POST", "/v1/chat/completions", chat("acme's secret question"))
    assert job.status == 202, job.body
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": chat()}
    body, headers = multipart_file("acme-input.jsonl", (json.dumps(line) + "\n").encode())
    file = world.call("POST", "/v1/files", keys["acme"].api_key, body, headers)
    assert file.status == 200, file.body
    file_id = json.loads(file.body)["id"]
    batch = world.as_(
        "acme",
        "POST",
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert batch.status == 200, batch.body
    world.ids.update(job=json.loads(job.body)["id"], file=file_id, batch=json.loads(batch.body)["id"])
    # the expiring key is past its expiry from here on
    later = datetime.now(UTC) + timedelta(minutes=10)
    monkeypatch.setattr(keys_module, "utcnow", lambda: later)
    CURRENT["test"] = request.node.originalname.removeprefix("test_").replace("_", " ")
    yield world


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before or not SENT:
        return
    SENT.pop("setting up acme's job, file and batch", None)
    write_section(
        Section(
            order=4,
            requests=sum(SENT.values()),
            title="Attacks on every route",
            how=(
                "tests/security/test_attacks.py through API Gateway's authorizer semantics (the local gateway), "
                "the authorizer and the API function on moto; tenants acme and globex, an admin, revoked, "
                "expiring and unscoped keys. Each request's exact status is asserted, and that no response "
                "carries another tenant's data."
            ),
            injected=dict(SENT),
            outcome="every attack refused with the expected status and the OpenAI error shape; no 5xx",
            invariants=[
                "no key / malformed / unknown / revoked / expired key: 401 or 403 on every route",
                "another tenant's job, file and batch IDs: 404, nothing of theirs echoed",
                "admin routes with tenant keys, routes without their scope: 403",
                "identity in headers, query or body ignored or refused (the tenant comes from the key)",
                "file names with traversal stay under files/<tenant>/<id>",
                "oversized, 100k-deep and non-UTF-8 bodies: 413/400, no 500",
                "no key string in any table, object or captured log line",
            ],
        )
    )


def concrete(path: str, world: World) -> str:
    return (
        path.replace("{job_id}", world.ids["job"])
        .replace("{file_id}", world.ids["file"])
        .replace("{batch_id}", world.ids["batch"])
        .replace("{tenant_id}", "acme")
        .replace("{key_id}", world.keys["acme"].key_id)
        .replace("{month}", f"{datetime.now(UTC):%Y-%m}")
    )


def acme_secrets(world: World) -> list[str]:
    return [world.ids["job"], world.ids["file"], world.ids["batch"], "acme's secret question", "acme-input"]


def test_every_route_refuses_a_missing_malformed_revoked_or_expired_key(world: World) -> None:
    """A refused key gets OpenAI's 401 `invalid_api_key` from the API's choke point, and no route's
    code ever runs for it (the resolver that runs routes is never entered). No key at all is API
    Gateway's own 401, answered before any function runs."""
    from api import app as api_module

    def no_route_may_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("route code ran for a refused key")

    bad = [
        "not-a-key",
        "sk-" + "A" * 43,  # well formed, unknown
        world.keys["acme_revoked"].api_key,
        world.keys["acme_expiring"].api_key,
        world.keys["acme"].api_key[:-1] + ("A" if world.keys["acme"].api_key[-1] != "A" else "B"),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_module.app, "resolve", no_route_may_run)
        for method, path in ROUTES:
            missing = world.call(method, concrete(path, world), None, b"{}")
            assert (missing.status, json.loads(missing.body)) == (401, {"message": "Unauthorized"})
            for key in bad:
                answer = world.call(method, concrete(path, world), key, b"{}")
                assert answer.status == 401, (method, path, key[:6], answer.status)
                error = json.loads(answer.body)["error"]
                assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key"), error
                assert all(secret.encode() not in answer.body for secret in acme_secrets(world))
                assert key not in answer.body.decode()


def test_another_tenants_ids_are_404_and_never_echo_its_data(world: World) -> None:
    for method, path in ROUTES:
        if not any(part in path for part in ("{job_id}", "{file_id}", "{batch_id}")):
            continue
        answer = world.as_("globex", method, concrete(path, world))
        assert answer.status == 404, (method, path, answer.status)
        assert json.loads(answer.body)["error"]["type"] == "invalid_request_error"
        assert all(secret.encode() not in answer.body for secret in acme_secrets(world)[3:])
    acme_key_ids = [issued.key_id for name, issued in world.keys.items() if name.startswith("acme")]
    for path in ("/v1/files", "/v1/batches", "/v1/usage", "/v1/jobs", "/v1/keys", "/v1/limits"):
        listing = world.as_("globex", "GET", path)
        assert listing.status == 200
        assert all(secret.encode() not in listing.body for secret in acme_secrets(world) + acme_key_ids)
        assert b'"acme"' not in listing.body


def test_admin_routes_refuse_tenant_keys_whatever_their_scopes(world: World) -> None:
    for method, path in ROUTES:
        if path.startswith("/admin/"):
            for who in ("acme", "globex", "acme_usage_only"):
                answer = world.as_(who, method, concrete(path, world), {})
                assert answer.status == 403, (who, method, path, answer.status)
                assert json.loads(answer.body)["error"]["code"] == "insufficient_scope"


def test_a_key_without_the_routes_scope_is_403(world: World) -> None:
    for method, path in ROUTES:
        if path.startswith("/v1/") and path not in (
            "/v1/usage",
            "/v1/limits",
            "/v1/keys",
            "/v1/models",
            "/v1/models/{model_id}",
        ):
            answer = world.as_("acme_usage_only", method, concrete(path, world), chat())
            assert answer.status == 403, (method, path, answer.status)
    for path in ("/v1/usage", "/v1/limits", "/v1/keys"):
        assert world.as_("acme_usage_only", "GET", path).status == 200


@pytest.mark.parametrize(
    "smuggle",
    [
        {"headers": {"x-tenant-id": "acme", "x-stratus-tenant": "acme", "x-amzn-oidc-identity": "acme"}},
        {"query": "tenant_id=acme&tenant=acme"},
        {"body": {"tenant_id": "acme", "user": "acme"}},
    ],
    ids=["headers", "query", "body"],
)
def test_identity_comes_from_the_key_not_from_headers_query_or_body(world: World, smuggle: dict[str, Any]) -> None:
    query = f"?{smuggle['query']}" if "query" in smuggle else ""
    headers = smuggle.get("headers")
    usage = world.as_("globex", "GET", f"/v1/usage{query}", headers=headers)
    assert usage.status == 200 and json.loads(usage.body)["tenant_id"] == "globex"
    job = world.as_("globex", "GET", f"/v1/jobs/{world.ids['job']}{query}", headers=headers)
    assert job.status == 404
    for path in ("/v1/jobs", "/v1/keys", "/v1/limits"):
        listed = world.as_("globex", "GET", f"{path}{query}", headers=headers)
        assert listed.status == 200 and world.ids["job"].encode() not in listed.body and b'"acme"' not in listed.body
    body = {**chat(), **smuggle.get("body", {})}
    created = world.as_("globex", "POST", f"/v1/chat/completions{query}", body, headers=headers)
    if "body" in smuggle:
        assert created.status == 400  # unknown fields are refused, never used
    else:
        assert created.status == 202
        job_id = json.loads(created.body)["id"]
        assert world.as_("globex", "GET", f"/v1/jobs/{job_id}").status == 200
        assert world.as_("acme", "GET", f"/v1/jobs/{job_id}").status == 404


@pytest.mark.parametrize("filename", ["../../etc/passwd", "..\\\\..\\\\boot.ini", "/abs/path.jsonl", "a/../../b.jsonl"])
def test_traversal_in_a_file_name_never_leaves_the_tenants_prefix(world: World, filename: str) -> None:
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": chat()}
    body, headers = multipart_file(filename, (json.dumps(line) + "\n").encode())
    answer = world.call("POST", "/v1/files", world.keys["globex"].api_key, body, headers)
    assert answer.status in (200, 400), answer.body
    bucket = Services().settings.data_bucket
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert all(".." not in key and not key.startswith("/") for key in keys)
    if answer.status == 200:
        file_id = json.loads(answer.body)["id"]
        assert any(key.startswith(f"files/globex/{file_id}") for key in keys), keys


def test_hostile_bodies_get_clear_errors_not_500s(world: World) -> None:
    key = world.keys["globex"].api_key
    oversized = json.dumps({**chat("x" * (1024 * 1024 + 1))}).encode()
    assert world.call("POST", "/v1/chat/completions", key, oversized).status == 413
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    nested = world.call("POST", "/v1/chat/completions", key, deep)
    assert nested.status == 400 and json.loads(nested.body)["error"]["type"] == "invalid_request_error"
    not_utf8 = b'{"model": "\xff\xfe\xfa", "messages": []}'
    invalid = world.call("POST", "/v1/chat/completions", key, not_utf8)
    assert invalid.status == 400 and json.loads(invalid.body)["error"]["type"] == "invalid_request_error"
    for method, path in ROUTES:
        if method in ("POST", "PATCH"):
            who = world.keys["admin" if path.startswith("/admin/") else "globex"].api_key
            answer = world.call(method, concrete(path, world), who, deep)
            assert answer.status in (400, 404, 413), (method, path, answer.status)


def test_no_key_string_in_tables_objects_or_logs_after_the_attacks(
    world: World, capsys: pytest.CaptureFixture[str], service_logs: pytest.LogCaptureFixture
) -> None:
    test_every_route_refuses_a_missing_malformed_revoked_or_expired_key(world)
    test_another_tenants_ids_are_404_and_never_echo_its_data(world)

    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    dump = json.dumps([dynamodb.scan(TableName=t)["Items"] for t in dynamodb.list_tables()["TableNames"]])
    bucket = Services().settings.data_bucket
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        dump += s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode("utf-8", "replace")
    captured = capsys.readouterr()
    logs = captured.out + captured.err + service_logs.text
    assert "denied" in logs  # the authorizer logged its refusals
    for issued in world.keys.values():
        for haystack in (dump, logs):
            assert issued.api_key not in haystack
            assert issued.api_key[9:] not in haystack
