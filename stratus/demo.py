"""`stratus demo` / `make demo`: two tenants, a chat completion, a streamed answer, a structured
(JSON-schema) answer, a tool call, a batch, a refusal, a cross-tenant read, usage and the month's
invoice — through the official `openai` client and the real handlers, on the local cloud with the real
model. Exits 0 when every step behaved as a user would expect."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from stratus.admin_client import AdminApi
from stratus.localcloud.cloud import LocalCloud, LocalCloudConfig

MODEL = "smollm2-135m-instruct"
COUNTRY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "capital": {"type": "string", "maxLength": 40},
        "population": {"type": "integer", "minimum": 0, "maximum": 2_000_000_000},
    },
    "required": ["capital", "population"],
    "additionalProperties": False,
}
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 40},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
QUESTIONS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "What is 2 + 2?",
    "What do bees make?",
    "Which planet is closest to the sun?",
    "What is the opposite of hot?",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "What is frozen water called?",
    "Name a fruit that is yellow.",
]


def call(cloud: LocalCloud, method: str, path: str, key: str, body: Any = None) -> Any:
    return AdminApi(cloud.url, key).call(method, path, body)


def step(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


DEMO_STATE_DIR = Path(".stratus/demo-state")


def run_demo(model_dir: Path, port: int, batch_size: int) -> None:
    import openai

    started = time.monotonic()
    click.echo("starting the local cloud (moto, the template's resources, gateway, pollers, async endpoint) …")
    cloud = LocalCloud(
        LocalCloudConfig(
            model_dir=model_dir,
            port=port,
            idle_seconds=30,
            sweep_seconds=10,
            function_log_level="WARNING",
            state_dir=DEMO_STATE_DIR,  # kept at the end: `make console` serves it
            fresh=True,  # the demo creates its tenants anew on every run
        )
    ).start()
    try:
        step("two tenants, with keys and limits (admin API)")
        admin = cloud.admin_key
        call(cloud, "POST", "/admin/tenants", admin, {"tenant_id": "acme", "name": "Acme Corp"})
        call(
            cloud,
            "POST",
            "/admin/tenants",
            admin,
            {"tenant_id": "globex", "name": "Globex", "limits": {"requests_per_minute": 2}},
        )
        scopes = {"scopes": ["inference", "batch", "usage"]}
        acme_key = call(cloud, "POST", "/admin/tenants/acme/keys", admin, scopes)["api_key"]
        globex_key = call(cloud, "POST", "/admin/tenants/globex/keys", admin, scopes)["api_key"]
        click.echo("acme: default limits; globex: 2 requests per minute. Keys issued (shown once, stored hashed).")
        # the unmodified client: through a cold start it gets retryable 503s and retries on its own
        acme = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=acme_key, max_retries=10, timeout=120)
        globex = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=globex_key, max_retries=0, timeout=120)

        step("chat completion (the endpoint starts at zero instances: this includes the cold start)")
        t0 = time.monotonic()
        completion = acme.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=32,
            temperature=0,
        )
        click.echo(f"Q: What is the capital of France?\nA: {completion.choices[0].message.content}")
        usage = completion.usage.model_dump(exclude_none=True) if completion.usage else {}
        click.echo(f"usage {usage}  ({time.monotonic() - t0:.1f} s)")

        step("a streamed answer (server-sent events, OpenAI's chunks; the last one carries the usage)")
        question = "Name three colours of the rainbow."
        stream = acme.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            max_tokens=32,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, streamed_usage = [], None
        for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            streamed_usage = chunk.usage or streamed_usage
        click.echo(f"Q: {question}\nA: {''.join(pieces)}")
        told = streamed_usage.model_dump(exclude_none=True) if streamed_usage else {}
        click.echo(f"{len(pieces)} content chunk(s); usage {told}")

        step("structured output: a JSON schema, enforced while decoding (valid at any temperature)")
        answer = acme.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Give the capital and the population of France."}],
            max_tokens=128,  # room for the whole document: the schema bounds it (40 characters, 10 digits)
            temperature=1.0,
            seed=11,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "country", "schema": COUNTRY, "strict": True},
            },
        )
        text = answer.choices[0].message.content or ""
        if answer.choices[0].finish_reason != "stop":
            raise click.ClickException(f"the structured answer did not finish: {text!r}")
        parsed = json.loads(text)
        if set(parsed) != set(COUNTRY["required"]) or not isinstance(parsed["population"], int):
            raise click.ClickException(f"the structured answer does not follow its schema: {text!r}")
        click.echo(f"response_format json_schema -> {text}")

        step("a tool call (tool_choice names the function: its arguments follow its parameters schema)")
        answer = acme.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            max_tokens=128,
            temperature=0,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        calls = answer.choices[0].message.tool_calls or []
        if answer.choices[0].finish_reason != "tool_calls" or len(calls) != 1:
            raise click.ClickException(f"no tool call: {answer.choices[0]}")
        function = calls[0].function  # type: ignore[union-attr]
        click.echo(f"finish_reason tool_calls -> {function.name}({function.arguments})")

        step(f"a batch of {batch_size} requests: files -> batches -> output file")
        lines = "".join(
            json.dumps(
                {
                    "custom_id": f"q{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": MODEL,
                        "max_tokens": 24,
                        "temperature": 0,
                        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                    },
                }
            )
            + "\n"
            for i in range(batch_size)
        )
        uploaded = acme.files.create(file=("questions.jsonl", lines.encode()), purpose="batch")
        batch = acme.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(1)
            batch = acme.batches.retrieve(batch.id)
        counts = batch.request_counts
        click.echo(
            f"batch {batch.id}: {batch.status}, {counts.completed if counts else 0}/{counts.total if counts else 0}"
            " completed"
        )
        if batch.status != "completed" or batch.output_file_id is None:
            raise click.ClickException(f"the batch ended {batch.status}")
        for line in acme.files.content(batch.output_file_id).text.splitlines()[:5]:
            item = json.loads(line)
            click.echo(f"  {item['custom_id']}: {item['response']['body']['choices'][0]['message']['content']!r}")

        step("a request over a tenant's limit: 429 with Retry-After and OpenAI's rate-limit headers")
        fast = globex.with_options(default_headers={"Prefer": "respond-async"})
        refused = None
        for i in range(5):  # 2 a minute: refused by the third, or the fifth if a minute ends meanwhile
            try:
                fast.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=8
                )
            except openai.RateLimitError as error:
                refused = error
                break
        if refused is None:
            raise click.ClickException("globex was never refused")
        headers = refused.response.headers
        click.echo(
            f"globex request refused: {refused.status_code} {refused.code} ({headers.get('x-stratus-limit')}), "
            f"Retry-After {headers.get('retry-after')} s, x-ratelimit-remaining-requests "
            f"{headers.get('x-ratelimit-remaining-requests')} of {headers.get('x-ratelimit-limit-requests')}"
        )

        step("a cross-tenant read: 404")
        try:
            globex.batches.retrieve(batch.id)
            raise click.ClickException("globex could read acme's batch")
        except openai.NotFoundError as error:
            click.echo(f"globex reading acme's batch: {error.status_code} {error.message}")

        step("usage and the month's invoice")
        wait_until_settled(cloud, admin)
        for tenant, key in (("acme", acme_key), ("globex", globex_key)):
            totals = call(cloud, "GET", "/v1/usage", key)["totals"]
            click.echo(
                f"{tenant}: {totals['requests']} requests, {totals['total_tokens']} tokens, cost ${totals['cost']}"
            )
        month = datetime.now(UTC).strftime("%Y-%m")
        invoices = call(cloud, "GET", f"/admin/invoices/{month}", admin)
        for invoice in invoices["data"]:
            click.echo(
                f"invoice {invoice['invoice_id']}: {invoice['total_tokens']} tokens, "
                f"subtotal ${invoice['subtotal']}, due ${invoice['amount_due']}"
            )
        if cloud.endpoint and cloud.endpoint.cold_starts:
            click.echo(f"\nendpoint cold start(s): {', '.join(f'{s:.1f} s' for s in cloud.endpoint.cold_starts)}")
        step("the web console")
        click.echo(
            "`make console` serves what this demo leaves (its tenants, usage, invoices, batch and the\n"
            f"endpoint's history) until Ctrl-C: open {cloud.url}/console/ and sign in with\n"
            f"  the operator key: {admin}\n  or acme's key:     {acme_key}"
        )
        click.secho(f"\ndemo finished in {time.monotonic() - started:.0f} s", bold=True)
    finally:
        cloud.stop()


def wait_until_settled(cloud: LocalCloud, admin: str, timeout: float = 120) -> None:
    """Requests still in flight (globex's last one) settle before the invoice is read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tenants = AdminApi(cloud.url, admin).every("/admin/tenants")
        if all(t["in_flight"] == 0 for t in tenants):
            return
        time.sleep(1)
