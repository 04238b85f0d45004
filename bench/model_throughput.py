"""The model server's throughput through `/invocations` and its cold start, engine against engine, one run.

Each engine runs in its own process, as the container runs it, one after the other (never two at
once: the machine has 2 cores): its cold start is timed from process start to `/ping` 200, then one
untimed warm-up pack, then N concurrent single-request packs (N = 1, 4, 16, 64) of greedy chat
completions of `--max-tokens` tokens over the four prompts below. Reports completion tokens per second
and, with a baseline, the ratios.

- `vllm-eager`, `vllm-compiled` (and each with `-reserved-core`: vLLM's default of one core for its front end):
  `gpu_jobs.serve` over vLLM's CPU build (`.venv-vllm`), the local cloud's model server
  (`stratus/localcloud/endpoint.py`), on a `make model` artifact.
- `--baseline-tree DIR --baseline-artifact DIR`: the server of another checkout (e.g. the commit
  before vLLM, `git worktree add /tmp/before 4f464c6`), started as that checkout started it
  (`python -m gpu_jobs.serve serve`), on an artifact built by that checkout.

    .venv/bin/python bench/model_throughput.py --engines vllm-eager vllm-compiled \\
        [--baseline-tree /tmp/before --baseline-artifact /tmp/before/.stratus/models/smollm2-int4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten year old.",
    "Describe a walk through a busy market in the morning.",
    "List the steps to bake a loaf of bread and explain each one.",
]
CONCURRENCY = (1, 4, 16, 64)


def pack(i: int, model: str, max_tokens: int) -> bytes:
    request = {
        "job_id": f"job_{i}",
        "tenant_id": "bench",
        "kind": "chat",
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "params": {"max_tokens": max_tokens, "temperature": 0},
    }
    return json.dumps({"version": 2, "pack_id": f"pack_{i}", "model": model, "requests": [request]}).encode()


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=900) as response:
        result = json.loads(response.read())["results"][0]
    if result.get("error"):
        raise RuntimeError(f"the server refused a bench request: {result['error']}")
    return int(result["usage"]["completion_tokens"])


def measure(name: str, url: str, model: str, max_tokens: int) -> list[dict[str, Any]]:
    post(f"{url}/invocations", pack(0, model, 4))  # warm-up, untimed
    rows = []
    for concurrency in CONCURRENCY:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            tokens = sum(pool.map(lambda i: post(f"{url}/invocations", pack(i, model, max_tokens)), range(concurrency)))
        rate = tokens / (time.perf_counter() - started)
        rows.append({"concurrency": concurrency, "tokens": tokens, "tok_per_s": round(rate, 1)})
        print(f"{name:>14}, {concurrency:>2} concurrent: {rate:7.1f} tok/s", flush=True)
    return rows


def run_vllm(engine: str, artifact: Path, threads: int) -> Callable[[int], tuple[list[str], dict[str, str]]]:
    """`vllm-eager` or `vllm-compiled` as the local cloud runs it (every core computes), and
    `-reserved-core`: vLLM's CPU build's own default, one core of the two kept for its front end."""
    sys.path.insert(0, str(REPO))
    from stratus.localcloud.endpoint import ModelProcess

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        argv, env = ModelProcess(artifact, threads, "vllm").command(port)
        if engine.startswith("vllm-compiled"):
            env.pop("SM_VLLM_ENFORCE_EAGER", None)
        if engine.endswith("-reserved-core"):
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "1"
        return argv, env

    return command


def run_baseline(tree: Path, artifact: Path, threads: int) -> Callable[[int], tuple[list[str], dict[str, str]]]:
    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "functions")]),
            "SM_MODEL_DIR": str(artifact),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "STRATUS_TORCH_THREADS": str(threads),
            "SAGEMAKER_MAX_CONCURRENT_INVOCATIONS": "64",
            "STRATUS_MAX_BATCH_SIZE": "64",
            "SM_NUM_GPUS": "0",
            "HF_HUB_OFFLINE": "1",
        }
        return [sys.executable, "-m", "gpu_jobs.serve", "serve"], env

    return command


def bench(
    name: str, command: Callable[[int], tuple[list[str], dict[str, str]]], model: str, max_tokens: int
) -> dict[str, Any]:
    from stratus.localcloud.endpoint import free_port, wait_until_serving

    port = free_port()
    argv, env = command(port)
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=env.get("PYTHONPATH", str(REPO)).split(os.pathsep)[0],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cold = wait_until_serving(f"http://127.0.0.1:{port}", process, started, timeout=900)
        print(f"{name:>14}: cold start {cold:.1f} s (process start to /ping 200)", flush=True)
        rows = measure(name, f"http://127.0.0.1:{port}", model, max_tokens)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return {"engine": name, "cold_start_s": round(cold, 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=REPO / ".stratus" / "models" / "smollm2-bf16")
    parser.add_argument("--engines", nargs="*", default=["vllm-eager", "vllm-compiled"])
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--baseline-artifact", type=Path, default=None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "model_throughput.json")
    args = parser.parse_args()

    results = []
    if args.baseline_tree:
        command = run_baseline(args.baseline_tree.resolve(), args.baseline_artifact.resolve(), args.threads)
        results.append(bench("baseline", command, args.model, args.max_tokens))
    for engine in args.engines:
        command = run_vllm(engine, args.artifact.resolve(), args.threads)
        results.append(bench(engine, command, args.model, args.max_tokens))
    if args.baseline_tree:
        base = {row["concurrency"]: row["tok_per_s"] for row in results[0]["rows"]}
        for result in results[1:]:
            for row in result["rows"]:
                row["vs_baseline"] = round(row["tok_per_s"] / base[row["concurrency"]], 2)
            ratios = ", ".join(f"{row['concurrency']}: {row['vs_baseline']}x" for row in result["rows"])
            print(f"{result['engine']} against the baseline: {ratios}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"max_tokens": args.max_tokens, "threads": args.threads, "results": results}, indent=2) + "\n"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
