"""The training stage: fit the module on the data, validate once more, export the model.

It returns what it produced (`TrainResult`); it neither evaluates nor writes the result record.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ablations.data.datamodule import TokenDataModule
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import save_model_dir
from ablations.records.metrics import METRICS_FILE, read_metrics
from ablations.train.checkpoint_io import newest_loadable
from ablations.train.module import LitMobileLLM
from ablations.train.trainer import CKPT_DIR, LAST_CKPT, PERIODIC_GLOB

MODEL_DIR = "model"


@dataclass
class TrainResult:
    """What a training run produced. Only the global-zero rank holds the summary numbers and the export."""

    is_global_zero: bool
    model: MobileLLM
    """The trained model (its weights are those of `checkpoints/last.ckpt`)."""
    tokenizer: Any
    manifest: dict[str, Any]
    """The shard manifest the run trained on."""
    steps: int
    tokens_seen: int
    val_loss: float | None
    metrics: dict[str, Any]
    """Summary of metrics.jsonl: final_loss, tokens_per_s, mfu."""
    model_dir: str | None
    """The native model directory (relative to the run dir) the global-zero rank exported."""


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`auto`: resume from the run's newest checkpoint that loads (last.ckpt, a file or a sharded
    directory, else the newest `step-*.ckpt`, a warning naming each corrupt one skipped), else start fresh;
    `last`: that checkpoint, which must exist; null: fresh; anything else: a checkpoint path."""
    ckpt_dir = run_dir / CKPT_DIR
    last = ckpt_dir / LAST_CKPT
    if ckpt_path in (None, "null", "none"):
        return None
    if ckpt_path == "auto":
        found = newest_loadable(last, list(ckpt_dir.glob(PERIODIC_GLOB)))
        return str(found) if found is not None else None
    if ckpt_path == "last":
        if not last.exists():
            raise FileNotFoundError(f"ckpt_path=last but {last} does not exist")
        return str(last)
    if not Path(ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


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


def fit(
    trainer: L.Trainer,
    module: LitMobileLLM,
    datamodule: TokenDataModule,
    run_dir: Path,
    ckpt_path: str | None,
    val_batches: int,
) -> TrainResult:
    """Train to the plan's last step (resuming per `ckpt_path`), validate on `val_batches`, export the model."""
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(ckpt_path, run_dir))
    trainer.limit_val_batches = val_batches
    validation = trainer.validate(module, datamodule=datamodule, verbose=False)
    result = TrainResult(
        is_global_zero=trainer.is_global_zero,
        model=module.model,
        tokenizer=datamodule.tokenizer,
        manifest=datamodule.manifest,
        steps=0,
        tokens_seen=0,
        val_loss=validation[0].get("val/loss") if validation else None,
        metrics={},
        model_dir=None,
    )
    if trainer.is_global_zero:
        # the loop counters live in the checkpoint: with spawned workers this process never trained
        last = torch.load(run_dir / CKPT_DIR / LAST_CKPT, map_location="cpu", weights_only=True, mmap=True)
        result.steps, result.tokens_seen = int(last["global_step"]), int(last["tokens_seen"])
        result.metrics = summarize_metrics(read_metrics(run_dir / METRICS_FILE))
        save_model_dir(module.model, run_dir / MODEL_DIR, tokenizer=datamodule.tokenizer)
        result.model_dir = MODEL_DIR
    return result
