"""SageMaker's environment, read in one place and turned into the server's settings.

SageMaker mounts the model at `/opt/ml/model` and expects the server on port 8080
(`SAGEMAKER_BIND_TO_PORT` when it says otherwise). It does **not** set `SM_NUM_GPUS` for a container
of your own (that variable belongs to its training toolkits and to some of its own images), so the
template sets it from the instance type (`template.yaml`, mapping `InstanceGpus`), and without it
the server uses every GPU CUDA can see. `SM_NUM_GPUS` set means GPUs are *expected*: if CUDA sees
fewer (an AMI whose driver is too old for the image's CUDA, as SageMaker's default driver 470 on
ml.g5 is for CUDA 12), the model does not load and `/ping` fails, instead of the model loading on
the instance's CPUs while `/ping` answers 200 (`loader.check_gpus`). The rest are ours, with
defaults that suit one GPU; the local cloud sets them for a CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    model_dir: Path
    port: int
    num_gpus: int
    max_batch_size: int
    batch_wait_ms: int
    max_concurrent_invocations: int
    torch_threads: int | None
    dtype: str
    engine: str = "transformers"  # "echo": no model, instant answers (load tests of the serverless path)
    gpus_expected: bool = False  # SM_NUM_GPUS was set above 0: fewer visible GPUs is a failed start

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        env = dict(os.environ if environ is None else environ)
        threads = env.get("STRATUS_TORCH_THREADS")
        stated = env.get("SM_NUM_GPUS")
        return cls(
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            port=int(env.get("SAGEMAKER_BIND_TO_PORT", "8080")),
            num_gpus=int(stated) if stated else visible_gpus(),
            max_batch_size=int(env.get("STRATUS_MAX_BATCH_SIZE", "32")),
            batch_wait_ms=int(env.get("STRATUS_BATCH_WAIT_MS", "20")),
            max_concurrent_invocations=int(env.get("SAGEMAKER_MAX_CONCURRENT_INVOCATIONS", "4")),
            torch_threads=int(threads) if threads else None,
            dtype=env.get("STRATUS_DTYPE", "bfloat16"),
            engine=env.get("STRATUS_ENGINE", "transformers"),
            gpus_expected=int(stated or "0") > 0,
        )


def visible_gpus() -> int:
    """The GPUs CUDA can see (0 without torch or without a usable driver)."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
