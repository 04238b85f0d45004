"""An 8B model builds W4A16 within 24 GB: a random checkpoint of Llama-3.1-8B's shape (no download),
then `stratus model build --method w4a16 --no-quality` on it, with the build's wall time and peak RSS.

The checkpoint is written one shard (two decoder layers) at a time, so making it needs about one
shard of memory; the build reads it shard by shard (`gpu_jobs/quantize.py`, llmcompressor's
`model_free_ptq`). Perplexity is skipped: a random model's means nothing, and measuring it would load
the whole model. Needs about 16 GB of disk for the source and 11 GB for the artifact and its archive.

    .venv/bin/python bench/build_8b_shape.py [--scratch /work/scratch-8b] [--layers 32]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HIDDEN, INTERMEDIATE, VOCAB, HEADS, KV_HEADS, HEAD_DIM = 4096, 14336, 128256, 32, 8, 128  # Llama-3.1-8B


def make_checkpoint(directory: Path, layers: int, per_shard: int = 2) -> int:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    directory.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        vocab_size=VOCAB,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=128000,
        eos_token_id=128001,
    )
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(directory)
    generator = torch.Generator().manual_seed(0)

    def random(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * 0.02).to(torch.bfloat16)

    def layer(i: int) -> dict[str, torch.Tensor]:
        p = f"model.layers.{i}."
        ones = torch.ones(HIDDEN, dtype=torch.bfloat16)
        return {
            p + "self_attn.q_proj.weight": random(HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.k_proj.weight": random(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.v_proj.weight": random(KV_HEADS * HEAD_DIM, HIDDEN),
            p + "self_attn.o_proj.weight": random(HIDDEN, HEADS * HEAD_DIM),
            p + "mlp.gate_proj.weight": random(INTERMEDIATE, HIDDEN),
            p + "mlp.up_proj.weight": random(INTERMEDIATE, HIDDEN),
            p + "mlp.down_proj.weight": random(HIDDEN, INTERMEDIATE),
            p + "input_layernorm.weight": ones,
            p + "post_attention_layernorm.weight": ones.clone(),
        }

    groups = [list(range(start, min(start + per_shard, layers))) for start in range(0, layers, per_shard)]
    weight_map, total = {}, 0
    for k, group in enumerate(groups):
        tensors: dict[str, torch.Tensor] = {}
        if k == 0:
            tensors["model.embed_tokens.weight"] = random(VOCAB, HIDDEN)
        for i in group:
            tensors.update(layer(i))
        if k == len(groups) - 1:
            tensors["model.norm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
            tensors["lm_head.weight"] = random(VOCAB, HIDDEN)
        name = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file(tensors, str(directory / name), metadata={"format": "pt"})
        for key, tensor in tensors.items():
            weight_map[key] = name
            total += tensor.nbytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch", type=Path, default=REPO / ".stratus" / "scratch-8b")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "out" / "build_8b_shape.json")
    args = parser.parse_args()
    source, artifact = args.scratch / "source", args.scratch / "artifact"
    shutil.rmtree(args.scratch, ignore_errors=True)
    started = time.monotonic()
    source_bytes = make_checkpoint(source, args.layers)
    made = time.monotonic() - started
    print(f"random checkpoint: {source_bytes / 1e9:.2f} GB of bf16 weights in {made:.0f} s", flush=True)
    command = [
        "/usr/bin/time",
        "-v",
        str(REPO / ".venv" / "bin" / "stratus"),
        "model",
        "build",
        "--source",
        str(source),
    ]
    command += ["--method", "w4a16", "--no-quality", "--name", "llama-3.1-8b-shape", "--output", str(artifact)]
    started = time.monotonic()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.monotonic() - started
    (peak_kb,) = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    manifest = json.loads((artifact / "manifest.json").read_text())
    result = {
        "layers": args.layers,
        "source_gb": round(source_bytes / 1e9, 2),
        "artifact_gb": round(manifest["total_bytes"] / 1e9, 2),
        "build_wall_s": round(wall, 1),
        "peak_rss_gib": round(int(peak_kb) / 2**20, 2),
        "group_size": manifest["group_size"],
    }
    print(json.dumps(result), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
