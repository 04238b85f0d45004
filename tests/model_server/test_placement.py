"""Shards spread over 1, 2, 4 and 8 GPUs, computed on the meta device (no GPU needed)."""

from __future__ import annotations

import pytest

from gpu_jobs.placement import bytes_per_device, plan_device_map


@pytest.fixture(scope="module")
def config() -> object:
    from transformers import LlamaConfig

    # SmolLM2-135M's shape: 30 decoder layers of 576 wide, tied embeddings
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_placement_uses_every_gpu_and_is_balanced(config: object, devices: int) -> None:
    device_map = plan_device_map(config, devices)

    assert set(device_map.values()) == set(range(devices))
    load = bytes_per_device(config, device_map)
    assert sum(load.values()) == 2 * 134_515_008  # every bf16 weight placed exactly once
    embeddings, layer = 2 * 49152 * 576, 2 * 3_540_096
    # whole layers only: no device holds more than an even share plus one layer (or the tied embeddings)
    assert max(load.values()) <= max(embeddings, 2 * 134_515_008 / devices + layer)
