"""API Gateway (HTTP API) in process: the same v2 events, the same authorizer caching, the same
handlers. The local cloud's HTTP server and the tests both put requests through this."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass
class LocalContext:
    """What a Lambda handler may read from its context object."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = ""
    invoked_function_arn: str = ""

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _json(status: int, payload: Mapping[str, Any]) -> GatewayResponse:
    return GatewayResponse(status, {"content-type": "application/json"}, json.dumps(payload).encode())


class HttpApiGateway:
    """Routes `/v1/*` and `/admin/*` through the authorizer (answers cached per Authorization header
    for `cache_ttl_seconds`, as API Gateway does) to the API function; `/openapi.json` is public, and
    so are `/console` and `/console/*`, which go to the console function when there is one."""

    def __init__(
        self,
        authorizer: Handler,
        api: Handler,
        cache_ttl_seconds: float = 30,
        clock: Callable[[], float] = time.monotonic,
        console: Handler | None = None,
    ) -> None:
        self._authorizer = authorizer
        self._api = api
        self._console = console
        self._ttl = cache_ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> GatewayResponse:
        headers = {name.lower(): value for name, value in headers.items()}
        handler = self._api
        if (
            self._console is not None
            and method in ("GET", "HEAD")
            and (path == "/console" or path.startswith("/console/"))
        ):
            handler, route, context = self._console, "GET /console/{proxy+}", None
        elif method == "GET" and path == "/openapi.json":
            route, context = "GET /openapi.json", None
        elif path.startswith("/v1/") or path.startswith("/admin/"):
            route = "ANY /v1/{proxy+}" if path.startswith("/v1/") else "ANY /admin/{proxy+}"
            authorization = headers.get("authorization")
            if not authorization:
                return _json(401, {"message": "Unauthorized"})
            decision = self._authorize(authorization, method, path, route, headers)
            if not decision.get("isAuthorized"):
                return _json(403, {"message": "Forbidden"})
            context = decision.get("context") or {}
        else:
            return _json(404, {"message": "Not Found"})
        event = self._event(method, path, query, headers, body, route, context)
        result = handler(event, LocalContext("api" if handler is self._api else "console"))
        return self._response(result)

    def _authorize(
        self, authorization: str, method: str, path: str, route: str, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(authorization)
            if cached and now - cached[0] < self._ttl:
                return cached[1]
        event = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:local:000000000000:local/$default/{method}{path}",
            "identitySource": [authorization],
            "routeKey": route,
            "rawPath": path,
            "rawQueryString": "",
            "headers": dict(headers),
            "requestContext": self._request_context(method, path, route, headers),
        }
        decision = self._authorizer(event, LocalContext("authorizer"))
        if self._ttl > 0:
            with self._lock:
                self._cache[authorization] = (now, decision)
        return decision

    @staticmethod
    def _request_context(method: str, path: str, route: str, headers: Mapping[str, str]) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }

    def _event(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        route: str,
        context: dict[str, Any] | None,
    ) -> dict[str, Any]:
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        content_type = headers.get("content-type", "")
        text_body = content_type.startswith(_TEXT_TYPES) or not content_type
        try:
            decoded = body.decode("utf-8") if text_body else None
        except UnicodeDecodeError:
            decoded = None
        request_context = self._request_context(method, path, route, headers)
        if context is not None:
            request_context["authorizer"] = {"lambda": context}
        return {
            "version": "2.0",
            "routeKey": route,
            "rawPath": path,
            "rawQueryString": query,
            "headers": dict(headers),
            "queryStringParameters": params or None,
            "requestContext": request_context,
            "pathParameters": {"proxy": path.split("/", 2)[-1]} if "{proxy+}" in route else None,
            "body": (decoded if decoded is not None else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": bool(body) and decoded is None,
        }

    @staticmethod
    def _response(result: dict[str, Any]) -> GatewayResponse:
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        headers = {name.lower(): str(value) for name, value in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(str(v) for v in values)
        return GatewayResponse(int(result.get("statusCode", 200)), headers, body)
