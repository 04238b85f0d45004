"""Model build: a source (GGUF file or Hugging Face directory) → a sharded, ready-to-serve artifact.

`bf16` is the reference; `int8` (torchao weight-only, via transformers), `int4` (group-wise, the
GGUF Q4_1 layout: `gpu_jobs/int4.py`) and magnitude pruning (`gpu_jobs/prune.py`) are built from the
source's full-precision weights. The artifact is a directory of sharded safetensors plus tokenizer,
config and `manifest.json`, and its `model.tar.gz` in SageMaker's layout (files at the root).
"""

from __future__ import annotations

import copy
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from gpu_jobs.artifact import Manifest, Method, Perplexity, Source, sha256_file, write_manifest

EVAL_TEXT = Path(__file__).with_name("eval_text.txt")
LIBRARIES = ("torch", "transformers", "accelerate", "safetensors", "gguf")


@dataclass(frozen=True)
class BuildRequest:
    source: Path
    output: Path
    method: Method = "bf16"
    model_name: str = "smollm2-135m-instruct"
    gguf_file: str | None = None
    max_shard_size: str = "100MB"
    group_size: int = 32
    sparsity: float = 0.5
    int4_head: bool = False  # int4: the output head too (bench/RESULTS.md: 1.3x faster decode, +2 % perplexity)


@dataclass(frozen=True)
class Converted:
    model: Any
    bits: int
    dtype: str
    group_size: int | None = None
    sparsity: float | None = None


def load_source(request: BuildRequest) -> tuple[Any, Any, Source]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if request.gguf_file:
        gguf = request.source / request.gguf_file
        model = AutoModelForCausalLM.from_pretrained(request.source, gguf_file=request.gguf_file)
        tokenizer = AutoTokenizer.from_pretrained(request.source, gguf_file=request.gguf_file)
        if getattr(model, "hf_quantizer", None) is not None:
            # the weights are dequantized already; save_pretrained refuses while the marker stays
            model.hf_quantizer.remove_quantization_config(model)  # type: ignore[union-attr,operator]
        return model, tokenizer, Source(kind="gguf", name=request.gguf_file, sha256=sha256_file(gguf))
    model = AutoModelForCausalLM.from_pretrained(request.source)
    tokenizer = AutoTokenizer.from_pretrained(request.source)
    return model, tokenizer, Source(kind="hf", name=request.source.name)


def perplexity(model: Any, tokenizer: Any, text: str) -> tuple[float, int]:
    """Perplexity of `text` under the model, one forward pass (the text fits the context)."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[:, : int(model.config.max_position_embeddings)]
    with torch.inference_mode():
        loss = model(input_ids=ids.to(next(model.parameters()).device), labels=ids).loss
    return float(torch.exp(loss.float())), int(ids.shape[1])


def convert(model: Any, request: BuildRequest, scratch: Path) -> Converted:
    """The model in the artifact's form. Quantization and pruning happen here, at build time, so that
    the server only maps the stored weights at start."""
    import torch

    method = request.method
    if method == "bf16":
        return Converted(model.to(torch.bfloat16), 16, "bfloat16")
    if method == "fp32":
        return Converted(model.to(torch.float32), 32, "float32")
    if method == "int8":
        # transformers' TorchAoConfig quantizes while loading and its result saves as safetensors;
        # torchao's quantize_() on a loaded model does not serialise ("invalid python storage" from
        # save_pretrained, torchao 0.18: docs/platform-notes.md), hence the round trip.
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import AutoModelForCausalLM, TorchAoConfig

        model.to(torch.bfloat16).save_pretrained(scratch)
        quantized = AutoModelForCausalLM.from_pretrained(
            scratch, dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig())
        )
        return Converted(quantized, 8, "int8 weights, bfloat16 activations")
    if method == "int4":
        from gpu_jobs.int4 import replace_linears

        replace_linears(model.to(torch.float32), request.group_size, quantize_weights=True, head=request.int4_head)
        return Converted(
            model.to(torch.bfloat16),
            4,
            "int4 weights (bf16 scale and zero per group), bf16 activations",
            group_size=request.group_size,
        )
    if method in ("prune-unstructured", "prune-2:4"):
        from gpu_jobs.prune import prune_2_4, prune_unstructured

        model = model.to(torch.float32)
        sparsity = prune_2_4(model) if method == "prune-2:4" else prune_unstructured(model, request.sparsity)
        return Converted(model.to(torch.bfloat16), 16, "bfloat16", sparsity=round(sparsity, 6))
    raise ValueError(f"unknown method {method!r}")


def build(request: BuildRequest, progress: Callable[[str], None] = lambda _: None) -> Manifest:
    import torch

    model, tokenizer, source = load_source(request)
    text = EVAL_TEXT.read_text(encoding="utf-8")
    progress("[2/3] measuring perplexity (bf16 reference, then the built method)")
    # the methods start from the source's own precision; the reference is measured on a bf16 copy
    reference, _ = perplexity(copy.deepcopy(model).to(torch.bfloat16), tokenizer, text)
    with tempfile.TemporaryDirectory() as scratch:
        converted = convert(model, request, Path(scratch))
        model = converted.model
        value, tokens = perplexity(model, tokenizer, text)
    progress("[3/3] writing shards, manifest and model.tar.gz")
    request.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(request.output, max_shard_size=request.max_shard_size)
    tokenizer.save_pretrained(request.output)
    for file in request.output.iterdir():
        file.chmod(0o644)  # safetensors writes 0600; the container's user must read them
    manifest = write_manifest(
        request.output,
        model_name=request.model_name,
        source=source,
        method=request.method,
        bits=converted.bits,
        dtype=converted.dtype,
        group_size=converted.group_size,
        sparsity=converted.sparsity,
        perplexity=Perplexity(value=value, reference=reference, eval_text=EVAL_TEXT.name, tokens=tokens),
        libraries={name: _version(name) for name in LIBRARIES},
    )
    package(request.output)
    return manifest


def package(directory: Path) -> Path:
    """`model.tar.gz` with the artifact's files at its root, as SageMaker unpacks into /opt/ml/model."""
    target = directory / "model.tar.gz"
    # gzip level 1: bf16 and int4 weights barely compress; level 9 took minutes for 1-4 % less (bench/RESULTS.md)
    with tarfile.open(target, "w:gz", compresslevel=1) as archive:
        for file in sorted(directory.iterdir()):
            if file.name != target.name:
                archive.add(file, arcname=file.name)
    return target


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"
