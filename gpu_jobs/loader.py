"""Cold start: verify the artifact, map its shards, build the engine. No quantization happens here."""

from __future__ import annotations

import logging
from pathlib import Path

from gpu_jobs.artifact import verify
from gpu_jobs.engine.transformers_engine import TransformersEngine
from gpu_jobs.settings import ServerSettings

logger = logging.getLogger(__name__)


def load_engine(directory: Path, settings: ServerSettings) -> TransformersEngine:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = verify(directory)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    from transformers import AutoConfig

    from gpu_jobs.placement import plan_device_map

    dtype = getattr(torch, settings.dtype) if manifest.method in ("bf16", "fp32") else "auto"
    gpus = min(settings.num_gpus, torch.cuda.device_count())
    device_map: dict[str, int] | str | None = None
    if gpus == 1:
        device_map = "cuda:0"
    elif gpus > 1:
        device_map = plan_device_map(AutoConfig.from_pretrained(directory), gpus)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, device_map=device_map)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    logger.info("artifact loaded", extra={"model": manifest.model_name, "method": manifest.method})
    return TransformersEngine(model, tokenizer, manifest.model_name)
