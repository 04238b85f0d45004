"""Group-wise int4 weight-only quantization in the layout of GGUF's Q4_1.

Q4_1 stores each block of 32 consecutive weights of a row as 4-bit codes `q` with a scale `d` and a
minimum `m`: `w = d * q + m`. The quantizer below finds, per block, `m = min(w)` and
`d = (max(w) - m) / 15`, so weights that came from a Q4_1 file (every block reaches codes 0 and 15)
get their original codes back: the round trip is lossless up to the precision the scale and minimum
are stored in (bfloat16 here, which the matmul kernels take).

Stored form, per linear layer (a plain, documented layout in the safetensors shards):

- `qweight`: uint8 `[out, in / 2]`, two codes per byte, the even column in the high nibble;
- `scales`, `zeros`: bfloat16 `[out, in / group]`; `w = (q - 8) * scale + zero`, i.e.
  `scale = d`, `zero = m + 8 d` (the "float zero point" form of PyTorch's int4 matmul kernels).

At load the codes are repacked (bit moves, no arithmetic on weights) into the layout of the
device's kernel: `aten._weight_int4pack_mm_for_cpu` on the CPU, `aten._weight_int4pack_mm`
(tinygemm) on CUDA. Both take bfloat16 activations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

GROUP_SIZE = 32
KERNEL_GROUP_SIZES = (32, 64, 128, 256)


def quantize(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`weight` `[out, in]` → (`qweight` uint8 `[out, in/2]`, `scales`, `zeros` bf16 `[out, in/group]`)."""
    out_features, in_features = weight.shape
    if group_size not in KERNEL_GROUP_SIZES or in_features % group_size:
        raise ValueError(f"int4: in_features {in_features} is not a multiple of a group size in {KERNEL_GROUP_SIZES}")
    blocks = weight.detach().to(torch.float32).reshape(out_features, in_features // group_size, group_size)
    low = blocks.amin(dim=-1, keepdim=True)
    step = (blocks.amax(dim=-1, keepdim=True) - low) / 15
    safe = torch.where(step > 0, step, torch.ones_like(step))
    codes = torch.round((blocks - low) / safe).clamp_(0, 15).to(torch.uint8).reshape(out_features, in_features)
    qweight = (codes[:, ::2] << 4) | codes[:, 1::2]
    scales = step.reshape(out_features, -1)
    zeros = (low + 8 * step).reshape(out_features, -1)
    return qweight.contiguous(), scales.to(torch.bfloat16), zeros.to(torch.bfloat16)


def unpack(qweight: torch.Tensor) -> torch.Tensor:
    """uint8 `[out, in/2]` → int32 codes `[out, in]`."""
    codes = torch.stack([qweight >> 4, qweight & 0x0F], dim=-1)
    return codes.reshape(qweight.shape[0], -1).to(torch.int32)


def dequantize(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """The float32 weight the stored codes stand for (for tests and for checking losslessness)."""
    codes = unpack(qweight).to(torch.float32)
    out_features, in_features = codes.shape
    group = in_features // scales.shape[1]
    blocks = codes.reshape(out_features, -1, group)
    weight = (blocks - 8) * scales.float().unsqueeze(-1) + zeros.float().unsqueeze(-1)
    return weight.reshape(out_features, in_features)


class Int4Linear(nn.Module):
    """A linear layer whose weight is int4 codes with a bf16 scale and zero per group."""

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor

    def __init__(
        self, in_features: int, out_features: int, bias: bool, group_size: int = GROUP_SIZE, device: Any = None
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = in_features // group_size
        codes = torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device)
        self.register_buffer("qweight", codes)
        self.register_buffer("scales", torch.zeros(out_features, groups, dtype=torch.bfloat16, device=device))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.bfloat16, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device)) if bias else None
        self._packed: torch.Tensor | None = None
        self._scales_and_zeros: torch.Tensor | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = GROUP_SIZE) -> Int4Linear:
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size)
        qweight, scales, zeros = quantize(linear.weight, group_size)
        module.qweight.copy_(qweight)
        module.scales.copy_(scales)
        module.zeros.copy_(zeros)
        if linear.bias is not None and module.bias is not None:
            module.bias.data.copy_(linear.bias.data)
        return module

    def pack(self) -> None:
        """Repack the stored codes for the kernel of the device the module is on."""
        codes = unpack(self.qweight)
        if self.qweight.device.type == "cuda":
            tiles = next(t for t in (8, 4, 2) if self.in_features % (t * 16) == 0)
            nibbles = ((codes[:, ::2] << 4) | codes[:, 1::2]).to(torch.uint8)
            self._packed = torch.ops.aten._convert_weight_to_int4pack(nibbles.contiguous(), tiles)
        else:
            self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.contiguous(), 1)
        self._scales_and_zeros = torch.stack([self.scales, self.zeros], dim=-1).transpose(0, 1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is None:
            self.pack()
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()  # the kernels need it
        out: torch.Tensor
        if flat.device.type == "cuda":
            out = torch.ops.aten._weight_int4pack_mm(flat, self._packed, self.group_size, self._scales_and_zeros)
        else:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                flat, self._packed, self.group_size, self._scales_and_zeros
            )
        out = out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return out + self.bias.to(out.dtype) if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 group={self.group_size}"


def quantizable(name: str, module: Any, group_size: int = GROUP_SIZE) -> bool:
    """The decoder's linear layers; embeddings and the output head stay bf16 (as in most Q4 GGUFs)."""
    return (
        isinstance(module, nn.Linear)
        and ".layers." in f".{name}"
        and module.in_features % group_size == 0
        and module.out_features % 16 == 0  # the CPU kernel's tile
        and not name.endswith("lm_head")
    )


def replace_linears(
    model: Any, group_size: int = GROUP_SIZE, *, quantize_weights: bool, head: bool = False
) -> list[str]:
    """Swap every quantizable `nn.Linear` for an `Int4Linear` (quantizing it, or empty for loading).

    `head`: the output projection too. With tied embeddings it gets its own int4 copy (the input
    embedding stays bf16, a lookup costs nothing), and the config stops tying them: the head is a
    big matmul every token (49,152 x 576 on SmolLM2), the embedding is not."""
    names = [name for name, module in model.named_modules() if quantizable(name, module, group_size)]
    output = model.get_output_embeddings()
    if head and output is not None and output.in_features % group_size == 0 and output.out_features % 16 == 0:
        names.append("lm_head")
        model.config.tie_word_embeddings = False
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if quantize_weights:
            replacement = Int4Linear.from_linear(linear, group_size)
        else:
            # on the meta device: the shards' tensors are assigned to it when the artifact loads
            replacement = Int4Linear(
                linear.in_features, linear.out_features, linear.bias is not None, group_size, "meta"
            )
        setattr(parent, child, replacement)
    return names


def pack_all(model: Any) -> None:
    for module in model.modules():
        if isinstance(module, Int4Linear):
            module.pack()
