"""Load on the local cloud: N concurrent clients, requests/s, latency percentiles, errors, invariants.

Starts `stratus local up` as a process (a tiny random artifact, or `--artifact` for the real model),
with the instant echo engine by default (`--engine vllm` for the model on vLLM's CPU build), creates one tenant
per client group with limits far above the load, and has N threads send chat completions with
`Prefer: respond-async, wait=25` for `--seconds`. Then it checks what must hold: every admitted request finished,
usage and invoices equal the tokens the clients were told, nothing left in flight. To say how much
moto itself limits the path, it also measures the same kind of write (the admission transaction)
against a fresh moto server alone, with the same number of threads.

    .venv/bin/python bench/load.py --clients 10 50 100 [--seconds 20] [--engine echo|vllm]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(
    url: str, key: str, method: str = "GET", body: Any = None, wait: bool = False, prefer: str | None = None
) -> tuple[int, Any]:
    """One API call with a key; the status and the JSON answer (errors too). `wait`: a 202 and the
    job if it is not done in 25 s; `prefer`: any other `Prefer` header."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if wait:
        prefer = "respond-async, wait=25"
    if prefer:
        headers["Prefer"] = prefer
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] if ordered else 0.0


def start_cloud(artifact: Path, engine: str, port: int, admin_key: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update({"STRATUS_ADMIN_KEY": admin_key, "STRATUS_ENGINE": engine, "HF_HUB_OFFLINE": "1"})
    env.update({"POWERTOOLS_LOG_LEVEL": "WARNING"})
    command = [sys.executable, "-m", "stratus", "local", "up", "--port", str(port), "--model-dir", str(artifact)]
    command += ["--state-dir", str(log.parent / "state"), "--fresh", "--idle-seconds", "600"]
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the local cloud exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2):
                return process
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise SystemExit("the local cloud did not come up")


def run_load(base: str, admin: str, clients: int, seconds: float, max_tokens: int) -> dict[str, Any]:
    tenant = f"load{clients}-{secrets.token_hex(3)}"
    limits = {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000, "max_in_flight": 100_000}
    call(f"{base}/admin/tenants", admin, "POST", {"tenant_id": tenant, "name": tenant, "limits": limits})
    _, issued = call(f"{base}/admin/tenants/{tenant}/keys", admin, "POST", {"scopes": ["inference", "usage"]})
    key = issued["api_key"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "one two three four five"}]}
    body["max_tokens"] = max_tokens
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    reported = 0
    pending: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        nonlocal reported
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            status, answer = call(f"{base}/v1/chat/completions", key, "POST", body, wait=True)
            elapsed = time.perf_counter() - started
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(elapsed)
                    reported += answer["usage"]["total_tokens"]
                elif status == 202:
                    pending.append(answer["id"])

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.monotonic() - started
    for job_id in pending:  # answered 202 (not done within 25 s): wait for them, they count too
        while True:
            _, job = call(f"{base}/v1/jobs/{job_id}", key)
            if job.get("status") in ("completed", "failed", "expired") or job.get("object") == "chat.completion":
                break
            time.sleep(0.5)
        result = job.get("result") or job
        if result.get("usage"):
            reported += result["usage"]["total_tokens"]
    _, usage = call(f"{base}/v1/usage", key)
    _, tenant_row = call(f"{base}/admin/tenants/{tenant}", admin)
    _, invoices = call(f"{base}/admin/invoices/{datetime.now(UTC):%Y-%m}", admin)
    billed = {i["tenant_id"]: i["total_tokens"] for i in invoices["data"]}.get(tenant)
    ok = statuses.get(200, 0) + statuses.get(202, 0)
    total = sum(statuses.values())
    return {
        "clients": clients,
        "requests": total,
        "requests_per_s": round(total / wall, 1),
        "p50_s": round(percentile(latencies, 0.50), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "error_rate": round(1 - ok / total, 4) if total else None,
        "statuses": statuses,
        "answered_later": len(pending),
        "invariants": {
            "usage_requests_equal_admitted": usage["totals"]["requests"] == ok,
            "billed_tokens_equal_reported": usage["totals"]["total_tokens"] == reported == billed,
            "nothing_in_flight": tenant_row.get("in_flight", 0) == 0,
        },
    }


def moto_alone(clients: int, seconds: float) -> dict[str, Any]:
    """The admission transaction's shape (4 conditional updates) against a fresh moto server, N threads."""
    import logging

    import boto3

    from stratus.localcloud.moto_server import LocalMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    table = f"admission-shape-{clients}"  # moto's state is per process: one table per run
    server = LocalMotoServer()
    server.start()
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",  # noqa: S106 - moto
        )
        client.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        done = 0
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def worker(n: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                items = [
                    {
                        "Update": {
                            "TableName": table,
                            "Key": {"pk": {"S": f"{n}-{i}"}},
                            "UpdateExpression": "ADD c :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    }
                    for i in range(4)
                ]
                client.transact_write_items(TransactItems=items)
                with lock:
                    done += 1

        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            for n in range(clients):
                pool.submit(worker, n)
        return {"clients": clients, "transactions_per_s": round(done / (time.monotonic() - started), 1)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--engine", choices=["echo", "vllm"], default="echo")
    parser.add_argument(
        "--artifact", type=Path, default=None, help="default: a tiny random model (echo needs no weights)"
    )
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "load.json")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="stratus-load-"))
    artifact = args.artifact
    if artifact is None:
        from gpu_jobs.build import BuildRequest, build
        from gpu_jobs.tiny import build_tiny_model

        artifact = scratch / "artifact"
        build(BuildRequest(build_tiny_model(scratch / "tiny"), artifact, "fp32", MODEL))
    port, admin = free_port(), "sk-" + secrets.token_urlsafe(32)
    process = start_cloud(artifact, args.engine, port, admin, scratch / "local-up.log")
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        warm = run_load(base, admin, 1, 0.1, args.max_tokens)  # endpoint cold start and imports, untimed
        print(f"warm-up: {warm['requests']} request(s), {warm['p50_s']} s")
        for clients in args.clients:
            row = run_load(base, admin, clients, args.seconds, args.max_tokens)
            rows.append(row)
            print(json.dumps(row))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    moto = [moto_alone(clients, min(args.seconds, 10)) for clients in args.clients]
    for row in moto:
        print(json.dumps({"moto_alone": row}))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"engine": args.engine, "seconds": args.seconds, "load": rows, "moto": moto}, indent=2)
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
