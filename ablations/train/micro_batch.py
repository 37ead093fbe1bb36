"""`train.micro_batch_size=auto`: the largest micro-batch the memory plan fits on the training device."""

from __future__ import annotations

import torch

from ablations.model.config import ModelConfig
from ablations.records.errors import ConfigError
from ablations.train.config import TrainConfig, TrainerConfig
from ablations.train.memory import device_capacity, largest_micro_batch


def device_memory(train: TrainConfig) -> float:
    """Bytes of `train.device` (the table), else of the visible CUDA device."""
    if train.device is not None:
        return device_capacity(train.device)
    if not torch.cuda.is_available():
        raise ConfigError(
            "train config",
            ["train.micro_batch_size=auto needs train.device=<name> (e.g. h100_80gb) when no GPU is visible"],
        )
    return float(torch.cuda.get_device_properties(0).total_memory)


def micro_batch_size(train: TrainConfig, trainer: TrainerConfig, model: ModelConfig, world_size: int) -> int:
    """`train.micro_batch_size`, with `auto` resolved from the memory plan of this job's device and layout:
    the largest that fits, and, when `global_batch_size` fixes the global batch, that divides each rank's
    share of it (so accumulation is a whole number of micro-batches)."""
    if train.micro_batch_size != "auto":
        return int(train.micro_batch_size)
    fits = largest_micro_batch(
        model,
        train.seq_len or model.max_seq_len,
        device_memory(train),
        world_size,
        trainer.strategy,
        trainer.precision,
        train.activation_checkpointing,
        train.activation_checkpointing_every,
        train.loss_chunk_tokens,
    )
    if train.global_batch_size is None or train.global_batch_size % world_size:
        return fits  # a global batch the GPUs cannot share is refused by the plan, naming both numbers
    per_rank = train.global_batch_size // world_size
    return max(d for d in range(1, max(1, min(fits, per_rank)) + 1) if per_rank % d == 0)
