"""Per-GPU memory of a training run, in closed form, and the largest micro-batch that fits a device.

Parts: parameters, gradients, AdamW's two states (sharded across the world under FSDP, whole on every rank
under DDP, plus DDP's gradient buckets), the activations one micro-batch keeps for backward
(`ablations.model.activations`), and the loss's logits at their peak. Our parameters are fp32 under `bf16-mixed`
and `32-true` and the optimizer steps them in place, so there is no separate fp32 master copy; under
`bf16-true` parameters, gradients and AdamW states are all bf16 (torch's AdamW keeps states in the
parameters' dtype).

Torch-free: `python -m ablations.budget … device=h100_80gb` prints it, and `train.micro_batch_size=auto`
is resolved from it before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablations.model.activations import activation_bytes, logits_peak_bytes_per_token
from ablations.model.config import ModelConfig
from ablations.model.counts import count_params
from ablations.records.errors import ConfigError

GIB = 1024**3

DEVICES: dict[str, float] = {
    "h200_141gb": 141e9,
    "h100_80gb": 80 * GIB,
    "h100_94gb": 94 * GIB,
    "a100_80gb": 80 * GIB,
    "a100_40gb": 40 * GIB,
    "l40s_48gb": 48 * GIB,
    "a10g_24gb": 24 * GIB,
    "rtx4090_24gb": 24 * GIB,
    "cpu_64gb": 64 * GIB,
}
"""Memory capacity in bytes per device (as `torch.cuda.get_device_properties(...).total_memory` reports)."""

SAFETY_MARGIN = 0.9
"""Fraction of a device's memory the plan may fill: the rest is the CUDA context, the allocator's
fragmentation, NCCL buffers and the transient tensors the plan does not count."""
CHECKPOINTING_ORDER: tuple[str, ...] = ("none", "every_k", "full")
"""Least recompute first: `train.activation_checkpointing=auto` takes the first mode under which the
layout fits."""
FSDP_COMPUTE_PRECISION = {"bfloat16": "bf16-mixed", "float16": "16-mixed", "float32": "32-true"}
"""Under FSDP2 the mixed-precision policy's parameter dtype sets the compute dtype (fp32 sharded parameters,
like Lightning's `*-mixed`), whatever Lightning's own precision (`32-true`, no autocast on top)."""


def compute_precision(strategy: str, precision: str, fsdp_param_dtype: str) -> str:
    """The precision whose bytes a job's memory plan counts: Lightning's, or under FSDP2 with `32-true` the
    one its `fsdp_param_dtype` computes in."""
    if strategy == "fsdp" and precision == "32-true":
        return FSDP_COMPUTE_PRECISION[fsdp_param_dtype]
    return precision


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU of one training run, by part."""

    parameters: int
    gradients: int
    optimizer: int
    ddp_buckets: int
    activations: int
    """One micro-batch's saved tensors, including autocast's weight copies (with the configured checkpointing)."""
    activations_without_checkpointing: int
    activations_full_checkpointing: int
    logits: int
    """The loss's vocabulary-sized tensors at their peak (all tokens on the plain path, one chunk chunked)."""

    @property
    def total(self) -> int:
        return (
            self.parameters
            + self.gradients
            + self.optimizer
            + self.ddp_buckets
            + self.activations
            + self.logits
        )

    def rows(self) -> list[tuple[str, int]]:
        """(label, bytes) in the order a table shows them."""
        return [
            ("parameters", self.parameters),
            ("gradients", self.gradients),
            ("AdamW states (exp_avg, exp_avg_sq)", self.optimizer),
            ("DDP gradient buckets", self.ddp_buckets),
            ("activations (configured checkpointing)", self.activations),
            ("logits (peak)", self.logits),
            ("total", self.total),
            ("activations without checkpointing", self.activations_without_checkpointing),
            ("activations with full checkpointing", self.activations_full_checkpointing),
        ]


def memory_plan(
    model: ModelConfig,
    seq_len: int,
    micro_batch: int,
    world_size: int = 1,
    strategy: str = "ddp",
    precision: str = "bf16-mixed",
    checkpointing: str = "none",
    checkpoint_every: int = 2,
    loss_chunk_tokens: int | None = None,
) -> MemoryPlan:
    """Per-GPU bytes of training `model` on [micro_batch, seq_len] micro-batches."""
    param_bytes = 2 if precision.startswith("bf16-true") else 4
    compute_bytes = 4 if precision.startswith("32") else 2
    n_params = count_params(model).total
    shards = world_size if strategy == "fsdp" else 1
    tokens = micro_batch * seq_len

    def activations(mode: str) -> int:
        return activation_bytes(
            model,
            micro_batch,
            seq_len,
            compute_bytes,
            param_bytes,
            mode,
            checkpoint_every,
            chunked_loss=loss_chunk_tokens is not None,
        ).total

    logit_tokens = tokens if loss_chunk_tokens is None else min(tokens, loss_chunk_tokens)
    return MemoryPlan(
        parameters=param_bytes * n_params // shards,
        gradients=param_bytes * n_params // shards,
        optimizer=2 * param_bytes * n_params // shards,
        ddp_buckets=param_bytes * n_params if strategy in ("ddp", "ddp_spawn") and world_size > 1 else 0,
        activations=activations(checkpointing),
        activations_without_checkpointing=activations("none"),
        activations_full_checkpointing=activations("full"),
        logits=logit_tokens * logits_peak_bytes_per_token(model, compute_bytes),
    )


def device_capacity(device: str) -> float:
    """Bytes of a device of the `DEVICES` table; a clear error for a name it does not hold."""
    if device not in DEVICES:
        raise ConfigError("train config", [f"train.device={device!r} is not one of {sorted(DEVICES)}"])
    return DEVICES[device]


def largest_micro_batch(
    model: ModelConfig,
    seq_len: int,
    capacity_bytes: float,
    world_size: int = 1,
    strategy: str = "ddp",
    precision: str = "bf16-mixed",
    checkpointing: str = "none",
    checkpoint_every: int = 2,
    loss_chunk_tokens: int | None = None,
    limit: int = 4096,
) -> int:
    """The largest micro-batch (sequences) whose plan fills at most SAFETY_MARGIN of `capacity_bytes`.

    Raises ConfigError when not even one sequence fits, naming what would help.
    """

    def fits(micro_batch: int) -> bool:
        plan = memory_plan(
            model,
            seq_len,
            micro_batch,
            world_size,
            strategy,
            precision,
            checkpointing,
            checkpoint_every,
            loss_chunk_tokens,
        )
        return plan.total <= SAFETY_MARGIN * capacity_bytes

    if not fits(1):
        raise ConfigError(
            "train config",
            [
                f"micro_batch_size=auto: not even one sequence of {seq_len} tokens fits "
                f"{capacity_bytes / GIB:.1f} GiB (strategy {strategy}, {world_size} GPUs, checkpointing "
                f"{checkpointing}); try trainer=fsdp, train.activation_checkpointing=full or a shorter seq_len"
            ],
        )
    low, high = 1, limit  # memory grows with the micro-batch: bisect for the last one that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low
