"""SageMaker's environment, read in one place and turned into the server's settings.

SageMaker mounts the model at `/opt/ml/model`, sets `SM_NUM_GPUS` and expects the server on port
8080 (`SAGEMAKER_BIND_TO_PORT` when it says otherwise). The rest are ours, with defaults that
suit one GPU; the local cloud sets them for a CPU.
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

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        env = dict(os.environ if environ is None else environ)
        threads = env.get("STRATUS_TORCH_THREADS")
        return cls(
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            port=int(env.get("SAGEMAKER_BIND_TO_PORT", "8080")),
            num_gpus=int(env.get("SM_NUM_GPUS", "0")),
            max_batch_size=int(env.get("STRATUS_MAX_BATCH_SIZE", "32")),
            batch_wait_ms=int(env.get("STRATUS_BATCH_WAIT_MS", "20")),
            max_concurrent_invocations=int(env.get("SAGEMAKER_MAX_CONCURRENT_INVOCATIONS", "4")),
            torch_threads=int(threads) if threads else None,
            dtype=env.get("STRATUS_DTYPE", "bfloat16"),
            engine=env.get("STRATUS_ENGINE", "transformers"),
        )
