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
    peak_lr: float
    warmup_steps: int
    tokens: int
    """Tokens the run will actually train on: steps × global batch (≥ the budget)."""


def plan_training(cfg: TrainConfig, world_size: int, model_max_seq_len: int) -> TrainPlan:
    """Steps = ceil(token budget / (micro-batch × world size × accumulation × seq_len)); LR scaled linearly."""
    seq_len = cfg.seq_len or model_max_seq_len
    if seq_len > model_max_seq_len:
        raise ConfigError(
            "train config", [f"train.seq_len ({seq_len}) exceeds model.max_seq_len ({model_max_seq_len})"]
        )
    sequences = cfg.micro_batch_size * world_size * cfg.grad_accum_steps
    batch_tokens = sequences * seq_len
    steps = math.ceil(cfg.tokens / batch_tokens)
    peak_lr = cfg.lr if cfg.lr is not None else cfg.base_lr * batch_tokens / cfg.base_lr_batch_tokens
    return TrainPlan(
        steps=steps,
        global_batch_sequences=sequences,
        global_batch_tokens=batch_tokens,
        seq_len=seq_len,
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
