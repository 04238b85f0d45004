"""Where each layer goes on a multi-GPU instance: accelerate's balanced device map, computed on the
meta device so that it can be checked (and tested) without a single GPU.

Weights are spread so that every device holds about the same number of bytes; decoder layers are
never split. For scale: a 7B model in bf16 is ~14 GB of weights (one 24 GB A10G, with room for
the KV cache; int8 ~7 GB, int4 ~4 GB); a 70B model is ~140 GB in bf16, so it needs 8 × 24 GB
(ml.g5.48xlarge, 192 GB) with int8 or int4 weights, or 4+ × 80 GB for bf16 — and past ~2 GPUs,
tensor parallelism (vLLM/TGI-style) beats accelerate's layer-by-layer pipeline on latency.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def _meta_model(config: Any, dtype: Any) -> Any:
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
    model.tie_weights()
    return model


def plan_device_map(config: Any, num_devices: int, dtype: Any = None) -> dict[str, int]:
    """A device map for `num_devices` GPUs, balanced by memory; nothing on CPU or disk.

    The decoder is cut into contiguous runs of whole layers (a pipeline: activations cross a device
    boundary only between runs) so that the fullest device holds as little as possible (an exact
    linear partition). Tied embeddings and the output head stay together on the first device.
    """
    import torch
    from accelerate.utils import compute_module_sizes

    dtype = dtype or torch.bfloat16
    model = _meta_model(config, dtype)
    sizes = compute_module_sizes(model, dtype=dtype)
    base = model.base_model_prefix
    layers = [f"{base}.layers.{i}" for i in range(int(config.num_hidden_layers))]
    order = [f"{base}.embed_tokens", *layers, f"{base}.norm", f"{base}.rotary_emb"]
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if not tied:
        order.append("lm_head")
    weights = [sizes.get(name, 0) for name in order]
    if tied:
        weights[0] += sizes.get("lm_head", 0) if "lm_head" in sizes and sizes["lm_head"] != weights[0] else 0
    groups = linear_partition(weights, min(num_devices, len(order)))
    device_map = {name: device for device, group in enumerate(groups) for name in (order[i] for i in group)}
    if tied:
        device_map["lm_head"] = device_map[f"{base}.embed_tokens"]
    return device_map


def bytes_per_device(config: Any, device_map: dict[str, int], dtype: Any = None) -> dict[int, int]:
    import torch

    model = _meta_model(config, dtype or torch.bfloat16)
    load: Counter[int] = Counter()
    for name, parameter in model.named_parameters():
        owner = max(
            (prefix for prefix in device_map if name == prefix or name.startswith(prefix + ".")), key=len, default=""
        )
        load[device_map[owner] if owner else device_map.get("", 0)] += parameter.numel() * parameter.element_size()
    return dict(load)


def linear_partition(weights: list[int], parts: int) -> list[list[int]]:
    """Split indices 0..n-1 into `parts` non-empty contiguous groups: the largest sum as small as
    possible, and among those the most even split."""
    n = len(weights)
    prefix = [0]
    for weight in weights:
        prefix.append(prefix[-1] + weight)
    inf = (float("inf"), float("inf"))
    # cost = (largest group, sum of squared group sizes): minimax first, then as even as possible
    best: list[list[tuple[float, float]]] = [[inf] * (parts + 1) for _ in range(n + 1)]
    cut = [[0] * (parts + 1) for _ in range(n + 1)]
    best[0][0] = (0, 0)
    for end in range(1, n + 1):
        for k in range(1, min(parts, end) + 1):
            for start in range(k - 1, end):
                group = prefix[end] - prefix[start]
                previous = best[start][k - 1]
                cost = (max(previous[0], group), previous[1] + group * group)
                if cost < best[end][k]:
                    best[end][k], cut[end][k] = cost, start
    groups: list[list[int]] = []
    end = n
    for k in range(parts, 0, -1):
        start = cut[end][k]
        groups.append(list(range(start, end)))
        end = start
    return groups[::-1]
