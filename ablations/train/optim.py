"""AdamW with the paper's decay groups, and the warmup + cosine schedule as a LambdaLR."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ablations.train.config import TrainConfig
from ablations.train.plan import TrainPlan, lr_multiplier


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay every matrix and embedding (dim ≥ 2); never the 1-D norm weights (as HF's LLaMA recipe)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, plan: TrainPlan
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    on_cuda = all(p.is_cuda for p in model.parameters())
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=plan.peak_lr,
        betas=cfg.betas,
        eps=cfg.eps,
        fused=on_cuda or None,
    )
    schedule = partial(
        lr_multiplier, warmup_steps=plan.warmup_steps, total_steps=plan.steps, min_lr_ratio=cfg.min_lr_ratio
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
