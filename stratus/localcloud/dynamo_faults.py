"""DynamoDB's faults that moto never produces, injected into the functions' DynamoDB calls.

A botocore `before-send` handler on the functions' DynamoDB client (`attach`: the one client
`stratus_core.adapters.aws` keeps per process), registered first, ahead of moto's own stubber. Each
fault reaches the functions as a real one would: as an HTTP answer that botocore's standard retry
mode then retries, or not, by its own rules. Nothing fires until `armed` (the local cloud arms it
once its tables exist and its admin key is written).

- **Throttling** (any call): `ProvisionedThroughputExceededException` or `ThrottlingException`,
  nothing done. "OK to retry? Yes" (DynamoDB Developer Guide, "Error handling"): botocore retries
  them; what is still throttled after its attempts reaches the code.
- **Transaction conflict** (TransactWriteItems): `TransactionCanceledException` whose reasons name
  `TransactionConflict` for one item ("Transaction is ongoing for the item"), nothing written.
  "If that request fails, AWS SDKs do not retry the request": our transaction helper does.
- **A write that landed, answered 500** (PutItem, UpdateItem, DeleteItem, TransactWriteItems,
  BatchWriteItem): the write is applied, then `InternalServerError` comes back. "When you receive a
  status code 500 on a write operation, the operation may have succeeded or failed." botocore
  retries it. A retried TransactWriteItems carries the same `ClientRequestToken` (botocore fills it
  in once per call), and DynamoDB then answers success without writing again, for 10 minutes
  ("Transactions": idempotency); that is emulated here, since moto ignores the token. A retried
  single-item write is applied again: a conditional one then fails its condition, which is what
  the code must be ready for.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
PREFIX = "com.amazonaws.dynamodb.v20120810#"
UNROUTABLE = "http://fault-injected.invalid/"
TOKEN_WINDOW_SECONDS = 600.0  # "A client token is valid for 10 minutes after the request that uses it finishes"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self._body


def _answer(url: str, status: int, body: dict[str, Any]) -> AWSResponse:
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/x-amz-json-1.0"
    headers["x-amzn-RequestId"] = "fault-injected"
    return AWSResponse(url, status, headers, _Raw(json.dumps(body).encode()))


def _error(url: str, status: int, code: str, message: str, **extra: Any) -> AWSResponse:
    kind = "com.amazon.coral.availability#ThrottlingException" if code == "ThrottlingException" else PREFIX + code
    return _answer(url, status, {"__type": kind, "message": message, "Message": message, **extra})


class DynamoFaults:
    """`fires(name)` says whether the fault `ddb_throttle`, `ddb_conflict` or `ddb_landed_error`
    fires now (the caller's seeded draws); `pick(options)` chooses one of several equivalent forms."""

    def __init__(
        self,
        fires: Callable[[str], bool],
        pick: Callable[[list[str]], str],
        target: Callable[[str, dict[str, Any]], bool] = lambda operation, body: True,
    ) -> None:
        self._fires = fires
        self._pick = pick
        self._target = target  # (operation, request body) -> may this call be faulted (tests aim with it)
        self._lock = threading.Lock()
        self._landed: dict[str, tuple[str, float]] = {}  # client token -> (request digest, when)
        self.armed = False

    def attach(self, client: Any) -> None:
        """Inject into `client`'s calls (ahead of any other before-send handler: moto's stubber)."""
        client.meta.events.register_first("before-send.dynamodb", self, unique_id="stratus-dynamo-faults")

    def __call__(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        answer = self._answer(request, kwargs)
        if answer is not None:
            # botocore calls every before-send handler and keeps the first answer: moto's in-process
            # stubber, after this one, would still apply the request. Aimed nowhere, it does not.
            request.url = UNROUTABLE
        return answer

    def _answer(self, request: Any, kwargs: dict[str, Any]) -> AWSResponse | None:
        if not self.armed:
            return None
        operation = _header(request, "X-Amz-Target").rpartition(".")[2]
        body = json.loads(request.body or b"{}")
        token = body.pop("ClientRequestToken", None) if operation == "TransactWriteItems" else None
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if token is not None:
            replayed = self._replay(token, digest, request.url)
            if replayed is not None:
                return replayed
        if not self._target(operation, body):
            return None
        if self._fires("ddb_throttle"):
            code = self._pick(["ProvisionedThroughputExceededException", "ThrottlingException"])
            return _error(request.url, 400, code, "The level of configured provisioned throughput was exceeded")
        if operation == "TransactWriteItems" and self._fires("ddb_conflict"):
            items = len(body.get("TransactItems", []))
            busy = self._pick([str(i) for i in range(items)])
            reasons = [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                if str(i) == busy
                else {"Code": "None"}
                for i in range(items)
            ]
            listed = ", ".join(reason["Code"] for reason in reasons)
            message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{listed}]"
            return _error(request.url, 400, "TransactionCanceledException", message, CancellationReasons=reasons)
        if operation in WRITES and self._fires("ddb_landed_error"):
            landed = self._forward(request, kwargs)
            if landed.status_code != 200:
                return landed  # it did not land after all (a failed condition): the true answer
            if token is not None:
                with self._lock:
                    self._landed[token] = (digest, time.monotonic())
            return _error(request.url, 500, "InternalServerError", "Internal server error")
        return None

    def _replay(self, token: str, digest: str, url: str) -> AWSResponse | None:
        """A TransactWriteItems repeated with the token of one that landed: DynamoDB's idempotency."""
        with self._lock:
            seen = self._landed.get(token)
            if seen is None or time.monotonic() - seen[1] > TOKEN_WINDOW_SECONDS:
                return None
        if seen[0] != digest:
            return _error(url, 400, "IdempotentParameterMismatchException", "Different parameters, same token")
        return _answer(url, 200, {})

    @staticmethod
    def _forward(request: Any, kwargs: dict[str, Any]) -> AWSResponse:
        """Send the request the way it would have gone: to moto's in-process stubber when a
        `mock_aws` is active, else over HTTP (the local cloud's moto server)."""
        from moto.core.models import botocore_stubber

        response = botocore_stubber(event_name=kwargs.get("event_name", ""), request=request)
        if response is not None:
            return response  # type: ignore[no-any-return,unused-ignore]
        from botocore.httpsession import URLLib3Session

        sent = URLLib3Session().send(request)
        sent.content  # noqa: B018 - read it now: the session is not kept
        return sent


def _header(request: Any, name: str) -> str:
    value = request.headers.get(name, b"")
    return value.decode() if isinstance(value, bytes) else str(value)
