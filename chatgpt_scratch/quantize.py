"""Weight-only quantized Linear layers for CPU decoding: int8 per output row, int4 per group of inputs.

Decoding one token at a time is a chain of matrix-vector products, so its speed is the speed at which
the weights stream from memory. Storing them in 8 or 4 bits moves a quarter or an eighth of float32's
bytes; the activations stay in the model's float dtype, and PyTorch's CPU kernels multiply by the
packed weights directly (`torch._weight_int8pack_mm`, `torch._weight_int4pack_mm_for_cpu`), without
ever making a float copy of the matrix.

- int8: w ≈ q·s, q in [-127, 127], one scale s per output row (symmetric, as llama.cpp's q8_0 but
  per row instead of per block of 32).
- int4: w ≈ (q - 8)·s + z per group of `group_size` consecutive inputs of a row, q in [0, 15]
  (asymmetric: s and z from the group's min and max). Groups of 32 are llama.cpp's q4 block size.

TransposedLinear and OneDNNLinear are not quantized: the same float weight, stored (in, out) or multiplied by
oneDNN's kernel, which some CPUs run one token through faster than nn.Linear (usecases.inference.fast_cpu_linears
picks per shape by timing them).

`quantize_linears(model, bits)` swaps every nn.Linear of a GPTModel (attention, feed-forward and the
output head) in place; embeddings, norms and biases keep their dtype. Inference only.
"""

from __future__ import annotations

import torch
from torch import nn

INT4_GROUP_SIZES = (32, 64, 128, 256)


class TransposedLinear(nn.Module):
    """nn.Linear with its weight stored transposed and contiguous, (in, out): y = x·Wᵀ + b as addmm(b, x, Wᵀ).

    The same numbers as the Linear it replaces. At batch 1 a decode step is one matrix-vector product
    per layer, and PyTorch's CPU kernel for x·Wᵀ with W stored (out, in) streams the rows of W as
    many short dot products; with Wᵀ stored row-major it runs long vector updates instead, several
    times faster for wide outputs on some CPUs (the vocabulary head: 50,257 outputs).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight_t", weight.detach().t().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.in_features, self.out_features = self.weight_t.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        out = rows @ self.weight_t if self.bias is None else torch.addmm(self.bias, rows, self.weight_t)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight stored transposed"


# oneDNN's linear (what torch.compile's CPU backend calls for a Linear); a private op, so None if absent.
ONEDNN_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None) \
    if torch.backends.mkldnn.is_available() else None


class OneDNNLinear(nn.Module):
    """nn.Linear computed by oneDNN's linear kernel, with the same weight tensor (shared, not copied: a tied
    head stays tied). On some CPUs PyTorch's float32 Linear goes to an MKL matrix-vector kernel that reads
    memory at half the speed oneDNN's does at batch 1."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if ONEDNN_LINEAR is None:
            raise RuntimeError("this PyTorch build has no oneDNN linear (torch.ops.mkldnn._linear_pointwise)")
        self.weight = nn.Parameter(weight.detach(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.out_features, self.in_features = self.weight.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ONEDNN_LINEAR(x, self.weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN"


def int8_per_row(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8, scales float32) with weight (out, in) ≈ q·scales[:, None]: symmetric, one scale per output row."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    return torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8), scales


class Int8Linear(nn.Module):
    """nn.Linear with its weight stored as int8 per output row (weight-only: activations stay float)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight_int8, scales = int8_per_row(linear.weight)  # (out, in), (out,)
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def dequantized(self) -> torch.Tensor:
        """The float32 weight this layer multiplies by (out, in)."""
        return self.weight_int8.float() * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # the kernel takes a matrix (n, in)
        out = torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.scales.to(x.dtype))
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per row"


class Int4Linear(nn.Module):
    """nn.Linear with its weight stored as 4-bit integers, a scale and a zero point per group of inputs."""

    def __init__(self, linear: nn.Linear, group_size: int = 32):
        super().__init__()
        if group_size not in INT4_GROUP_SIZES:
            raise ValueError(f"group_size must be one of {INT4_GROUP_SIZES}, got {group_size}")
        out_f, in_f = linear.weight.shape
        if in_f % group_size:
            raise ValueError(f"in_features {in_f} is not a multiple of the group size {group_size}")
        padded = -(-out_f // 16) * 16  # the kernel packs rows in tiles of 16: pad with zero rows, cut them off after
        w = torch.zeros(padded, in_f)
        w[:out_f] = linear.weight.detach().float()
        w = w.view(padded, in_f // group_size, group_size)
        low, high = w.amin(dim=-1, keepdim=True), w.amax(dim=-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-8)  # (out, groups, 1)
        q = torch.round((w - low) / scale).clamp(0, 15).view(padded, in_f).to(torch.int32)
        zero = low + 8 * scale  # the kernel computes (q - 8)·scale + zero
        # (groups, out, 2): [scale, zero] per group and output row, the layout the kernel reads
        scales_and_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("weight_int4", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("_q", q.to(torch.uint8), persistent=False)  # for dequantized() only
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features, self.group_size = in_f, out_f, group_size

    def dequantized(self) -> torch.Tensor:
        """The float32 weight this layer multiplies by (out, in)."""
        scale, zero = self.scales_and_zeros.transpose(0, 1).unbind(-1)  # (padded out, groups) each
        q = self._q.float().view(len(self._q), -1, self.group_size)
        w = ((q - 8) * scale[..., None] + zero[..., None]).view(len(self._q), self.in_features)
        return w[:self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight_int4, self.group_size,
                                                         self.scales_and_zeros.to(x.dtype))
        if out.shape[-1] != self.out_features:
            out = out[:, :self.out_features]
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 groups of {self.group_size}"


def quantize_linears(model: nn.Module, bits: int = 8, group_size: int = 32) -> nn.Module:
    """Replace every nn.Linear in `model` (in place) by its int8 or int4 weight-only version; returns model."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child) if bits == 8 else Int4Linear(child, group_size))
    return model
