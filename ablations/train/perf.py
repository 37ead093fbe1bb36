"""Throughput and model-FLOP utilisation (MFU): one formula, one peak table.

MFU = tokens/s · flops_per_token(cfg, seq) / (world_size · peak FLOP/s per device), where
flops_per_token is `ablations.budget.flops_per_token` (6·N_matmul + 12·L_applied·q_dim·seq; shared blocks
counted per application). Peaks are dense bf16 tensor-core numbers from the vendors' data sheets.
"""

from __future__ import annotations

# name fragment (lower case, most specific first) → dense bf16 peak TFLOP/s per device
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h200", 989.0),
    ("gh200", 989.0),
    ("h100 nvl", 835.0),
    ("h100 pcie", 756.0),
    ("h100", 989.0),  # SXM
    ("a100", 312.0),
    ("l40s", 362.0),
    ("a10g", 70.0),
)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a device from its name (e.g. "NVIDIA H100 80GB HBM3" → 989), None if unknown."""
    name = device_name.lower()
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment in name:
            return tflops
    return None


def mfu(
    tokens_per_s: float, flops_per_token: int, world_size: int, peak_tflops_per_device: float | None
) -> float | None:
    """Achieved / peak FLOP/s over all devices; None when the peak is unknown (e.g. CPU)."""
    if not peak_tflops_per_device:
        return None
    return tokens_per_s * flops_per_token / (world_size * peak_tflops_per_device * 1e12)
