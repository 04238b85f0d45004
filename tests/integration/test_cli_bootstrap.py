"""`stratus admin bootstrap` makes the first admin key with direct DynamoDB access."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from authorizer.app import lambda_handler as authorizer_handler
from stratus.cli import main
from stratus_core.keys import Principal
from stratus_core.services import Services
from tests.helpers import ApiResponse, FakeContext


def test_bootstrap_prints_a_working_admin_key_once(
    services: Services,
    cloud: dict[str, str],
    call_api: Callable[..., ApiResponse],
    load_event: Callable[[str], dict[str, Any]],
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "admin",
            "bootstrap",
            "--tenants-table",
            cloud["TENANTS_TABLE"],
            "--api-keys-table",
            cloud["API_KEYS_TABLE"],
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["tenant_id"] == "operators"
    assert printed["tenant_created"] is True
    assert printed["scopes"] == ["admin", "usage"]

    # The printed key passes the authorizer and may then administer tenants.
    event = load_event("authorizer_request")
    event["headers"]["authorization"] = f"Bearer {printed['api_key']}"
    decision = authorizer_handler(event, FakeContext())
    assert decision["isAuthorized"] is True
    admin = Principal.from_context(decision["context"])
    assert call_api("POST", "/admin/tenants", {"tenant_id": "acme", "name": "Acme"}, principal=admin).status == 201

    # Running it again keeps the tenant and issues another key.
    again = runner.invoke(main, ["admin", "bootstrap", "--json"], env=dict(cloud))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["tenant_created"] is False
    assert len(services.keys.list("operators")) == 2


def test_bootstrap_without_table_names_is_a_usage_error(cloud: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["admin", "bootstrap"], env={"TENANTS_TABLE": "", "API_KEYS_TABLE": ""})
    assert result.exit_code == 2
    assert "--stack-name" in result.output
