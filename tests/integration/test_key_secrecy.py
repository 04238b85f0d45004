"""API keys exist in one response only: never in a stored item, never in a log line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from authorizer.app import lambda_handler as authorizer_handler
from stratus_core.keys import hash_key
from tests.helpers import ApiResponse, FakeContext


def dump_every_table(environment: dict[str, str]) -> str:
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    for variable in ("TENANTS_TABLE", "API_KEYS_TABLE", "USAGE_TABLE"):
        items.extend(client.scan(TableName=environment[variable])["Items"])
    return json.dumps(items)


def test_no_plaintext_key_in_any_table_or_log(
    cloud: dict[str, str],
    call_api: Callable[..., ApiResponse],
    load_event: Callable[[str], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    service_logs: pytest.LogCaptureFixture,
) -> None:
    # GIVEN keys issued, rotated, used (allowed and denied) and revoked through the real handlers
    call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"})
    issued = [call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["inference", "usage"]}).body for _ in range(3)]
    issued.append(call_api("POST", f"/admin/keys/{issued[0]['key_id']}/rotate").body)
    call_api("DELETE", f"/admin/keys/{issued[1]['key_id']}")
    secrets = [key["api_key"] for key in issued]
    for secret in [*secrets, secrets[2][:-1] + "x"]:
        event = load_event("authorizer_request")
        event["headers"]["authorization"] = f"Bearer {secret}"
        event["identitySource"] = [f"Bearer {secret}"]
        authorizer_handler(event, FakeContext())

    # THEN no table holds any key, only its hash
    dump = dump_every_table(cloud)
    for secret in secrets:
        assert secret not in dump
        assert secret[9:] not in dump  # not even the part after the display prefix
    assert all(hash_key(secret) in dump for secret in secrets)

    # AND no log line (stdout JSON logs or the logging module) contains any key
    captured = capsys.readouterr()
    logs = captured.out + captured.err + service_logs.text
    assert "denied" in logs and "allowed" in logs  # the authorizer did log its decisions
    for secret in secrets:
        assert secret not in logs
        assert secret[9:] not in logs
