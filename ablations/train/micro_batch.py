"""A job's memory layout, resolved and checked against its training device before anything is built.

`train.micro_batch_size=auto` and `train.activation_checkpointing=auto` are resolved from the memory plan
(`ablations.train.memory_plan`), and the layout (micro-batch × checkpointing, for the job's strategy, world size,
precision and loss chunking) must fit the target device: `train.device` (a `DEVICES` entry), else the visible
GPU of a GPU job. A layout that does not fit is refused, naming what would fit. A CPU job without
`train.device` has nothing to check; a GPU job planned where no GPU is visible (a login node, `plan_only`) is
planned unchecked and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ablations.model.config import ModelConfig
from ablations.records.errors import ConfigError
from ablations.train.config import TrainConfig, TrainerConfig
from ablations.train.memory_plan import (
    CHECKPOINTING_ORDER,
    GIB,
    SAFETY_MARGIN,
    compute_precision,
    device_capacity,
    largest_micro_batch,
    memory_plan,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryTarget:
    """The device a job's memory plan is checked against."""

    name: str | None
    """`train.device` (a `DEVICES` key) or the visible GPU's name; None: nothing to check against."""
    capacity: float | None
    """Bytes of memory per device; None when not checked."""
    note: str
    """Where the target comes from, or why there is none."""


@dataclass(frozen=True)
class MemoryLayout:
    """The micro-batch and activation checkpointing a job trains with, and its memory per GPU."""

    micro_batch_size: int
    activation_checkpointing: str
    """A checkpointing mode; `auto` only for a GPU job planned where no GPU is visible (resolved on the GPU)."""
    per_gpu: dict[str, int]
    """Bytes per GPU by checkpointing mode: the resolved one, or each mode while `auto` is unresolved."""
    target: MemoryTarget
    chosen: str | None = None
    """What `activation_checkpointing=auto` chose, and why (logged, and printed by the plan)."""


def is_cpu_job(trainer: TrainerConfig) -> bool:
    return trainer.accelerator == "cpu" or (trainer.accelerator == "auto" and not torch.cuda.is_available())


def memory_target(train: TrainConfig, trainer: TrainerConfig) -> MemoryTarget:
    """`train.device` (the table), else the visible GPU of a GPU job; none for a CPU job or where no GPU is
    visible."""
    if train.device is not None:
        return MemoryTarget(train.device, device_capacity(train.device), "train.device")
    if is_cpu_job(trainer):
        return MemoryTarget(None, None, "a CPU job: not checked")
    if not torch.cuda.is_available():
        return MemoryTarget(
            None,
            None,
            "not checked: no train.device and no visible GPU (set train.device=NAME, e.g. h100_80gb)",
        )
    device = torch.cuda.get_device_properties(0)
    return MemoryTarget(device.name, float(device.total_memory), "the visible GPU")


def memory_layout(
    train: TrainConfig, trainer: TrainerConfig, model: ModelConfig, world_size: int
) -> MemoryLayout:
    """The job's micro-batch and checkpointing, `auto` resolved, checked against its device (ConfigError,
    naming the largest micro-batch or the checkpointing mode that fits, when the layout does not fit)."""
    sizing = LayoutSizing(train, trainer, model, world_size, memory_target(train, trainer))
    mode, chosen = train.activation_checkpointing, None
    configured = None if train.micro_batch_size == "auto" else int(train.micro_batch_size)
    if mode == "auto" and sizing.target.capacity is None:
        mode = "none" if is_cpu_job(trainer) else "auto"  # a CPU job has no GPU memory to save
    elif mode == "auto":
        fitting = [m for m in CHECKPOINTING_ORDER if sizing.fits(configured or 1, m)]
        if not fitting:
            raise ConfigError("train config", [sizing.refusal(configured or 1, "auto")])
        mode = fitting[0]
        chosen = f"auto: the least recompute under which {sizing.describe(configured or 1, mode)}"
        log.info("train.activation_checkpointing=%s (%s)", mode, chosen)
    micro_batch = configured if configured is not None else sizing.largest(mode)
    if sizing.target.capacity is not None and not sizing.fits(micro_batch, mode):
        raise ConfigError("train config", [sizing.refusal(micro_batch, mode)])
    modes = CHECKPOINTING_ORDER if mode == "auto" else (mode,)
    return MemoryLayout(
        micro_batch, mode, {m: sizing.per_gpu(micro_batch, m) for m in modes}, sizing.target, chosen
    )


@dataclass(frozen=True)
class LayoutSizing:
    """The memory plan of one job's layout at any micro-batch and checkpointing mode, against its target."""

    train: TrainConfig
    trainer: TrainerConfig
    model: ModelConfig
    world_size: int
    target: MemoryTarget

    @property
    def seq_len(self) -> int:
        return self.train.seq_len or self.model.max_seq_len

    @property
    def precision(self) -> str:
        trainer = self.trainer
        return compute_precision(trainer.strategy, trainer.precision, trainer.fsdp_param_dtype)

    def per_gpu(self, micro_batch: int, mode: str) -> int:
        return memory_plan(
            self.model,
            self.seq_len,
            micro_batch,
            self.world_size,
            self.trainer.strategy,
            self.precision,
            mode,
            self.train.activation_checkpointing_every,
            self.train.loss_chunk_tokens,
        ).total

    def fits(self, micro_batch: int, mode: str) -> bool:
        capacity = self.target.capacity
        return capacity is None or self.per_gpu(micro_batch, mode) <= SAFETY_MARGIN * capacity

    def largest(self, mode: str) -> int:
        """The largest micro-batch that fits under `mode` (ConfigError when not one sequence does) and,
        when `global_batch_size` fixes the global batch, divides each rank's share of it (so accumulation is
        a whole number of micro-batches)."""
        if self.target.capacity is None:
            raise ConfigError(
                "train config",
                [
                    "train.micro_batch_size=auto needs train.device=<name> (e.g. h100_80gb) when no GPU is visible"
                ],
            )
        fits = largest_micro_batch(
            self.model,
            self.seq_len,
            self.target.capacity,
            self.world_size,
            self.trainer.strategy,
            self.precision,
            mode,
            self.train.activation_checkpointing_every,
            self.train.loss_chunk_tokens,
        )
        global_batch = self.train.global_batch_size
        if global_batch is None or global_batch % self.world_size:
            return fits  # a global batch the GPUs cannot share is refused by the plan, naming both numbers
        per_rank = global_batch // self.world_size
        return max(d for d in range(1, max(1, min(fits, per_rank)) + 1) if per_rank % d == 0)

    def describe(self, micro_batch: int, mode: str) -> str:
        """`micro-batch 32 × 2048 tokens needs 61.9 GiB per GPU, 77% of h100_80gb (80 GiB)`."""
        need, capacity = self.per_gpu(micro_batch, mode), self.target.capacity or 0
        return (
            f"micro-batch {micro_batch} × {self.seq_len} tokens needs {need / GIB:.1f} GiB per GPU, "
            f"{need / capacity:.0%} of {self.target.name} ({capacity / GIB:.0f} GiB)"
        )

    def refusal(self, micro_batch: int, mode: str) -> str:
        """Why the layout does not fit (at most SAFETY_MARGIN of the device), and what would."""
        layout = f"{self.trainer.strategy}, {self.world_size} GPU(s), {self.precision}"
        if mode == "auto":
            head = (
                f"train.activation_checkpointing=auto: no mode fits; even with full checkpointing "
                f"{self.describe(micro_batch, 'full')}, over the {SAFETY_MARGIN:.0%} a plan may fill ({layout})"
            )
            mode = "full"
        else:
            head = (
                f"train.micro_batch_size={micro_batch} with train.activation_checkpointing={mode}: "
                f"{self.describe(micro_batch, mode)}, over the {SAFETY_MARGIN:.0%} a plan may fill ({layout})"
            )
        options = [
            f"train.activation_checkpointing={m} (or auto: the least recompute that fits)"
            for m in CHECKPOINTING_ORDER[CHECKPOINTING_ORDER.index(mode) + 1 :]
            if self.fits(micro_batch, m)
        ][:1]
        for m in (mode, "full"):
            try:
                largest = self.largest(m)
            except ConfigError:  # not even one sequence fits under this mode
                continue
            with_mode = "" if m == mode else f" with train.activation_checkpointing={m}"
            options.append(f"train.micro_batch_size={largest}{with_mode} (the largest that fits)")
            break
        if self.trainer.strategy != "fsdp":
            options.append("trainer=fsdp (shards parameters, gradients and AdamW states)")
        return f"{head}: set {'; or '.join(options)}"
