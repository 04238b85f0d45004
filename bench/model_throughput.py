"""Aggregate generation throughput through `/invocations` vs sequential HF `generate`, same run.

Loads the built artifact once (`make model`), serves it in process with uvicorn, and sends N
concurrent single-request packs (N = 1, 4, 16, 64) of greedy chat completions; the baseline is
transformers' `generate` on the same model object, one request at a time, same threads and
prompts. With `--llama-python`, llama.cpp on the source GGUF runs the same rendered prompts with
the same threads, one sequence at a time and 16 sequences batched (`llama_cpp_batched.py`).
Reports completion tokens per second and the ratios. Run alone: the machine has 2 cores.

    .venv/bin/python bench/model_throughput.py [--artifact .stratus/models/smollm2-int4] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.request
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pack(i: int, max_tokens: int) -> bytes:
    request = {
        "job_id": f"job_{i}",
        "tenant_id": "bench",
        "kind": "chat",
        "model": "m",
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "params": {"max_tokens": max_tokens, "temperature": 0},
    }
    return json.dumps({"version": 2, "pack_id": f"pack_{i}", "model": "m", "requests": [request]}).encode()


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=600) as response:
        result = json.loads(response.read())["results"][0]
    return int(result["usage"]["completion_tokens"])


def llama_cpp(args: argparse.Namespace, rendered: list[str]) -> dict[str, float]:
    """llama.cpp on the GGUF the artifact was built from, same rendered prompts, same threads: one
    sequence at a time, and 16 sequences decoded together (`llama_cpp_batched.py`)."""
    import subprocess
    import sys

    sys.path.insert(0, str(REPO))
    from stratus.model_commands import wheel_gguf

    command = [str(args.llama_python), str(REPO / "bench" / "llama_cpp_batched.py"), str(wheel_gguf())]
    command += [str(args.threads), str(args.max_tokens), "16", *rendered]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=REPO / ".stratus" / "models" / "smollm2-int4")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=4, help="requests in the sequential baseline")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/out/model_throughput-<artifact>.json")
    parser.add_argument(
        "--llama-python",
        type=Path,
        default=None,
        help="an interpreter with llama-cpp-python: adds llama.cpp on the source GGUF (single stream, 16 batched)",
    )
    args = parser.parse_args()
    output = args.output or REPO / "bench" / "out" / f"model_throughput-{args.artifact.name}.json"

    import torch
    import uvicorn

    from gpu_jobs.batcher import ContinuousBatcher
    from gpu_jobs.loader import load_engine
    from gpu_jobs.server import ModelHolder, create_app
    from gpu_jobs.settings import ServerSettings

    settings = ServerSettings.from_environment({"STRATUS_TORCH_THREADS": str(args.threads)})

    # All torch work happens off the main thread, in threads that end before the server starts:
    # libgomp throttles its spin-wait once more threads than cores belong to OpenMP teams, and the
    # main thread's team never goes away (2.5x slower decoding in the batcher thread: gpu_jobs/batcher.py).
    # `serve` is built the same way: the model loads in a thread that ends, and only the batcher computes.
    def baseline_run() -> None:
        nonlocal engine, baseline, generated
        torch.set_num_threads(args.threads)
        engine = load_engine(args.artifact, settings)
        model, tokenizer = engine._model, engine._tokenizer  # the very same weights for the baseline
        # Baseline: transformers' generate, one request at a time.
        started = time.perf_counter()
        for i in range(args.sequential):
            text = engine.render_chat([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(
                    **ids, max_new_tokens=args.max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            generated += int(out.shape[1] - ids.input_ids.shape[1])
        baseline = generated / (time.perf_counter() - started)

    engine: Any = None
    baseline, generated = 0.0, 0
    worker = threading.Thread(target=baseline_run)
    worker.start()
    worker.join()
    print(f"sequential HF generate: {baseline:.1f} tok/s ({generated} tokens)")
    rendered = [engine.render_chat([{"role": "user", "content": prompt}]) for prompt in PROMPTS]
    llama = llama_cpp(args, rendered) if args.llama_python else None
    if llama:
        print(f"llama.cpp single stream (source GGUF): {llama['single_tok_per_s']:.1f} tok/s")
        print(f"llama.cpp 16 sequences batched: {llama['batched_tok_per_s']:.1f} tok/s")

    port = free_port()
    holder = ModelHolder(lambda: (engine, ContinuousBatcher(engine, 64, 20, args.threads)))
    holder.start()
    holder.wait(60)
    server = uvicorn.Server(uvicorn.Config(create_app(holder, 64), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/invocations"
    post(url, pack(0, 4))  # warm-up, untimed: the chat template compiles and the first shapes run once
    rows = []
    for concurrency in (1, 4, 16, 64):
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            tokens = sum(pool.map(lambda i: post(url, pack(i, args.max_tokens)), range(concurrency)))
        rate = tokens / (time.perf_counter() - started)
        row = {
            "concurrency": concurrency,
            "tokens": tokens,
            "tok_per_s": round(rate, 1),
            "vs_sequential": round(rate / baseline, 2),
        }
        versus = ""
        if llama:
            row["vs_llama_cpp_single"] = round(rate / llama["single_tok_per_s"], 2)
            row["vs_llama_cpp_batched_16"] = round(rate / llama["batched_tok_per_s"], 2)
            versus = (
                f", {rate / llama['single_tok_per_s']:.2f}x llama.cpp single stream,"
                f" {rate / llama['batched_tok_per_s']:.2f}x llama.cpp 16 batched"
            )
        rows.append(row)
        print(
            f"/invocations, {concurrency:>2} concurrent: {rate:7.1f} tok/s  ({rate / baseline:.2f}x sequential{versus})"
        )
    server.should_exit = True
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "artifact": args.artifact.name,
                "llama_cpp": llama,
                "threads": args.threads,
                "max_tokens": args.max_tokens,
                "sequential_tok_per_s": round(baseline, 1),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
