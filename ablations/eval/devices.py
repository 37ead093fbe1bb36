"""Where and in what precision evaluation runs, and how its ranks talk (lm-eval's data-parallel hooks).

`eval.device=auto` is the training accelerator: the job passes its `trainer.accelerator` (`gpu` → this
rank's CUDA device, `auto` → CUDA when present, `cpu` → CPU); a standalone evaluation takes CUDA when
present. On a GPU the weights are bf16 (log-softmax stays fp32 in the adapter); on the CPU fp32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def resolve_device(device: str, accelerator: str | None = None) -> torch.device:
    """The torch device of `eval.device`, given the training job's accelerator (None outside a job)."""
    if device != "auto":
        return torch.device(device)
    if accelerator == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def eval_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights on an accelerator, fp32 on the CPU (where bf16 matmuls are slow and inexact)."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def distributed() -> bool:
    """Whether this process is one rank of an initialised process group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if distributed() else (0, 1)


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor`, concatenated along a new first dimension (lm-eval's `LM.all_gather`)."""
    if not distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def gather_object(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's `obj` as a list on `dst`, None elsewhere (lm-eval's `LM.gather_object`)."""
    if not distributed():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def barrier() -> None:
    if distributed():
        dist.barrier()
