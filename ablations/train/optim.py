"""AdamW with the paper's decay groups, the warmup + cosine schedule as a LambdaLR, and gradient clipping
that works on sharded (DTensor) gradients."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from ablations.model.architecture import Norm
from ablations.train.config import TrainConfig
from ablations.train.plan import TrainPlan, lr_multiplier


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameters that never decay, by role: every parameter of a norm layer, and every bias."""
    names = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, Norm)
        for name, _ in module.named_parameters(recurse=False)
    }
    return names | {name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay every matrix and embedding; never norm weights or biases (as HF's LLaMA recipe).

    Chosen by name and module role, not by shape: under FSDP2 the parameters are sharded DTensors but keep
    their names and modules, whereas a flattened shard no longer shows whether it was a matrix.
    """
    skip = no_decay_names(model)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for name, p in named if name not in skip], "weight_decay": weight_decay},
        {"params": [p for name, p in named if name in skip], "weight_decay": 0.0},
    ]


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float) -> Tensor:
    """Clip the global gradient norm to `max_norm` (0 = no clipping) and return the norm before clipping.

    As torchtitan: the total norm of sharded gradients is a DTensor; `full_tensor()` reduces it over the
    shards, so every rank clips by the same global norm. The returned tensor stays on the device.
    """
    with_grad = [p for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in with_grad], norm_type=2.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(with_grad, max_norm, norm)
    return norm


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, plan: TrainPlan
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    on_cuda = all(p.device.type == "cuda" for p in model.parameters())
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
