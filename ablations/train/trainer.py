"""Assembling the Lightning Trainer of a job: strategy, cluster environment, loggers, checkpoints, callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy, Strategy

from ablations.records.run_dir import RunDir
from ablations.train.callbacks import (
    LastCheckpoint,
    MetricsRewind,
    PreemptionSignals,
    ThroughputMonitor,
    TokenProgressBar,
)
from ablations.train.checkpoint_io import AtomicCheckpointIO
from ablations.train.config import TrainConfig, TrainerConfig
from ablations.train.plan import TrainPlan


def expected_world_size(cfg: TrainerConfig) -> int:
    """Processes the Trainer will run: devices per node × nodes (-1 devices = every visible GPU)."""
    devices = cfg.devices
    if devices == -1:
        devices = torch.cuda.device_count() if cfg.accelerator != "cpu" else 1
    return max(1, devices) * cfg.num_nodes


def build_strategy(cfg: TrainerConfig) -> Strategy | str:
    """The Lightning strategy object for `cfg.strategy`."""
    if cfg.strategy == "ddp":  # ranks >= 1 re-execute the command line (Lightning's "popen")
        return DDPStrategy(process_group_backend=cfg.process_group_backend, start_method="popen")
    if cfg.strategy == "ddp_spawn":
        return DDPStrategy(process_group_backend=cfg.process_group_backend, start_method="spawn")
    if cfg.strategy == "fsdp":
        # FSDP2: LitMobileLLM.configure_model applies fully_shard over the strategy's data-parallel mesh
        # (tensor_parallel_size=1); checkpoints are distributed checkpoint dirs (*.distcp + meta.pt)
        return ModelParallelStrategy(
            data_parallel_size=expected_world_size(cfg),
            tensor_parallel_size=1,
            save_distributed_checkpoint=True,
            process_group_backend=cfg.process_group_backend,
        )
    return "auto"


def build_trainer(
    cfg: TrainerConfig,
    train_cfg: TrainConfig,
    plan: TrainPlan,
    run_dir: Path,
    flops_per_token: int,
    loggers: list[Logger],
    extra_callbacks: dict[str, L.Callback],
) -> L.Trainer:
    """The Trainer for one job: `plan.steps` optimizer steps, checkpoints under `<run dir>/checkpoints/`."""
    ckpt_dir = RunDir(run_dir).checkpoints
    throughput = ThroughputMonitor(flops_per_token, train_cfg.log_every_n_steps, train_cfg.peak_tflops)
    callbacks: dict[str, L.Callback] = {
        "metrics_rewind": MetricsRewind(),
        "throughput": throughput,
        "preemption": PreemptionSignals(),
        "last": LastCheckpoint(RunDir(run_dir).last_checkpoint),
    }
    if train_cfg.ckpt_every_n_steps:
        callbacks["checkpoint"] = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="step-{step:07d}",  # RunDir.PERIODIC_CHECKPOINTS
            every_n_train_steps=train_cfg.ckpt_every_n_steps,
            save_last=False,  # LastCheckpoint writes the one last.ckpt (end of training, pre-emption)
            save_top_k=train_cfg.keep_checkpoints,
            monitor="step",
            mode="max",
            auto_insert_metric_name=False,
        )
    callbacks.update(extra_callbacks)
    if cfg.enable_progress_bar:
        callbacks["progress"] = TokenProgressBar(throughput)
    plugins: list[Any] = [AtomicCheckpointIO()]
    if cfg.cluster == "slurm":
        plugins.append(SLURMEnvironment(auto_requeue=False))
    val_every = train_cfg.val_every_n_steps
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=build_strategy(cfg),
        precision=cfg.precision,  # type: ignore[arg-type]
        plugins=plugins,
        enable_progress_bar=cfg.enable_progress_bar,
        default_root_dir=str(run_dir),
        logger=loggers,
        callbacks=list(callbacks.values()),
        max_steps=plan.steps,
        max_epochs=-1,
        accumulate_grad_batches=plan.grad_accum_steps,
        log_every_n_steps=train_cfg.log_every_n_steps,
        # validation every N optimizer steps of an endless loader (val_check_interval counts batches)
        val_check_interval=val_every * plan.grad_accum_steps if val_every else None,
        check_val_every_n_epoch=None,
        limit_val_batches=train_cfg.val_batches if val_every else 0,
        num_sanity_val_steps=0,
        enable_checkpointing="checkpoint" in callbacks,
        use_distributed_sampler=False,  # the token loader splits windows across ranks itself
        gradient_clip_val=None,  # clipping happens in LitMobileLLM.configure_gradient_clipping
    )
