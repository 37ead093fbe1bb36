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
    """`train.micro_batch_size`, with `auto` resolved from the memory plan of this job's device and layout."""
    if train.micro_batch_size != "auto":
        return int(train.micro_batch_size)
    return largest_micro_batch(
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
