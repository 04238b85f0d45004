"""What structured output costs on vLLM, per structured-output backend, in one run: the choice of
`STRUCTURED_OUTPUTS` (stratus/localcloud/endpoint.py, the template's SM_VLLM_STRUCTURED_OUTPUTS_CONFIG).

For each backend (llguidance as `guidance`, `xgrammar`), vLLM's CPU build serves the artifact in its own
process (the local cloud's `ModelProcess`, one server at a time), and through `/invocations`:

- first request with each schema, never seen before: the schema's compile and 16 tokens, against the
  same request without a schema (a tenant's new schema must not hold the instance for a minute: the
  `long string` schema took 52 s to compile in outlines-core and 0.75 s in xgrammar in our own engine,
  bench/RESULTS.md 2026-12-01);
- per token, warm: 8 requests of 48 tokens at once with the schema (each seeded; a schema seen before),
  against the same 8 unconstrained, completion tokens per second.

    .venv/bin/python bench/grammar_overhead.py [--artifact .stratus/models/smollm2-bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "functions")]

SCHEMAS: dict[str, dict[str, Any]] = {
    "order": {
        "type": "object",
        "properties": {
            "city": {"enum": ["Paris", "Rome", "Oslo", "Lisbon"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 99},
            "express": {"type": "boolean"},
            "note": {"type": "string", "maxLength": 40},
        },
        "required": ["city", "count", "express", "note"],
        "additionalProperties": False,
    },
    "long string (minLength 2000)": {
        "type": "object",
        "properties": {"story": {"type": "string", "minLength": 2000}},
        "required": ["story"],
        "additionalProperties": False,
    },
    "deep nesting (hostile)": {
        "type": "object",
        "properties": {
            f"k{i}": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[a-z]{3,9}(-[a-z]{3,9}){0,5}$"},
                "minItems": 3,
                "maxItems": 50,
            }
            for i in range(12)
        },
        "required": [f"k{i}" for i in range(12)],
        "additionalProperties": False,
    },
}


def request(i: int, schema: dict[str, Any] | None, max_tokens: int) -> dict[str, Any]:
    params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.8, "seed": i}
    if schema is not None:
        params["response_format"] = {"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}}
    return {
        "job_id": f"job_{i}",
        "tenant_id": "bench",
        "kind": "chat",
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Answer in JSON."}],
        "params": params,
    }


def post(url: str, requests: list[dict[str, Any]]) -> tuple[float, int]:
    body = json.dumps({"version": 2, "pack_id": "bench", "model": "smollm2-135m-instruct", "requests": requests})
    started = time.perf_counter()
    req = urllib.request.Request(f"{url}/invocations", data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as answer:
        results = json.loads(answer.read())["results"]
    errors = [r["error"] for r in results if r.get("error")]
    if errors:
        raise RuntimeError(errors)
    return time.perf_counter() - started, sum(r["usage"]["completion_tokens"] for r in results)


def bench_backend(backend: str, artifact: Path) -> dict[str, Any]:
    from stratus.localcloud.endpoint import ModelProcess

    class Configured(ModelProcess):
        def command(self, port: int) -> tuple[list[str], dict[str, str]]:
            argv, env = super().command(port)
            env["SM_VLLM_STRUCTURED_OUTPUTS_CONFIG"] = json.dumps({"backend": backend, "disable_any_whitespace": True})
            return argv, env

    server = Configured(artifact, 2, "vllm")
    server.start()
    try:
        post(server.url, [request(0, None, 4)])  # warm-up
        result: dict[str, Any] = {"backend": backend, "schemas": {}}
        for name, schema in SCHEMAS.items():
            plain, _ = post(server.url, [request(1, None, 16)])
            first, _ = post(server.url, [request(1, schema, 16)])
            with ThreadPoolExecutor(1) as pool:  # one pack of 8: they decode together
                free_s, free_tokens = pool.submit(post, server.url, [request(i, None, 48) for i in range(8)]).result()
                held_s, held_tokens = pool.submit(post, server.url, [request(i, schema, 48) for i in range(8)]).result()
            row = {
                "first_request_s": round(first, 3),
                "unconstrained_s": round(plain, 3),
                "warm_tok_per_s": round(held_tokens / held_s, 1),
                "unconstrained_tok_per_s": round(free_tokens / free_s, 1),
            }
            row["per_token_cost"] = round(row["unconstrained_tok_per_s"] / row["warm_tok_per_s"], 2)
            result["schemas"][name] = row
            print(
                f"{backend:>9} {name:>30}: first {first:6.2f} s (plain {plain:.2f} s),"
                f" per token {row['per_token_cost']}x",
                flush=True,
            )
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=REPO / ".stratus" / "models" / "smollm2-bf16")
    parser.add_argument("--backends", nargs="*", default=["guidance", "xgrammar"])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "grammar_overhead.json")
    args = parser.parse_args()
    results = [bench_backend(backend, args.artifact.resolve()) for backend in args.backends]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
