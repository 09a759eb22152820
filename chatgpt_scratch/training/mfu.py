"""Model FLOPs utilization: the share of the GPU's peak that the training step turns into model math.

FLOPs per trained token (PaLM, appendix B): 6·N for the matmuls of forward + backward over the
N weights, plus 12·L·d·T for attention's QKᵀ and A·V (L layers, width d, context T). N leaves out
the position embedding (a lookup, no matmul). Pure arithmetic; no torch import.
"""

from __future__ import annotations

# Dense bf16 tensor-core peak per GPU (FLOP/s, no sparsity), matched by substring of the device name.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)


def flops_per_token(n_params: int, n_layers: int, emb_dim: int, context: int) -> float:
    """6·N + 12·L·d·T: training FLOPs (forward + backward) per token."""
    return 6.0 * n_params + 12.0 * n_layers * emb_dim * context


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s for a known GPU name (e.g. 'NVIDIA H100 80GB HBM3'); None when unknown."""
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name.upper():
            return flops
    return None


def mfu(flops_per_tok: float, tokens_per_s: float, peak: float) -> float:
    """Achieved model FLOP/s over the peak (0.4 = 40%). tokens_per_s and peak must cover the same GPUs."""
    return flops_per_tok * tokens_per_s / peak
