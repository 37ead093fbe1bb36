"""The training stage of a job: data module, Trainer, LitMobileLLM, fit, final validation and export."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from ablations.budget import flops_per_token
from ablations.callbacks import read_metrics
from ablations.checkpoint import save_model_dir
from ablations.eval_loading import load_lightning_ckpt
from ablations.lit_module import LitMobileLLM
from ablations.model import MobileLLM
from ablations.model_config import ModelConfig
from ablations.results import write_record
from ablations.train_config import TrainConfig, TrainPlan, plan_training
from ablations.trainer_factory import CKPT_DIR, METRICS_FILE, build_trainer

MODEL_DIR = "model"


@dataclass
class TrainOutcome:
    is_global_zero: bool
    record_fields: dict[str, Any]


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`auto`: resume from the run's last.ckpt when it exists (a requeued job), else start fresh;
    `last`: that file, which must exist; null: fresh; anything else: a checkpoint path."""
    last = run_dir / CKPT_DIR / "last.ckpt"
    if ckpt_path in (None, "null", "none"):
        return None
    if ckpt_path == "auto":
        return str(last) if last.is_file() else None
    if ckpt_path == "last":
        if not last.is_file():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist")
        return str(last)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


def build_datamodule(cfg: DictConfig, plan: TrainPlan, train_cfg: TrainConfig) -> L.LightningDataModule:
    from ablations.datamodule import TokenDataModule

    return TokenDataModule(
        data=OmegaConf.to_container(cfg.data, resolve=True),
        tokenizer=OmegaConf.to_container(cfg.tokenizer, resolve=True),
        seq_len=plan.seq_len,
        micro_batch_size=train_cfg.micro_batch_size,
        seed=cfg.get("seed", 0),
    )


def summarize_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Final loss and mean throughput of a run from its metrics.jsonl (the first window is warm-up)."""
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    speeds = [r["perf/tokens_per_s"] for r in rows if "perf/tokens_per_s" in r]
    mfus = [r["perf/mfu"] for r in rows if "perf/mfu" in r]
    steady = speeds[1:] or speeds
    return {
        "final_loss": losses[-1] if losses else None,
        "tokens_per_s": statistics.fmean(steady) if steady else None,
        "mfu": statistics.fmean(mfus[1:] or mfus) if mfus else None,
    }


def train(
    cfg: DictConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: Path,
    name: str,
    sweep: str | None,
    axes: dict[str, Any],
    record: dict[str, Any],
) -> TrainOutcome:
    L.seed_everything(cfg.get("seed", 0), workers=True)
    seq_len = train_cfg.seq_len or model_cfg.max_seq_len
    trainer, _ = build_trainer(
        cfg, train_cfg, run_dir, flops_per_token(model_cfg, seq_len), name, sweep, axes
    )
    plan = plan_training(train_cfg, trainer.world_size, model_cfg.max_seq_len)
    trainer.fit_loop.epoch_loop.max_steps = plan.steps  # known only now that the world size is
    datamodule = build_datamodule(cfg, plan, train_cfg)
    datamodule.prepare_data()  # tokenizer + shards, so the vocab can be checked before the model exists
    from ablations.tokenizer import check_vocab_fits

    check_vocab_fits(datamodule.tokenizer, model_cfg.vocab_size)
    record["train"] = {"plan": asdict(plan)}
    record["data"] = getattr(datamodule, "manifest", None)
    if trainer.is_global_zero:
        write_record(run_dir, record)
    module = LitMobileLLM(model_cfg.to_dict(), asdict(train_cfg), asdict(plan))
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path", "auto"), run_dir)
    )
    trainer.limit_val_batches = train_cfg.val_batches
    validation = trainer.validate(module, datamodule=datamodule, verbose=False)
    fields: dict[str, Any] = {}
    if trainer.is_global_zero:
        model, checkpoint = load_lightning_ckpt(run_dir / CKPT_DIR / "last.ckpt")
        save_model_dir(model, run_dir / MODEL_DIR, tokenizer=datamodule.tokenizer)
        summary = summarize_metrics(read_metrics(run_dir / METRICS_FILE))
        fields = {
            "tokens_seen": checkpoint["tokens_seen"],
            "train": {
                "plan": asdict(plan),
                "steps": checkpoint["global_step"],
                "val_loss": validation[0].get("val/loss") if validation else None,
                **summary,
            },
            "data": getattr(datamodule, "manifest", None),
            "model_dir": MODEL_DIR,
            "eval": _evaluate(cfg, model, datamodule.tokenizer, run_dir),
        }
    return TrainOutcome(trainer.is_global_zero, fields)


def _evaluate(cfg: DictConfig, model: MobileLLM, tokenizer: Any, run_dir: Path) -> dict[str, Any] | None:
    eval_cfg = cfg.get("eval")
    if not eval_cfg or not eval_cfg.get("tasks"):
        return None
    from ablations.evaluation import run_evaluation

    return run_evaluation(model.eval(), tokenizer, eval_cfg, run_dir)
