"""W4A16 and FP8 artifacts built with llmcompressor (its own venv, `.venv-compress`) in the
compressed-tensors format, and served by the same vLLM through the same pack handler."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from gpu_jobs.artifact import verify
from gpu_jobs.build import BuildRequest, build
from stratus_core.contract import PackResult

from .conftest import chat, completion, pack, post, serve


@pytest.mark.parametrize(("method", "bits", "format_"), [("w4a16", 4, "pack-quantized"), ("fp8", 8, "float-quantized")])
def test_a_quantized_artifact_builds_and_vllm_serves_it(
    method: str, bits: int, format_: str, tiny_source: Path, tmp_path: Path
) -> None:
    artifact = tmp_path / method
    manifest = build(BuildRequest(source=tiny_source, output=artifact, method=method, model_name="tiny"))  # type: ignore[arg-type]

    assert verify(artifact) == manifest and (manifest.method, manifest.bits) == (method, bits)
    config = json.loads((artifact / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == format_
    assert set(config["ignore"]) >= {"lm_head"}  # the head and the embedding stay in bf16
    if method == "w4a16":
        assert manifest.group_size == 128  # the tiny model's widths (128, 256) take vLLM's usual group
    assert manifest.perplexity is not None and manifest.perplexity.tokens > 1000  # measured on the whole eval text
    with tarfile.open(artifact / "model.tar.gz") as archive:
        assert {"model.py", "config.json", *(s.file for s in manifest.shards)} <= set(archive.getnames())

    if method == "w4a16" and not torch.cpu._is_avx512_supported():
        # vLLM's CPU build loads its AVX2 kernels (`vllm._C_AVX2`) on such a CPU, and they have no
        # `cpu_gemm_wna16`: every request fails in the engine ("'_C' object has no attribute
        # 'cpu_gemm_wna16'"); the same predicate picks the library (vllm/platforms/cpu.py)
        pytest.skip("vLLM's CPU build serves W4A16 only with AVX-512 (docs/platform-notes.md); built and verified")
    for server in serve(artifact, "vllm"):
        status, body = post(server, pack(chat("hello there"), completion("one two three")))
        assert status == 200
        for result in PackResult.model_validate(body).results:
            assert result.error is None and result.usage is not None and result.usage.completion_tokens > 0
