"""Cold start of the model server's engine: process start → model ready, per artifact method, and
against loading bf16 and quantizing to int8 at start (what the artifact build avoids).

Each sample is a fresh interpreter (imports included, as in a container start); median of N.

    .venv/bin/python bench/cold_start.py [--runs 3]   (after `make model` and
    `stratus model build --method int8|int4 --output .stratus/models/smollm2-int8|int4`,
    `stratus model build --method int4 --int4-head --output .stratus/models/smollm2-int4-head`)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / ".stratus" / "models"
LOAD = """
import time, sys
start = time.perf_counter()
from pathlib import Path
from gpu_jobs.loader import load_engine
from gpu_jobs.settings import ServerSettings
engine = load_engine(Path(sys.argv[1]), ServerSettings.from_environment({"STRATUS_TORCH_THREADS": "2"}))
print(time.perf_counter() - start)
"""
QUANTIZE_AT_START = """
import time, sys
start = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig
from torchao.quantization import Int8WeightOnlyConfig
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16,
                                             quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
AutoTokenizer.from_pretrained(sys.argv[1])
print(time.perf_counter() - start)
"""


def sample(code: str, artifact: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, str(artifact)],
        check=True,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        cwd=REPO,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("bf16 artifact", LOAD, MODELS / "smollm2-bf16"),
        ("int8 artifact", LOAD, MODELS / "smollm2-int8"),
        ("int4 artifact", LOAD, MODELS / "smollm2-int4"),
        ("int4 artifact, int4 head", LOAD, MODELS / "smollm2-int4-head"),
        ("bf16 + int8 quantization at start", QUANTIZE_AT_START, MODELS / "smollm2-bf16"),
    ]
    rows = []
    for name, code, artifact in cases:
        times = [sample(code, artifact) for _ in range(args.runs)]
        size = sum(p.stat().st_size for p in artifact.glob("*.safetensors"))
        rows.append(
            {
                "case": name,
                "median_s": round(statistics.median(times), 2),
                "weights_mb": round(size / 1e6, 1),
                "samples_s": [round(t, 2) for t in times],
            }
        )
        print(f"{name:<36} {statistics.median(times):6.2f} s  ({size / 1e6:.1f} MB of shards)")
    out = REPO / "bench" / "out" / "cold_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
