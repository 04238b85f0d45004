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
    dtype = getattr(torch, settings.dtype) if manifest.method in ("bf16", "fp32") else "auto"
    device_map = "auto" if settings.num_gpus > 0 and torch.cuda.is_available() else None
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, device_map=device_map)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    logger.info("artifact loaded", extra={"model": manifest.model_name, "method": manifest.method})
    return TransformersEngine(model, tokenizer, manifest.model_name)
