"""One job = validate → plan → data → model → train → evaluate → record.

Every rule is checked before data or a model is built; the result record is written at the start
(`running`) and rewritten atomically at the end (`complete`, `failed`, `diverged`, `interrupted` or `pruned`), so a
crash never loses a result already written and a sweep can tell finished variants from the rest.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablations.budget import count_params, flops_per_token
from ablations.errors import ConfigError
from ablations.hydra_config import model_config_from, resolved_config
from ablations.model_config import ModelConfig
from ablations.results import package_versions, read_record, write_record
from ablations.train_config import TrainConfig, plan_training

log = logging.getLogger(__name__)


def train_config_from(cfg: DictConfig) -> TrainConfig:
    values = OmegaConf.to_container(cfg.train, resolve=True)
    values.pop("_target_", None)  # type: ignore[union-attr]
    try:
        return TrainConfig(**values)  # type: ignore[arg-type]
    except TypeError as error:
        raise ConfigError("train config", [str(error)]) from None


def validate(cfg: DictConfig) -> tuple[ModelConfig, TrainConfig]:
    """Every config rule of every group, before anything is built (ConfigError names the broken rules)."""
    from ablations.data_config import DataConfig, TokenizerConfig
    from ablations.evaluation import eval_config_from

    model_cfg, train_cfg = model_config_from(cfg), train_config_from(cfg)
    plan_training(train_cfg, world_size=1, model_max_seq_len=model_cfg.max_seq_len)  # seq_len rules
    DataConfig.from_dict(cfg.data)
    TokenizerConfig.from_dict(cfg.tokenizer)
    if cfg.get("eval") is not None:
        eval_config_from(cfg.eval)
    return model_cfg, train_cfg


def new_record(
    cfg: DictConfig, model_cfg: ModelConfig, run_dir: Path, name: str, sweep: str | None, axes: dict[str, Any]
) -> dict[str, Any]:
    seq_len = cfg.train.get("seq_len") or model_cfg.max_seq_len
    counts = count_params(model_cfg)
    return {
        "status": "running",
        "name": name,
        "sweep": sweep,
        "axes": axes,
        "seed": cfg.get("seed", 0),
        "run_dir": str(run_dir),
        "config": resolved_config(cfg),
        "params": {
            k: v
            for k, v in counts.as_dict().items()
            if k in ("total", "embedding", "output", "non_embedding", "applied")
        },
        "flops_per_token": flops_per_token(model_cfg, seq_len),
        "tokens_seen": 0,
        "train": None,
        "eval": None,
        "versions": package_versions(),
        "error": None,
        "started": datetime.now(timezone.utc).isoformat(),
    }


def run_job(
    cfg: DictConfig,
    run_dir: str | Path,
    name: str,
    sweep: str | None = None,
    axes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and record one variant in `run_dir`; returns the final record.

    Failures are recorded (status, error, traceback in the log) and re-raised; the caller decides whether
    a failure stops anything (a multirun records it and goes on).
    """
    run_dir = Path(run_dir)
    try:
        model_cfg, train_cfg = validate(cfg)
    except ConfigError as error:  # nothing was built; the variant is still recorded, as failed
        write_record(
            run_dir,
            {
                "status": "failed",
                "name": name,
                "sweep": sweep,
                "axes": axes or {},
                "config": resolved_config(cfg),
                "error": str(error),
            },
        )
        raise
    record = new_record(cfg, model_cfg, run_dir, name, sweep, axes or {})
    previous = read_record(run_dir)
    if previous is not None:  # a resumed job keeps its start time
        record["started"] = previous.get("started", record["started"])
    from ablations.training import train  # lightning is imported only once a job really trains

    try:
        outcome = train(cfg, model_cfg, train_cfg, run_dir, name, sweep, axes or {}, record)
        record.update(outcome.record_fields)
        record["status"] = "complete"
    except BaseException as error:
        record["status"] = _status_of(error)
        record["error"] = f"{type(error).__name__}: {error}"
        log.error("job %s %s:\n%s", name, record["status"], traceback.format_exc())
        raise
    finally:
        record["finished"] = datetime.now(timezone.utc).isoformat()
        if _is_global_zero():
            write_record(run_dir, record)
        _finish_wandb()
    return record


def _finish_wandb() -> None:
    """End this job's W&B run, or the next job in the same process would log into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def _is_global_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _status_of(error: BaseException) -> str:
    from ablations.lit_module import DivergenceError

    if isinstance(error, DivergenceError):
        return "diverged"
    if type(error).__name__ == "TrialPruned":  # optuna's, raised by the pruning callback of a search trial
        return "pruned"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):  # SIGTERMException is a SystemExit
        return "interrupted"
    return "failed"


def check_launch(cfg: DictConfig, multirun: bool) -> None:
    """Refuse launches known to go wrong before anything starts."""
    trainer = cfg.get("trainer") or {}
    strategy = trainer.get("strategy")
    devices = trainer.get("devices", 1)
    many = devices == -1 or devices == "auto" or (isinstance(devices, int) and devices > 1)
    if multirun and strategy == "ddp" and many and "SLURM_JOB_ID" not in os.environ:
        raise ConfigError(
            "launch",
            [
                "trainer.strategy=ddp re-executes the command line for ranks >= 1, so under a local multirun each "
                "rank would start its own sweep: use trainer=ddp_spawn, or hydra/launcher=slurm"
            ],
        )
