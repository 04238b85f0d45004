"""Cold start: verify the artifact, map its shards, build the engine. No quantization happens here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gpu_jobs.artifact import ArtifactError, Manifest, verify
from gpu_jobs.engine.transformers_engine import TransformersEngine
from gpu_jobs.settings import ServerSettings

logger = logging.getLogger(__name__)


def load_engine(directory: Path, settings: ServerSettings) -> TransformersEngine:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = verify(directory)
    check_gpus(settings)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    from transformers import AutoConfig

    from gpu_jobs.placement import plan_device_map

    dense = manifest.method in ("bf16", "fp32", "prune-unstructured", "prune-2:4")
    dtype = getattr(torch, settings.dtype) if dense else "auto"
    gpus = min(settings.num_gpus, torch.cuda.device_count())
    device_map: dict[str, int] | str | None = None
    if gpus == 1:
        device_map = "cuda:0"
    elif gpus > 1:
        device_map = plan_device_map(AutoConfig.from_pretrained(directory), gpus)
    if manifest.method == "int4":
        model = load_int4(directory, manifest, device_map)
    else:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, device_map=device_map)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    logger.info("artifact loaded", extra={"model": manifest.model_name, "method": manifest.method})
    return TransformersEngine(model, tokenizer, manifest.model_name)


class GpusMissing(RuntimeError):
    """The instance was expected to have GPUs that CUDA cannot use."""


def check_gpus(settings: ServerSettings) -> None:
    """Refuse to load on the CPUs of an instance that should have GPUs (`/ping` then fails with this
    message, so the endpoint does not go InService serving from its CPUs)."""
    import torch

    visible = int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    if settings.gpus_expected and visible < settings.num_gpus:
        raise GpusMissing(
            f"SM_NUM_GPUS={settings.num_gpus} but CUDA sees {visible} GPU(s) (torch {torch.__version__}, built"
            f" for CUDA {torch.version.cuda}): the instance's NVIDIA driver does not fit the image; set the"
            " production variant's InferenceAmiVersion (README, Deploy)"
        )


def load_int4(directory: Path, manifest: Manifest, device_map: dict[str, int] | str | None) -> Any:
    """Build the model skeleton without memory, put `Int4Linear` layers in place of the decoder's
    linears, and assign the shards' tensors (memory-mapped by safetensors) to it."""
    import torch
    from accelerate import dispatch_model, init_empty_weights
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from gpu_jobs.int4 import pack_all, replace_linears

    state: dict[str, Any] = {}
    for shard in manifest.shards:
        state.update(load_file(directory / shard.file))
    config = AutoConfig.from_pretrained(directory)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    replace_linears(model, manifest.group_size or 32, quantize_weights=False, head="lm_head.qweight" in state)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise ArtifactError(f"int4 artifact does not fit the model: missing {sorted(missing)}, unexpected {unexpected}")
    model.tie_weights()
    if (directory / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    if isinstance(device_map, dict):
        model = dispatch_model(model, device_map=device_map)
    elif device_map:
        model = model.to(device_map)
    pack_all(model)
    return model.eval()
