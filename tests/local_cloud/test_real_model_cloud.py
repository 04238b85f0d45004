"""The local cloud with the real SmolLM2 artifact (`make model`), under the `slow` marker: `make test-slow`.
The official openai client asks a question and runs a small batch; the answer is right, and usage
and the invoice equal the tokens the responses reported."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("torch")

import openai

from stratus.demo import WEATHER_TOOL as WEATHER
from tests.local_cloud.conftest import MODEL, Cloud, launch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    artifact = Path(os.environ.get("STRATUS_MODEL_DIR", ".stratus/models/smollm2-bf16"))
    if not (artifact / "manifest.json").exists():
        pytest.fail(f"no artifact at {artifact}: run `make model` first")
    with launch(artifact, tmp_path_factory, engine="vllm", extra=["--parameter", "WarmWindowMinutes=0"]) as running:
        yield running


def test_the_real_model_answers_and_every_token_is_billed(cloud: Cloud) -> None:
    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "acme", "name": "Acme"})
    key = cloud.call("POST", "/admin/tenants/acme/keys", admin, {"scopes": ["inference", "batch", "usage"]})["api_key"]
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=0, timeout=120)

    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
        extra_headers={"Prefer": "wait=25"},
    )
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    reported = [completion.usage.total_tokens]

    countries = ["Italy", "Spain", "Germany", "Japan"]
    lines = "".join(
        json.dumps(
            {
                "custom_id": country,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": f"What is the capital of {country}?"}],
                    "max_tokens": 16,
                    "temperature": 0,
                },
            }
        )
        + "\n"
        for country in countries
    )
    uploaded = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 300
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(1)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id is not None
    outputs = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(item["custom_id"] for item in outputs) == sorted(countries)
    reported += [item["response"]["body"]["usage"]["total_tokens"] for item in outputs]

    assert cloud.call("GET", "/v1/usage", key)["totals"]["total_tokens"] == sum(reported)
    invoices = cloud.call("GET", f"/admin/invoices/{datetime.now(UTC):%Y-%m}", admin)["data"]
    assert {i["tenant_id"]: i["total_tokens"] for i in invoices}["acme"] == sum(reported)


CITY = {
    "type": "object",
    "properties": {"capital": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40}},
    "required": ["capital", "country"],
    "additionalProperties": False,
}


def test_generation_options_with_the_real_model_and_the_official_client(cloud: Cloud) -> None:
    import jsonschema

    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "globex", "name": "Globex"})
    key = cloud.call("POST", "/admin/tenants/globex/keys", admin, {"scopes": ["inference", "usage"]})["api_key"]
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=3, timeout=120)
    question = [{"role": "user", "content": "What is the capital of France?"}]

    two = client.chat.completions.create(
        model=MODEL,
        messages=question,
        max_tokens=16,
        temperature=1.0,
        n=2,
        seed=5,
        logprobs=True,
        top_logprobs=3,  # type: ignore[arg-type]
    )
    again = client.chat.completions.create(
        model=MODEL,
        messages=question,
        max_tokens=16,
        temperature=1.0,
        n=2,
        seed=5,  # type: ignore[arg-type]
    )
    structured = client.chat.completions.create(
        model=MODEL,
        messages=question,  # type: ignore[arg-type]
        max_tokens=128,  # room for both strings at their maxLength: a bounded document always finishes
        temperature=1.0,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}},
    )
    called = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        max_tokens=128,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    assert [c.message.content for c in two.choices] == [c.message.content for c in again.choices]  # seeded
    assert two.usage is not None and two.usage.completion_tokens == sum(
        len(c.logprobs.content or []) for c in two.choices if c.logprobs
    )
    for choice in two.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        for entry in choice.logprobs.content:
            assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
            ranked = [top.logprob for top in entry.top_logprobs]
            assert ranked == sorted(ranked, reverse=True)
    assert structured.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(structured.choices[0].message.content or ""), CITY)
    (call,) = called.choices[0].message.tool_calls or []
    assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr,index]

    replies = [two, again, structured, called]
    reported = sum(reply.usage.total_tokens for reply in replies if reply.usage)
    assert cloud.call("GET", "/v1/usage", key)["totals"]["total_tokens"] == reported
