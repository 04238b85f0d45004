"""A create whose write landed but whose answer was an error, retried by its client, makes one object.

The fault comes from the DynamoDB fault layer (`stratus/localcloud/dynamo_faults.py`): the create's
write is applied and answered 500, and botocore's retries of it are throttled until it gives up, so
the API answers an error although the object exists. The official SDK then resends the identical
request with `x-stainless-retry-count: 1` (it sends no `Idempotency-Key`); a client that sends a key
resends that. Either way the retry must answer with the object the first attempt made, and no second
one may exist (`stratus_core/creates.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stratus_core.adapters import aws
from stratus_core.keys import IssuedKey, Principal, Scope, hash_key
from stratus_core.services import Services
from tests.helpers import ApiResponse, principal_of, upload
from tests.integration.conftest import Aimed, on_table

MODEL = "smollm2-135m-instruct"
Api = Callable[..., ApiResponse]
FIRST, RETRY = {"x-stainless-retry-count": "0"}, {"x-stainless-retry-count": "1"}


LANDED_THEN_REFUSED = ["ddb_landed_error"] + ["ddb_throttle"] * (aws.MAX_ATTEMPTS - 1)
"""The create's write lands and is answered 500; botocore's retries of it are throttled until it gives up."""


@pytest.fixture
def landed_then_refused(aim: Callable[..., Aimed]) -> Callable[[str, str], Aimed]:
    return lambda operation, table: aim(LANDED_THEN_REFUSED, on_table(operation, table))


@pytest.fixture
def batcher(make_tenant: Callable[..., IssuedKey]) -> Principal:
    return principal_of(make_tenant("acme", scopes=[Scope.BATCH]))


def one_line_file(call_api: Api, caller: Principal) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body}
    file_id: str = upload(call_api, caller, (json.dumps(line) + "\n").encode()).body["id"]
    return file_id


def create_batch(call_api: Api, caller: Principal, file_id: str, headers: dict[str, str]) -> ApiResponse:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    return call_api("POST", "/v1/batches", body, principal=caller, headers=headers)


def test_a_batch_create_that_landed_but_failed_is_one_batch_after_the_sdks_retry(
    call_api: Api, batcher: Principal, landed_then_refused: Callable[[str, str], Aimed], pipeline: Any
) -> None:
    file_id = one_line_file(call_api, batcher)
    fault = landed_then_refused("PutItem", "BatchesTable")

    first = create_batch(call_api, batcher, file_id, FIRST)
    retry = create_batch(call_api, batcher, file_id, RETRY)

    # the first attempt's batch exists, and its client got an error
    assert fault.fired == aws.MAX_ATTEMPTS and first.status >= 429
    assert retry.status == 200
    listed = call_api("GET", "/v1/batches", principal=batcher).body["data"]
    assert [batch["id"] for batch in listed] == [retry.body["id"]]
    pipeline.run()  # and it runs: the retry queued its start again
    done = call_api("GET", f"/v1/batches/{retry.body['id']}", principal=batcher).body
    assert (done["status"], done["request_counts"]["completed"]) == ("completed", 1)


def test_a_deliberate_second_create_with_the_same_body_is_a_second_batch(call_api: Api, batcher: Principal) -> None:
    file_id = one_line_file(call_api, batcher)

    first = create_batch(call_api, batcher, file_id, FIRST)
    second = create_batch(call_api, batcher, file_id, FIRST)  # a new call, not a retry

    assert first.body["id"] != second.body["id"]


def test_a_batch_created_again_with_its_idempotency_key_is_the_first_and_another_body_is_a_409(
    call_api: Api, batcher: Principal
) -> None:
    file_id, other_file = one_line_file(call_api, batcher), one_line_file(call_api, batcher)
    keyed = {"idempotency-key": "nightly-2026-12-07"}

    first = create_batch(call_api, batcher, file_id, keyed)
    again = create_batch(call_api, batcher, file_id, keyed)
    other = create_batch(call_api, batcher, other_file, keyed)

    assert (first.status, again.status, again.body["id"]) == (200, 200, first.body["id"])
    assert (other.status, other.body["error"]["type"]) == (409, "invalid_request_error")
    assert len(call_api("GET", "/v1/batches", principal=batcher).body["data"]) == 1


def test_a_file_upload_that_landed_but_failed_is_one_file_after_the_sdks_retry(
    call_api: Api, batcher: Principal, landed_then_refused: Callable[[str, str], Aimed]
) -> None:
    fault = landed_then_refused("PutItem", "FilesTable")

    def upload_attempt(retry_count: str) -> ApiResponse:
        return upload(call_api, batcher, b'{"custom_id":"a"}\n', headers={"x-stainless-retry-count": retry_count})

    first, retry = upload_attempt("0"), upload_attempt("1")

    assert fault.fired == aws.MAX_ATTEMPTS and first.status >= 429
    assert retry.status == 200
    listed = call_api("GET", "/v1/files", principal=batcher).body["data"]
    assert [file["id"] for file in listed] == [retry.body["id"]]


def test_a_tenant_create_that_landed_but_failed_is_created_not_a_409_on_the_retry(
    call_api: Api, landed_then_refused: Callable[[str, str], Aimed]
) -> None:
    fault = landed_then_refused("PutItem", "TenantsTable")
    body = {"tenant_id": "initech", "name": "Initech"}

    first = call_api("POST", "/admin/tenants", body, headers=FIRST)
    retry = call_api("POST", "/admin/tenants", body, headers=RETRY)
    not_a_retry = call_api("POST", "/admin/tenants", body, headers=FIRST)

    assert fault.fired == aws.MAX_ATTEMPTS and first.status >= 429
    assert (retry.status, retry.body["tenant_id"], retry.body["name"]) == (201, "initech", "Initech")
    assert not_a_retry.status == 409  # a second, deliberate create of an existing tenant still is one


def test_a_key_create_that_landed_but_failed_is_one_key_whose_secret_is_the_retrys(
    call_api: Api,
    services: Services,
    make_tenant: Callable[..., IssuedKey],
    landed_then_refused: Callable[[str, str], Aimed],
) -> None:
    """The first attempt's secret never reached anyone: the retry issues the same key again, with a
    new secret, and the one nobody received no longer authenticates."""
    make_tenant("acme")
    before = {key.key_id for key in services.keys.list("acme")}
    fault = landed_then_refused("PutItem", "ApiKeysTable")

    first = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["inference"]}, headers=FIRST)
    stored_first = {key.key_id for key in services.keys.list("acme")} - before
    retry = call_api("POST", "/admin/tenants/acme/keys", {"scopes": ["inference"]}, headers=RETRY)

    assert fault.fired == aws.MAX_ATTEMPTS and first.status >= 429
    assert retry.status == 201
    keys = [key for key in services.keys.list("acme") if key.key_id not in before]
    assert [key.key_id for key in keys] == [retry.body["key_id"]] == sorted(stored_first)
    assert services.keys.authenticate(retry.body["api_key"]).key_id == retry.body["key_id"]
    found = services.keys._keys.get_by_id(retry.body["key_id"])  # the one record under that id
    assert found is not None and found[0] == hash_key(retry.body["api_key"])
