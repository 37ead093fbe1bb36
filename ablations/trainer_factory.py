"""Assembling the Lightning Trainer of a job: strategy preset, loggers, checkpoints and callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from ablations.callbacks import JsonlLogger, LastCheckpoint, ThroughputMonitor, TokenProgressBar
from ablations.hydra_config import resolved_config
from ablations.train_config import TrainConfig

METRICS_FILE = "metrics.jsonl"
CKPT_DIR = "checkpoints"


def wandb_has_key() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())


def build_loggers(cfg: DictConfig, run_dir: Path, name: str, sweep: str | None, axes: dict[str, Any]) -> list:
    loggers: list = [JsonlLogger(run_dir / METRICS_FILE)]
    for key, node in (cfg.get("logger") or {}).items():
        if key == "wandb":
            offline = node.get("offline")
            wandb_logger = instantiate(
                node,
                save_dir=str(run_dir),
                name=name,
                group=sweep,
                tags=[f"{k}={v}" for k, v in axes.items()],
                offline=(not wandb_has_key()) if offline is None else offline,
            )
            wandb_logger.log_hyperparams(resolved_config(cfg))  # the whole job config, for filtering runs
            loggers.append(wandb_logger)
        else:
            loggers.append(instantiate(node, save_dir=str(run_dir)))
    return loggers


def build_trainer(
    cfg: DictConfig,
    train_cfg: TrainConfig,
    run_dir: Path,
    flops_per_token: int,
    name: str,
    sweep: str | None = None,
    axes: dict[str, Any] | None = None,
) -> tuple[L.Trainer, dict[str, L.Callback]]:
    """The Trainer for one job (max_steps is set by the job once the world size is known)."""
    ckpt_dir = run_dir / CKPT_DIR
    throughput = ThroughputMonitor(flops_per_token, train_cfg.log_every_n_steps, train_cfg.peak_tflops)
    callbacks: dict[str, L.Callback] = {
        "throughput": throughput,
        "last": LastCheckpoint(ckpt_dir / "last.ckpt"),
    }
    if train_cfg.ckpt_every_n_steps:
        callbacks["checkpoint"] = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="step-{step:07d}",
            every_n_train_steps=train_cfg.ckpt_every_n_steps,
            save_last=True,
            save_top_k=train_cfg.keep_checkpoints,
            monitor="step",
            mode="max",
            auto_insert_metric_name=False,
        )
    for key, node in (cfg.get("callbacks") or {}).items():  # user callbacks: +callbacks.NAME={_target_: ...}
        callbacks[key] = instantiate(node)
    optuna_cfg = cfg.get("optuna") or {}
    if optuna_cfg.get("trial_number") is not None:  # a trial of the Optuna sweeper: report val/loss, prune
        from ablations.optuna_pruning import OptunaPruning

        callbacks["optuna"] = OptunaPruning(optuna_cfg)
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks["progress"] = TokenProgressBar(throughput)
    accumulate = train_cfg.grad_accum_steps
    val_every = train_cfg.val_every_n_steps
    trainer = instantiate(cfg.trainer, _partial_=True)(
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir, name, sweep, axes or {}),
        callbacks=list(callbacks.values()),
        accumulate_grad_batches=accumulate,
        log_every_n_steps=train_cfg.log_every_n_steps,
        # validation every N optimizer steps of an endless loader (val_check_interval counts batches)
        val_check_interval=val_every * accumulate if val_every else None,
        check_val_every_n_epoch=None,
        limit_val_batches=train_cfg.val_batches if val_every else 0,
        num_sanity_val_steps=0,
        enable_checkpointing="checkpoint" in callbacks,
        use_distributed_sampler=False,  # the token loader splits windows across ranks itself
        gradient_clip_val=None,  # clipping happens in LitMobileLLM.configure_gradient_clipping
        max_epochs=-1,
    )
    return trainer, callbacks
