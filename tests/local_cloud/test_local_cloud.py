"""`stratus local up` end to end with a tiny random model (CI-fast), run as a user runs it: a separate
process. The official openai client does a chat completion and a batch; usage and the invoice equal
the tokens the responses reported; the endpoint's cold start and scale-to-zero show in the logs."""

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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import openai

from gpu_jobs.build import BuildRequest, build
from gpu_jobs.tiny import build_tiny_model
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
            self.process.kill()
            raise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    source = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    artifact = tmp_path_factory.mktemp("artifact")
    build(BuildRequest(source=source, output=artifact, method="fp32", model_name=MODEL))
    port = free_port()
    admin_key = "sk-" + secrets.token_urlsafe(32)
    log = tmp_path_factory.mktemp("logs") / "local-up.log"
    state = tmp_path_factory.mktemp("state") / "local-state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("POWERTOOLS_")}
    env.update({"STRATUS_DTYPE": "float32", "STRATUS_ADMIN_KEY": admin_key, "HF_HUB_OFFLINE": "1"})
    command = [sys.executable, "-m", "stratus", "local", "up", "--port", str(port), "--model-dir", str(artifact)]
    command += ["--idle-seconds", "2", "--state-dir", str(state)]
    cloud = Cloud(f"http://127.0.0.1:{port}", admin_key, log, None, command, env)  # type: ignore[arg-type]
    cloud.start()
    yield cloud
    if cloud.process.poll() is None:
        cloud.stop()


def test_chat_and_batch_through_the_local_cloud_bill_what_they_report(cloud: Cloud) -> None:
    admin = cloud.admin_key
    cloud.call("POST", "/admin/tenants", admin, {"tenant_id": "acme", "name": "Acme"})
    key = cloud.call("POST", "/admin/tenants/acme/keys", admin, {"scopes": ["inference", "batch", "usage"]})["api_key"]
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=key, max_retries=0, timeout=120)

    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello there"}],
        max_tokens=6,
        temperature=0,
        extra_headers={"Prefer": "wait=25"},
    )
    assert completion.object == "chat.completion"
    assert completion.usage is not None
    reported = [completion.usage.total_tokens]

    lines = "".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/completions",
                "body": {"model": MODEL, "prompt": f"one two {i}", "max_tokens": 4},
            }
        )
        + "\n"
        for i in range(5)
    )
    uploaded = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.output_file_id is not None
    outputs = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert len(outputs) == 5
    reported += [item["response"]["body"]["usage"]["total_tokens"] for item in outputs]

    usage = cloud.call("GET", "/v1/usage", key)["totals"]
    assert (usage["requests"], usage["total_tokens"]) == (6, sum(reported))
    invoices = cloud.call("GET", f"/admin/invoices/{datetime.now(UTC):%Y-%m}", admin)["data"]
    assert {i["tenant_id"]: i["total_tokens"] for i in invoices}["acme"] == sum(reported)


def test_cold_start_and_scale_to_zero_show_in_the_logs(cloud: Cloud) -> None:
    deadline = time.monotonic() + 30
    while "scaling 1 -> 0" not in cloud.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    logs = cloud.log.read_text()
    assert "scaling 0 -> 1: starting the model server (cold start)" in logs
    assert "instance in service after" in logs
    assert "scaling 1 -> 0" in logs


def test_operator_commands_drive_the_admin_api(cloud: Cloud) -> None:
    from click.testing import CliRunner

    from stratus.cli import main

    runner = CliRunner()
    api = ["--api-url", cloud.url, "--admin-key", cloud.admin_key, "--json"]

    created = runner.invoke(main, ["tenants", "create", "initech", "--name", "Initech", "--rpm", "5", *api])
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["limits"]["requests_per_minute"] == 5
    key = json.loads(runner.invoke(main, ["keys", "create", "initech", "--scope", "usage", *api]).output)
    assert key["api_key"].startswith("sk-")
    listed = json.loads(runner.invoke(main, ["keys", "list", "initech", *api]).output)["data"]
    assert [k["key_id"] for k in listed] == [key["key_id"]] and "api_key" not in listed[0]
    revoked = json.loads(runner.invoke(main, ["keys", "revoke", key["key_id"], *api]).output)
    assert revoked["status"] == "revoked"
    suspended = json.loads(runner.invoke(main, ["tenants", "update", "initech", "--status", "suspended", *api]).output)
    assert suspended["status"] == "suspended"
    assert json.loads(runner.invoke(main, ["usage", "initech", *api]).output)["totals"]["requests"] == 0
    invoices = json.loads(runner.invoke(main, ["invoice", *api]).output)
    assert "initech" in {i["tenant_id"] for i in invoices["data"]}
    table = runner.invoke(main, ["tenants", "list", "--api-url", cloud.url, "--admin-key", cloud.admin_key])
    assert table.exit_code == 0 and "initech" in table.output
    missing = runner.invoke(main, ["tenants", "show", "nobody", *api])
    assert missing.exit_code == 1 and "404" in missing.output


def test_state_is_kept_across_a_restart_and_fresh_throws_it_away(cloud: Cloud) -> None:
    admin = cloud.admin_key
    before_usage = cloud.call("GET", "/admin/tenants/acme/usage", admin)["totals"]
    before_tenants = {t["tenant_id"] for t in cloud.call("GET", "/admin/tenants", admin)["data"]}
    assert cloud.stop() == 0
    assert "state saved to" in cloud.log.read_text()

    cloud.start()
    assert "state restored from" in cloud.log.read_text()
    assert {t["tenant_id"] for t in cloud.call("GET", "/admin/tenants", admin)["data"]} == before_tenants
    assert cloud.call("GET", "/admin/tenants/acme/usage", admin)["totals"] == before_usage
    assert cloud.stop() == 0

    cloud.command.append("--fresh")
    cloud.start()
    assert {t["tenant_id"] for t in cloud.call("GET", "/admin/tenants", admin)["data"]} == {"operators"}
