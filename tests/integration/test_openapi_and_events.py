"""The checked-in OpenAPI document matches the routes; every sample event is used by a test."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stratus.openapi import generate
from tests.helpers import ApiResponse

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_openapi_matches_the_code() -> None:
    checked_in = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert generate() == checked_in, "run `make openapi` and commit docs/openapi.json"


def test_served_openapi_is_the_checked_in_document(call_api: object) -> None:
    response: ApiResponse = call_api("GET", "/openapi.json", principal=None)  # type: ignore[operator]
    assert response.status == 200
    assert response.body == json.loads((REPO / "docs" / "openapi.json").read_text(encoding="utf-8"))


def test_every_error_response_in_the_document_uses_the_openai_shape() -> None:
    document = json.loads(generate())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)


def test_every_sample_event_is_used_by_a_test() -> None:
    tests_text = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "tests").rglob("*.py"))
    used = set(re.findall(r"""load_event\(\s*["']([\w-]+)["']""", tests_text))
    events = {path.stem for path in (REPO / "events").glob("*.json")}
    assert events <= used, f"unused sample events: {sorted(events - used)}"
