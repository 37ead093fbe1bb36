"""The arithmetic of a run: token budget → steps, global batch and peak LR; the LR schedule.

Torch-free: the plan of a run is computed and validated before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablations.records.errors import ConfigError
from ablations.train.config import TrainConfig


@dataclass(frozen=True)
class TrainPlan:
    """The concrete numbers of one run, derived from TrainConfig, the world size and the sequence length."""

    steps: int
    global_batch_sequences: int
    global_batch_tokens: int
    seq_len: int
    micro_batch_size: int
    activation_checkpointing: str
    """The checkpointing mode trained with (`auto` resolved by the memory plan)."""
    world_size: int
    grad_accum_steps: int
    """Micro-batches per optimizer step on each device: global batch / (micro-batch × world size)."""
    peak_lr: float
    warmup_steps: int
    tokens: int
    """Tokens the run will actually train on: steps × global batch (≥ the budget)."""


def grad_accumulation(cfg: TrainConfig, world_size: int) -> int:
    """Accumulation steps: global batch / (micro-batch × world size) when `global_batch_size` fixes the
    global batch (refusing a remainder), else `grad_accum_steps`."""
    if cfg.global_batch_size is None:
        return cfg.grad_accum_steps
    per_step = cfg.micro_batch_size * world_size
    if cfg.global_batch_size % per_step:
        raise ConfigError(
            "train config",
            [
                f"train.global_batch_size={cfg.global_batch_size} is not a multiple of train.micro_batch_size "
                f"({cfg.micro_batch_size}) × world size ({world_size}) = {per_step}: pick a micro-batch or a "
                "GPU count that divides it"
            ],
        )
    return cfg.global_batch_size // per_step


def plan_training(cfg: TrainConfig, world_size: int, model_max_seq_len: int) -> TrainPlan:
    """Steps = ceil(token budget / (global batch × seq_len)); LR scaled linearly with the global batch.

    The global batch is `global_batch_size` when set (then steps and LR do not depend on the world size;
    accumulation fills the gap), else micro-batch × world size × accumulation.
    """
    seq_len = cfg.seq_len or model_max_seq_len
    if seq_len > model_max_seq_len:
        raise ConfigError(
            "train config", [f"train.seq_len ({seq_len}) exceeds model.max_seq_len ({model_max_seq_len})"]
        )
    accumulation = grad_accumulation(cfg, world_size)
    sequences = cfg.micro_batch_size * world_size * accumulation
    batch_tokens = sequences * seq_len
    steps = math.ceil(cfg.tokens / batch_tokens)
    peak_lr = cfg.lr if cfg.lr is not None else cfg.base_lr * batch_tokens / cfg.base_lr_batch_tokens
    return TrainPlan(
        steps=steps,
        global_batch_sequences=sequences,
        global_batch_tokens=batch_tokens,
        seq_len=seq_len,
        micro_batch_size=cfg.micro_batch_size,
        activation_checkpointing=cfg.activation_checkpointing,
        world_size=world_size,
        grad_accum_steps=accumulation,
        peak_lr=peak_lr,
        warmup_steps=cfg.warmup_steps,
        tokens=steps * batch_tokens,
    )


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR / peak at optimizer step `step` (0-based): linear warmup, then cosine from 1 to min_lr_ratio.

    Past `total_steps` it stays at min_lr_ratio, as in MobileLLM's scheduler.
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + 0.5 * (1.0 - min_lr_ratio) * (1.0 + math.cos(math.pi * progress))
