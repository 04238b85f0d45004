"""Two requests resolved at once in one process each see their own event and route (the local
cloud's gateway runs the API function for concurrent clients in threads)."""

from __future__ import annotations

import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from api.resolver import PerThreadResolver
from tests.helpers import FakeContext

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "api_request.json").read_text())


def resolve_two_at_once(app: APIGatewayHttpResolver) -> list[str]:
    both_inside = threading.Barrier(2, timeout=5)

    @app.get("/who/<name>")
    def who(name: str) -> dict[str, str]:
        both_inside.wait()  # both requests are inside their routes now
        return {"name": name, "path": app.current_event.path}

    def call(name: str) -> str:
        event: dict[str, Any] = copy.deepcopy(EVENT)
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/who/{name}"
        event["requestContext"]["http"]["method"] = "GET"
        event["body"] = None
        answer = json.loads(app.resolve(event, FakeContext())["body"])  # type: ignore[arg-type]
        return f"{answer['name']} saw {answer['path']}"

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(call, ["alice", "bob"]))


def test_concurrent_requests_each_see_their_own_event() -> None:
    assert resolve_two_at_once(PerThreadResolver(enable_validation=True)) == [
        "alice saw /who/alice",
        "bob saw /who/bob",
    ]


def test_powertools_own_resolver_would_mix_them_up() -> None:
    # the reason for PerThreadResolver: the plain resolver keeps one event for the whole process
    seen = resolve_two_at_once(APIGatewayHttpResolver(enable_validation=True))
    assert seen != ["alice saw /who/alice", "bob saw /who/bob"]
