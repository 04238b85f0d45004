"""Quantization with llmcompressor, into the compressed-tensors formats vLLM serves with fast kernels.

Runs in its own virtual environment (`.venv-compress`, `gpu_jobs/requirements-compress.txt`):
llmcompressor pins a transformers older than the project's and different from vLLM's, and vLLM's docs
recommend separate environments. `gpu_jobs/build.py` calls it as a subprocess:

    python -m gpu_jobs.quantize --source DIR --output DIR --scheme w4a16 [--calibration FILE] [--eval-text FILE]

- `w4a16`: int4 weights, symmetric, in groups (128 where every Linear's input width allows it, else
  64 or 32: vLLM's Marlin kernels take these; SmolLM2's 576 needs 64), bf16 activations. Without
  calibration it is data-free round-to-nearest through `model_free_ptq`, which reads and writes one
  safetensors shard at a time and never builds the model: an 8B model quantizes in a few GB of RAM
  (bench/RESULTS.md). With `--calibration FILE` it is GPTQ through `oneshot`, which holds the model in
  RAM (bf16) and onloads one decoder layer at a time; on SmolLM2 our calibration text gave a worse
  held-out perplexity than data-free RTN (bench/RESULTS.md), so RTN is the default.
- `fp8`: FP8 weights per channel and dynamic per-token FP8 activations (`FP8_DYNAMIC`), data-free,
  shard by shard. vLLM runs W8A8 FP8 on Ada and Hopper (L4, L40S, H100); on Ampere, weight-only.

The embedding table and `lm_head` stay in bf16 (`model_free_ptq` matches tensors by name only, so the
embedding must be named to be left alone). Prints one JSON line: the measured perplexity of the source
and of the result on `--eval-text`, in windows of the model's context (null without `--eval-text`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

GROUPS = (128, 64, 32)
IGNORED = ["lm_head", "re:.*embed_tokens$"]


def group_size(config: dict[str, Any]) -> int:
    """The largest Marlin group size that divides every Linear's input width."""
    heads = int(config["num_attention_heads"]) * int(
        config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    )
    widths = {int(config["hidden_size"]), int(config["intermediate_size"]), heads}
    for size in GROUPS:
        if all(width % size == 0 for width in widths):
            return size
    raise ValueError(f"no group size in {GROUPS} divides the model's widths {sorted(widths)}")


def w4a16_scheme(size: int) -> Any:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=size)
    return QuantizationScheme(targets=["Linear"], weights=weights)


def data_free(source: Path, output: Path, scheme: Any) -> None:
    from llmcompressor import model_free_ptq

    model_free_ptq(str(source), str(output), scheme=scheme, ignore=IGNORED, max_workers=1, device="cpu")


def gptq(source: Path, output: Path, scheme: Any, calibration: Path, max_length: int = 256) -> None:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    texts = [line.strip() for line in calibration.read_text(encoding="utf-8").splitlines() if line.strip()]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"])
    model = oneshot(
        model=model, recipe=recipe, dataset=dataset, num_calibration_samples=len(texts), max_seq_length=max_length
    )
    model.save_pretrained(output, save_compressed=True)
    tokenizer.save_pretrained(output)


def perplexity(directory: Path, text: str) -> tuple[float, int]:
    """`gpu_jobs.build.perplexity` of a directory; a compressed-tensors checkpoint is dequantized to
    bf16 to be measured."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, CompressedTensorsConfig

    from gpu_jobs.build import perplexity as measure

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    extra = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if "quantization_config" in config else {}
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16, **extra)  # in eval mode
    return measure(model, AutoTokenizer.from_pretrained(directory), text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, required=True, help="a Hugging Face directory (safetensors)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--scheme", choices=["w4a16", "fp8"], required=True)
    parser.add_argument("--calibration", type=Path, default=None, help="w4a16: GPTQ on these lines instead of RTN")
    parser.add_argument("--eval-text", type=Path, default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    config = json.loads((args.source / "config.json").read_text(encoding="utf-8"))
    size = None
    if args.scheme == "fp8":
        data_free(args.source, args.output, "FP8_DYNAMIC")
    else:
        size = group_size(config)
        if args.calibration:
            gptq(args.source, args.output, w4a16_scheme(size), args.calibration)
        else:
            data_free(args.source, args.output, w4a16_scheme(size))
    from importlib.metadata import version

    measured: dict[str, Any] = {"group_size": size, "perplexity": None, "reference": None, "tokens": None}
    measured["llmcompressor"] = version("llmcompressor")
    if args.eval_text:
        text = args.eval_text.read_text(encoding="utf-8")
        measured["reference"], _ = perplexity(args.source, text)
        measured["perplexity"], measured["tokens"] = perplexity(args.output, text)
    sys.stdout.write(json.dumps(measured) + "\n")  # the one line gpu_jobs/build.py reads


if __name__ == "__main__":
    main()
