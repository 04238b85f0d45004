"""Cold import time of each Lambda function module vs a baseline handler.

Each sample is a fresh interpreter importing one module (byte-code already compiled, as in a
deployed package); modules are interleaved so that machine noise hits them alike. Reports the
median per module and its difference to the baseline. Goal: ours <= baseline + 100 ms.

    .venv/bin/python bench/cold_import.py [--runs 15]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = [
    "baseline_handler",
    "authorizer.app",
    "api.app",
    "dispatcher.app",
    "results.app",
    "batch.app",
    "request_failures.app",
    "sweeper.app",
    "scheduler.app",
    "billing.app",
]
HEAVY = ["torch", "transformers", "numpy", "sagemaker"]
PROBE = """
import importlib, json, sys, time
start = time.perf_counter()
importlib.import_module(sys.argv[1])
elapsed = time.perf_counter() - start
heavy = [name for name in sys.argv[2:] if name in sys.modules]
print(json.dumps({"seconds": elapsed, "heavy": heavy}))
"""


def sample(module: str) -> dict[str, object]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO / "bench")]),
        "AWS_DEFAULT_REGION": "us-east-1",
        "TENANTS_TABLE": "t",
        "API_KEYS_TABLE": "k",
        "USAGE_TABLE": "u",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module, *HEAVY], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "cold_import.json")
    args = parser.parse_args()
    compileall.compile_dir(REPO / "functions", quiet=1)
    compileall.compile_dir(REPO / "bench", quiet=1)
    for module in MODULES:  # one discarded warm-up each: fills the OS file cache
        sample(module)
    times: dict[str, list[float]] = {module: [] for module in MODULES}
    heavy: dict[str, list[str]] = {}
    for _ in range(args.runs):
        for module in MODULES:
            result = sample(module)
            times[module].append(float(result["seconds"]))  # type: ignore[arg-type]
            heavy[module] = list(result["heavy"])  # type: ignore[call-overload]
    baseline = statistics.median(times["baseline_handler"])
    rows = []
    print(f"{'module':<20} {'median ms':>10} {'vs baseline ms':>15}  heavy imports")
    for module in MODULES:
        median = statistics.median(times[module])
        delta = (median - baseline) * 1000
        rows.append(
            {
                "module": module,
                "median_ms": round(median * 1000, 1),
                "delta_ms": round(delta, 1),
                "heavy_imports": heavy[module],
                "samples_ms": [round(t * 1000, 1) for t in times[module]],
            }
        )
        print(f"{module:<20} {median * 1000:>10.1f} {delta:>+15.1f}  {', '.join(heavy[module]) or '-'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"runs": args.runs, "python": sys.version.split()[0], "rows": rows}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
