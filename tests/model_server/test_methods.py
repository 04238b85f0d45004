"""Every build method on the tiny model: int4 (Q4_1 layout), pruning, and the artifact they make."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from gpu_jobs import int4  # noqa: E402
from gpu_jobs.artifact import verify  # noqa: E402
from gpu_jobs.build import BuildRequest, build  # noqa: E402
from gpu_jobs.engine.base import GenerationRequest  # noqa: E402
from gpu_jobs.loader import load_engine  # noqa: E402
from gpu_jobs.prune import is_2_4, pruned_layers  # noqa: E402
from gpu_jobs.settings import ServerSettings  # noqa: E402
from stratus.cli import main  # noqa: E402


def q4_1_weight(rows: int, columns: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights as a GGUF Q4_1 file holds them: per block of 32, codes 0..15 (both ends used), w = d*q + m."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (rows, columns // 32, 32), generator=generator)
    codes[..., 0], codes[..., 1] = 0, 15
    scale = torch.rand(rows, columns // 32, 1, generator=generator) * 0.01 + 0.001
    low = (torch.rand(rows, columns // 32, 1, generator=generator) - 0.5) * 0.1
    return (codes * scale + low).reshape(rows, columns), codes.reshape(rows, columns)


def test_int4_recovers_the_codes_of_q4_1_weights_exactly() -> None:
    weight, codes = q4_1_weight(64, 256)
    qweight, scales, zeros = int4.quantize(weight)
    assert qweight.dtype == torch.uint8 and qweight.shape == (64, 128)
    assert torch.equal(int4.unpack(qweight), codes.to(torch.int32))
    # the only loss is the bf16 storage of scale and zero (the kernels' format): within its rounding
    error = (int4.dequantize(qweight, scales, zeros) - weight).abs().reshape(64, -1, 32)
    bound = (8 * scales.float() + zeros.float().abs()) * 2**-8
    assert (error <= bound.unsqueeze(-1)).all()


def test_int4_linear_computes_with_the_dequantized_weight() -> None:
    linear = torch.nn.Linear(128, 48, bias=True)
    module = int4.Int4Linear.from_linear(linear)
    x = torch.randn(3, 5, 128)
    expected = torch.nn.functional.linear(
        x, int4.dequantize(module.qweight, module.scales, module.zeros), linear.bias.detach()
    )
    assert torch.allclose(module(x).float(), expected, atol=0.05, rtol=0.02)


def test_an_int4_artifact_is_a_third_the_size_and_serves_what_it_stores(tiny_source: Path, tmp_path: Path) -> None:
    bf16 = build(BuildRequest(source=tiny_source, output=tmp_path / "bf16", method="bf16", model_name="tiny"))
    packed = build(BuildRequest(source=tiny_source, output=tmp_path / "int4", method="int4", model_name="tiny"))

    assert (packed.method, packed.bits, packed.group_size) == ("int4", 4, 32)
    assert packed.total_bytes < 0.6 * bf16.total_bytes
    assert verify(tmp_path / "int4").shards == packed.shards
    ppl, reference = packed.perplexity.value, packed.perplexity.reference  # type: ignore[union-attr]
    assert reference is not None and abs(ppl - reference) / reference < 0.05
    stored = {}
    for shard in packed.shards:
        stored.update(load_file(tmp_path / "int4" / shard.file))
    assert stored["model.layers.0.mlp.down_proj.qweight"].dtype == torch.uint8

    engine = load_engine(tmp_path / "int4", ServerSettings.from_environment({}))
    down = engine._model.get_submodule("model.layers.0.mlp.down_proj")
    assert torch.equal(down.qweight, stored["model.layers.0.mlp.down_proj.qweight"])  # mapped, not re-quantized
    first, second = engine.generate(
        [
            GenerationRequest(prompt="one two three", max_tokens=4, temperature=0),
            GenerationRequest(prompt="the quick brown fox", max_tokens=6, temperature=0),
        ]
    )
    assert first.error is None and first.completion_tokens == 4 and first.finish_reason == "length"
    assert second.error is None and second.completion_tokens == 6


def test_2_4_pruning_leaves_two_zeros_in_every_four(tiny_source: Path, tmp_path: Path) -> None:
    manifest = build(BuildRequest(source=tiny_source, output=tmp_path / "p24", method="prune-2:4", model_name="tiny"))

    assert manifest.sparsity == pytest.approx(0.5, abs=0.01)
    engine = load_engine(tmp_path / "p24", ServerSettings.from_environment({}))
    layers = pruned_layers(engine._model)
    assert len(layers) == 2 * 7  # q, k, v, o, gate, up, down in each of the two layers
    assert all(is_2_4(layer.weight) for layer in layers)
    assert float(engine._model.get_input_embeddings().weight.eq(0).float().mean()) < 0.01  # not pruned
    (result,) = engine.generate([GenerationRequest(prompt="one two", max_tokens=3, temperature=0)])
    assert result.error is None


def test_unstructured_pruning_reaches_the_sparsity_asked_for(tiny_source: Path, tmp_path: Path) -> None:
    output = tmp_path / "p30"
    result = CliRunner().invoke(
        main,
        [
            "model",
            "build",
            "--source",
            str(tiny_source),
            "--method",
            "prune-unstructured",
            "--sparsity",
            "0.3",
            "--output",
            str(output),
            "--name",
            "tiny",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = verify(output)
    assert manifest.method == "prune-unstructured" and manifest.sparsity == pytest.approx(0.3, abs=0.001)
    assert "perplexity" in result.output
    weights = load_file(output / manifest.shards[0].file)
    gate = weights["model.layers.1.mlp.gate_proj.weight"]
    assert float((gate == 0).float().mean()) == pytest.approx(0.3, abs=0.001)


def test_int4_can_quantize_the_output_head_too(tiny_source: Path, tmp_path: Path) -> None:
    build(BuildRequest(source=tiny_source, output=tmp_path / "h", method="int4", model_name="tiny", int4_head=True))

    engine = load_engine(tmp_path / "h", ServerSettings.from_environment({}))
    assert isinstance(engine._model.get_output_embeddings(), int4.Int4Linear)
    assert engine._model.get_input_embeddings().weight.dtype == torch.bfloat16  # the lookup stays bf16
    results = engine.generate(  # two prompts of different lengths: a padded prefill through the int4 head
        [
            GenerationRequest(prompt="one two", max_tokens=3, temperature=0),
            GenerationRequest(prompt="the quick brown fox jumps", max_tokens=3, temperature=0),
        ]
    )
    assert [(r.error, r.completion_tokens) for r in results] == [(None, 3), (None, 3)]
