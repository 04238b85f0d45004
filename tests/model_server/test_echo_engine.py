"""The instant echo engine used by the load benchmark: no model, the artifact's tokenizer for usage."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from gpu_jobs.batcher import ContinuousBatcher
from gpu_jobs.engine.base import GenerationRequest
from gpu_jobs.serve import build_holder
from gpu_jobs.settings import ServerSettings


def test_echo_answers_at_once_with_usage_counted_by_the_artifacts_tokenizer(tiny_artifact: Path) -> None:
    settings = ServerSettings.from_environment({"SM_MODEL_DIR": str(tiny_artifact), "STRATUS_ENGINE": "echo"})
    holder = build_holder(settings)
    holder.start()
    assert holder.wait(30) and holder.engine is not None and isinstance(holder.batcher, ContinuousBatcher)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_artifact)
    prompt = "the quick brown fox jumps over the lazy dog"
    result = holder.batcher.submit(GenerationRequest(prompt=prompt, max_tokens=3)).result(timeout=10)
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (len(ids), 3, "length")
    assert result.text == tokenizer.decode(ids[:3])
    holder.batcher.close()
