"""DeviceConfig: how a model is exported to an ExecuTorch program and measured (the job's `device` group and
the arguments of `python -m ablations.device`). Torch-free: a job checks it before anything is built."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ablations.records.errors import ConfigError

QUANT_NAMES: tuple[str, ...] = ("none", "8da4w", "w8a8")
"""The quantization recipes (`ablations.device.quantize.QUANT_RECIPES` has exactly these keys)."""
REQUIRED_MODULES: tuple[str, ...] = ("executorch", "torchao")
INSTALL_HINT = 'pip install -e ".[device]"'
COUNTS: tuple[str, ...] = ("threads", "max_seq_len", "prompt_tokens", "iterations", "val_windows")


@dataclass
class DeviceConfig:
    """One on-device measurement: the program's shape and quantization, and the benchmark protocol."""

    enabled: bool = False
    """Run the job's device stage after evaluation (export, measure, the record's `device` block)."""
    quant: str = "none"
    """Quantization recipe of the program: `none` (fp32), `8da4w` (8-bit dynamic activations, 4-bit grouped
    weights) or `w8a8` (8-bit per-channel weights, 8-bit per-token activations)."""
    threads: int = 1
    """CPU threads the XNNPACK backend runs on (recorded: latency depends on it)."""
    max_seq_len: int = 256
    """KV-cache capacity of the program: prompt and generated tokens together; one forward takes at most
    max_seq_len - 1 tokens."""
    prompt_tokens: int = 128
    """Tokens in the timed prefill (and the position of the timed decode step); < max_seq_len."""
    warmup: int = 10
    """Untimed runs before the timed ones (ExecuTorch's benchmark apps: 10)."""
    iterations: int = 50
    """Timed runs of prefill and of decode each (ExecuTorch's benchmark apps and the paper's Table 7: 50)."""
    val_windows: int = 4
    """Validation windows (max_seq_len tokens each) scored in fp32 eager and through the quantized program,
    for the quantization's val-loss change (only with quant != none and a validation split)."""

    def __post_init__(self) -> None:
        problems = self.violations()
        if problems:
            raise ConfigError("device config", problems)

    def violations(self) -> list[str]:
        """Every rule the config breaks, each naming the key and its value."""
        v: list[str] = []
        if self.quant not in QUANT_NAMES:
            v.append(f"quant={self.quant!r}: must be one of {QUANT_NAMES}")
        for name in COUNTS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                v.append(f"{name}={value!r}: must be a positive integer")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            v.append(f"warmup={self.warmup!r}: must be an integer >= 0")
        counts_valid = not any(s.startswith(("max_seq_len=", "prompt_tokens=")) for s in v)
        if counts_valid and self.prompt_tokens >= self.max_seq_len:
            v.append(
                f"prompt_tokens={self.prompt_tokens}: must be < max_seq_len={self.max_seq_len} "
                "(the timed decode step needs a free cache slot after the prompt)"
            )
        return v


def missing_dependency() -> str | None:
    """Why the device stage cannot run here (executorch or torchao not installed, naming the extra to
    install), or None. Checked without importing either (a job checks it before training)."""
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed: install the device extra ({INSTALL_HINT})"
