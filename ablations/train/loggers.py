"""The loggers of a job: `metrics.jsonl` always (the source of truth), plus CSV, TensorBoard and W&B."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from ablations.records.metrics import append_metrics, rewind_metrics
from ablations.records.run_dir import RunDir
from ablations.records.secrets import mask_secrets
from ablations.train.config import LoggerConfig


class JsonlLogger(Logger):
    """Appends one JSON object per logging step to `metrics.jsonl`; a resumed run first drops the rows of
    the steps it is about to redo (`rewind`), so the file always holds the uninterrupted run's rows."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the resolved config lives in the result record and .hydra/

    @rank_zero_only
    def rewind(self, step: int) -> None:
        rewind_metrics(self.path, step)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row: dict[str, Any] = {"step": step, "time": time.time()}
        row.update({k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()})
        append_metrics(self.path, row)


def wandb_has_key() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())


def build_loggers(
    cfg: LoggerConfig,
    run_dir: Path,
    name: str,
    sweep: str | None,
    axes: dict[str, Any],
    job_config: dict[str, Any],
) -> list[Logger]:
    """metrics.jsonl plus the configured loggers; W&B gets the job config for filtering runs."""
    loggers: list[Logger] = [JsonlLogger(RunDir(run_dir).metrics)]
    if cfg.csv is not None:
        loggers.append(CSVLogger(save_dir=str(run_dir), name=cfg.csv.name))
    if cfg.tensorboard is not None:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name=cfg.tensorboard.name))
    if cfg.wandb is not None:
        offline = cfg.wandb.offline
        import wandb  # reason: its Settings; imported by WandbLogger anyway

        wandb_logger = WandbLogger(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,  # validation refuses one holding a URL password
            log_model=cfg.wandb.log_model,
            save_dir=str(run_dir),
            name=mask_secrets(name),
            group=mask_secrets(sweep),
            tags=mask_secrets([f"{k}={v}" for k, v in axes.items()]),
            offline=(not wandb_has_key()) if offline is None else offline,
            # no system metadata: it holds the command line (sys.argv), with any secret given there
            settings=wandb.Settings(x_disable_meta=True),
        )
        wandb_logger.log_hyperparams(mask_secrets(job_config))
        loggers.append(wandb_logger)
    return loggers
