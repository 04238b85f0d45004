"""`stratus local up` run as a user runs it: a separate process, stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratus.admin_client import AdminApi

MODEL = "smollm2-135m-instruct"


@dataclass
class Cloud:
    url: str
    admin_key: str
    log: Path
    process: subprocess.Popen[bytes]
    command: list[str]
    env: dict[str, str]

    def call(self, method: str, path: str, key: str, body: Any = None) -> Any:
        return AdminApi(self.url, key).call(method, path, body)

    def call_raw(self, method: str, path: str, key: str) -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return bytes(answer.read())

    def start(self) -> None:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/openapi.json", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise AssertionError("the local cloud did not come up in 120 s")

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # every thread's stack into the log
            time.sleep(2)
            self.process.kill()
            raise AssertionError("the local cloud did not stop in 60 s:\n" + self.log.read_text()[-8000:]) from None


def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model built into an fp32 artifact, as `stratus model build` writes one (CI-fast)."""
    from gpu_jobs.build import BuildRequest, build
    from gpu_jobs.tiny import build_tiny_model

    source = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    artifact = tmp_path_factory.mktemp("artifact")
    build(BuildRequest(source=source, output=artifact, method="fp32", model_name=MODEL))
    return artifact


def post(
    url: str, key: str, body: dict[str, Any], prefer: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST JSON with a tenant's key and a `Prefer` header; the status and the JSON answer (errors too)."""
    status, answer, _ = send(url, key, body, prefer, headers)
    return status, answer


def send(
    url: str, key: str, body: dict[str, Any], prefer: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """`post`, with the answer's headers (lower-case names)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Prefer": prefer,
            **(headers or {}),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read()), {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), {k.lower(): v for k, v in error.headers.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def launch(
    artifact: Path,
    tmp_path_factory: pytest.TempPathFactory,
    engine: str = "echo",
    extra: list[str] | None = None,
    environment: dict[str, str] | None = None,
) -> Iterator[Cloud]:
    """`stratus local up` with `engine` as the endpoint's model server: vLLM's CPU build where
    generation is under test, the echo engine (no model, instant) where only the serverless path is."""
    port = free_port()
    admin_key = "sk-" + secrets.token_urlsafe(32)
    log = tmp_path_factory.mktemp("logs") / "local-up.log"
    state = tmp_path_factory.mktemp("state") / "local-state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("POWERTOOLS_")}
    env.update({"STRATUS_ENGINE": engine, "STRATUS_ADMIN_KEY": admin_key, "HF_HUB_OFFLINE": "1", **(environment or {})})
    command = [sys.executable, "-m", "stratus", "local", "up", "--port", str(port), "--model-dir", str(artifact)]
    command += ["--idle-seconds", "2", "--state-dir", str(state), *(extra or [])]
    cloud = Cloud(f"http://127.0.0.1:{port}", admin_key, log, None, command, env)  # type: ignore[arg-type]
    cloud.start()
    try:
        yield cloud
    finally:
        if cloud.process.poll() is None:
            cloud.stop()
