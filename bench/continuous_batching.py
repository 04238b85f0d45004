"""transformers' own continuous batching (`generate_batch`, the `ContinuousBatchingManager` behind
it) against our `DecodeBatch` engine, on the same model object, in one run.

Both get the same 16 greedy chat requests (rendered and tokenized once) of up to `--max-tokens`
tokens, all submitted at once, 2 torch threads; each side runs `--rounds` times, interleaved, and
the best round counts. Reported: completion tokens per second and the ratio. Both outputs are
compared token by token (greedy: they should agree where the numerics agree).

    .venv/bin/python bench/continuous_batching.py [--artifact .stratus/models/smollm2-int4]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "functions")]

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works to a ten year old.",
    "Describe a walk through a busy market in the morning.",
    "List the steps to bake a loaf of bread and explain each one.",
]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import ContinuousBatchingConfig, GenerationConfig

    from gpu_jobs.engine.base import GenerationRequest
    from gpu_jobs.loader import load_engine
    from gpu_jobs.settings import ServerSettings

    torch.set_num_threads(args.threads)
    engine = load_engine(args.artifact, ServerSettings.from_environment({"STRATUS_TORCH_THREADS": str(args.threads)}))
    model, tokenizer = engine._model, engine._tokenizer
    prompts = [
        engine.render_chat([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]) for i in range(args.requests)
    ]
    inputs = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    config = GenerationConfig(
        max_new_tokens=args.max_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    batching = ContinuousBatchingConfig(
        num_blocks=args.requests * 2,
        max_batch_tokens=max(len(ids) for ids in inputs) * args.requests,
        max_requests_per_batch=args.requests,
    )

    def ours() -> tuple[int, list[list[int]]]:
        rows = engine.generate(
            [GenerationRequest(prompt=p, max_tokens=args.max_tokens, temperature=0) for p in prompts]
        )
        return sum(r.completion_tokens for r in rows), [r.token_ids for r in rows]

    def theirs() -> tuple[int, list[list[int]]]:
        outputs = model.generate_batch(
            inputs, generation_config=config, continuous_batching_config=batching, progress_bar=False
        )
        ordered = [outputs[key] for key in sorted(outputs, key=lambda k: int(k.split("_")[-1]))]
        generated = [[t for t in out.generated_tokens if t != tokenizer.eos_token_id] for out in ordered]
        return sum(len(g) for g in generated), generated

    ours()  # warm-up, untimed (both)
    theirs_error = None
    try:
        theirs()
    except Exception as error:  # noqa: BLE001 - reported as the result
        theirs_error = f"{type(error).__name__}: {error}"
    rates: dict[str, list[float]] = {"DecodeBatch": [], "generate_batch": []}
    same = None
    for _ in range(args.rounds):
        started = time.perf_counter()
        tokens, ours_ids = ours()
        rates["DecodeBatch"].append(tokens / (time.perf_counter() - started))
        if theirs_error is None:
            started = time.perf_counter()
            tokens, theirs_ids = theirs()
            rates["generate_batch"].append(tokens / (time.perf_counter() - started))
            same = sum(a == b for a, b in zip(ours_ids, theirs_ids, strict=True))
    best = {name: round(max(values), 1) for name, values in rates.items() if values}
    report: dict[str, Any] = {
        "artifact": args.artifact.name,
        "threads": args.threads,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "tok_per_s": best,
        "identical_outputs": same,
        "generate_batch_error": theirs_error,
        "attn_implementation": str(getattr(model.config, "_attn_implementation", None)),
    }
    if "generate_batch" in best:
        report["generate_batch_vs_DecodeBatch"] = round(best["generate_batch"] / best["DecodeBatch"], 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=REPO / ".stratus" / "models" / "smollm2-int4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "continuous_batching.json")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: report.update(run(args)))  # torch off the main thread (batcher.py)
    worker.start()
    worker.join()
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
