"""Magnitude pruning of the decoder's linear layers, applied at build time.

- unstructured: in every decoder linear layer, the `sparsity` fraction of weights with the smallest
  magnitude become zero (exactly that many per layer);
- 2:4 semi-structured: in every run of 4 consecutive weights along a row, the 2 smallest become
  zero (50 %, the pattern sparse tensor cores accelerate).

The artifact stays dense bf16: the zeros shrink `model.tar.gz` (they compress) but not the shards,
and no kernel here skips them. The manifest states the measured sparsity of the pruned layers.
Embeddings and the output head are not pruned (same selection as int4).
"""

from __future__ import annotations

from typing import Any

from gpu_jobs.int4 import quantizable


def pruned_layers(model: Any) -> list[Any]:
    return [module for name, module in model.named_modules() if quantizable(name, module, group_size=4)]


def prune_unstructured(model: Any, sparsity: float) -> float:
    """Zero the smallest-magnitude `sparsity` fraction of each decoder linear weight; the measured sparsity."""
    import torch

    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be between 0 and 1, got {sparsity}")
    with torch.no_grad():
        for layer in pruned_layers(model):
            weight = layer.weight
            count = round(weight.numel() * sparsity)
            smallest = torch.topk(weight.abs().flatten(), count, largest=False).indices
            weight.view(-1)[smallest] = 0
    return measured_sparsity(model)


def prune_2_4(model: Any) -> float:
    """In every group of 4 consecutive weights of a row, zero the 2 of smallest magnitude."""
    import torch

    with torch.no_grad():
        for layer in pruned_layers(model):
            weight = layer.weight
            groups = weight.view(weight.shape[0], -1, 4)
            smallest = torch.topk(groups.abs(), 2, dim=-1, largest=False).indices
            groups.scatter_(-1, smallest, 0.0)
    return measured_sparsity(model)


def measured_sparsity(model: Any) -> float:
    layers = pruned_layers(model)
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    total = sum(layer.weight.numel() for layer in layers)
    return zeros / total if total else 0.0


def is_2_4(weight: Any) -> bool:
    """Every group of 4 consecutive weights along a row has at least 2 zeros."""
    groups = weight.reshape(weight.shape[0], -1, 4)
    return bool(((groups == 0).sum(dim=-1) >= 2).all())
