"""The dry run of a job (`plan_only=true`): the plan as a table of numbers, before data or model exist.

One function builds the rows, one prints them; the memory rows say what the plan was checked against.
"""

from __future__ import annotations

import torch

from ablations.job.config import JobConfig
from ablations.train.memory_plan import GIB
from ablations.train.micro_batch import MemoryLayout
from ablations.train.perf import peak_tflops
from ablations.train.plan import TrainPlan

REFERENCE_DEVICE = "NVIDIA H100 80GB HBM3"  # the peak the estimate assumes when no GPU is visible


def device_peak(peak_override: float | None) -> tuple[float, str]:
    """(dense bf16 peak TFLOP/s per device, where the number comes from) for the time estimate."""
    if peak_override:
        return peak_override, "train.peak_tflops"
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else REFERENCE_DEVICE
    return peak_tflops(name) or peak_tflops(REFERENCE_DEVICE) or 989.0, name


def memory_rows(memory: MemoryLayout) -> list[tuple[str, str]]:
    """Activation checkpointing (and what `auto` chose) and the memory per GPU against the target device."""
    checkpointing = memory.activation_checkpointing + (f" ({memory.chosen})" if memory.chosen else "")
    if memory.activation_checkpointing == "auto":
        checkpointing += " (chosen when the job runs, for its GPU)"
    if len(memory.per_gpu) == 1:
        sizes = f"{next(iter(memory.per_gpu.values())) / GIB:.1f} GiB"
    else:  # `auto` unresolved: each mode's
        sizes = " / ".join(f"{mode} {size / GIB:.1f}" for mode, size in memory.per_gpu.items()) + " GiB"
    target = memory.target
    if target.capacity is None:
        where = target.note
    else:
        used = max(memory.per_gpu.values()) / target.capacity
        where = f"{used:.0%} of {target.name} ({target.capacity / GIB:.0f} GiB, {target.note}); fits"
    return [("activation checkpointing", checkpointing), ("memory per GPU", f"{sizes}: {where}")]


def plan_rows(
    job: JobConfig, train: TrainPlan, params: dict[str, int], flops_per_token: int, memory: MemoryLayout
) -> list[tuple[str, str]]:
    """(label, value) rows: batch layout, memory per GPU, steps, LR, counts and estimated hours at
    `train.assumed_mfu`."""
    peak, source = device_peak(job.train.peak_tflops)
    hours = train.tokens * flops_per_token / (train.world_size * peak * 1e12 * job.train.assumed_mfu) / 3600
    return [
        ("world size (devices × nodes)", f"{train.world_size}"),
        ("micro-batch (sequences / device)", f"{train.micro_batch_size}"),
        *memory_rows(memory),
        ("gradient accumulation", f"{train.grad_accum_steps}"),
        ("global batch (sequences)", f"{train.global_batch_sequences:,}"),
        ("sequence length", f"{train.seq_len}"),
        ("tokens per step", f"{train.global_batch_tokens:,}"),
        ("optimizer steps", f"{train.steps:,}"),
        ("tokens", f"{train.tokens:,}"),
        ("peak LR", f"{train.peak_lr:.3g}"),
        ("warmup steps", f"{train.warmup_steps}"),
        ("parameters (stored)", f"{params['total']:,}"),
        ("training FLOPs per token", f"{flops_per_token:,}"),
        ("strategy", f"{job.trainer.strategy} ({job.trainer.precision})"),
        (
            "estimated hours",
            f"{hours:,.1f} at MFU {job.train.assumed_mfu:.0%} of {peak:g} TFLOP/s per device ({source})",
        ),
    ]


def print_plan(
    job: JobConfig, train: TrainPlan, params: dict[str, int], flops_per_token: int, memory: MemoryLayout
) -> None:
    """Print the plan rows as an aligned table on stdout."""
    rows = plan_rows(job, train, params, flops_per_token, memory)
    width = max(len(label) for label, _ in rows)
    print("plan (plan_only=true: nothing is built)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
