"""The training stage: fit the module on the data, measure it on the whole held-out split, export the model.

It returns what it produced (`TrainResult`); it neither evaluates nor writes the result record.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from ablations.data.datamodule import TokenDataModule
from ablations.data.shards import open_split, read_manifest
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import CheckpointError, save_model_dir
from ablations.records.atomic import atomic_write_text
from ablations.records.metrics import read_metrics
from ablations.records.run_dir import RunDir
from ablations.train.checkpoint_io import checkpoint_problem, newest_loadable
from ablations.train.module import LitMobileLLM
from ablations.train.validation import Validation, measure_validation, split_tokens

DIST_CKPT_META = "meta.pt"  # Lightning's name for the non-tensor part of a distributed checkpoint


@dataclass
class TrainResult:
    """What a training run produced. Every rank holds the whole model; only the global-zero rank holds the
    summary numbers and the export."""

    is_global_zero: bool
    model: MobileLLM
    """The trained model (its weights are those of `checkpoints/last.ckpt`)."""
    tokenizer: Any
    manifest: dict[str, Any]
    """The shard manifest the run trained on."""
    steps: int
    tokens_seen: int
    validation: Validation | None
    """The final validation over the held-out split (None when the corpus holds none)."""
    metrics: dict[str, Any]
    """Summary of metrics.jsonl (final_loss, tokens_per_s, mfu) and this attempt's fit_seconds."""
    model_dir: str | None
    """The native model directory (relative to the run dir) the global-zero rank exported."""


def checkpoint_counters(path: Path) -> tuple[int, int]:
    """(optimizer steps, tokens seen) of a checkpoint file or distributed checkpoint directory."""
    meta = path / DIST_CKPT_META if path.is_dir() else path
    state = torch.load(meta, map_location="cpu", weights_only=True, mmap=True)
    return int(state["global_step"]), int(state["tokens_seen"])


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`auto`: resume from the run's newest checkpoint that loads (last.ckpt, a file or a sharded
    directory, else the newest `step-*.ckpt`, a warning naming each corrupt one skipped), else start fresh;
    `last`: that checkpoint; null: fresh; anything else: a checkpoint path. An explicit checkpoint must
    exist (FileNotFoundError) and load as plain data (CheckpointError naming why)."""
    last = RunDir(run_dir).last_checkpoint
    if ckpt_path in (None, "null", "none"):
        return None
    if ckpt_path == "auto":
        found = newest_loadable(last, RunDir(run_dir).periodic_checkpoints())
        return str(found) if found is not None else None
    path = last if ckpt_path == "last" else Path(ckpt_path)
    if not path.exists():
        where = f" but {path}" if ckpt_path == "last" else ""
        raise FileNotFoundError(f"ckpt_path={ckpt_path}{where} does not exist")
    problem = checkpoint_problem(path)  # it names the file
    if problem is not None:
        raise CheckpointError(problem)
    return str(path)


def last_checkpoint_counters(run_dir: Path) -> dict[str, int]:
    """Optimizer steps and tokens seen of the checkpoint the run would resume from (empty when none)."""
    found = resolve_ckpt_path("auto", run_dir)
    if found is None:
        return {}
    steps, tokens_seen = checkpoint_counters(Path(found))
    return {"steps": steps, "tokens_seen": tokens_seen}


def full_model(module: LitMobileLLM) -> MobileLLM:
    """The trained model with whole weights on every rank (each rank evaluates a share of the docs): the
    module's own, or, when FSDP2 sharded it, a plain copy all-gathered from the shards onto this rank's
    device (a collective: every rank calls it)."""
    if not module.sharded:
        return module.model
    state = get_model_state_dict(module.model, options=StateDictOptions(full_state_dict=True))
    with torch.device("meta"):
        model = MobileLLM(module.model.config)
    model.load_state_dict(state, strict=True, assign=True)
    return model


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
    resume_from: str | None,
    val_max_tokens: int | None,
) -> TrainResult:
    """Train to the plan's last step (from the checkpoint `resume_from`, when given: see `resolve_ckpt_path`),
    measure the held-out split, export the model."""
    started = time.perf_counter()
    # weights_only: a checkpoint is data, never code (torch < 2.6 would default to full unpickling)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    model = full_model(module)
    assert datamodule.shard_dir is not None  # prepared before training, in this process too
    # read here: after `ddp_spawn` this process's datamodule was never set up (its workers were)
    manifest = read_manifest(datamodule.shard_dir, verify_hashes=False)
    validation = final_validation(model, datamodule, manifest, val_max_tokens)
    result = TrainResult(
        is_global_zero=trainer.is_global_zero,
        model=model,
        tokenizer=datamodule.tokenizer,
        manifest=manifest,
        steps=0,
        tokens_seen=0,
        validation=validation,
        metrics={},
        model_dir=None,
    )
    if trainer.is_global_zero:
        # the loop counters live in the checkpoint: with spawned workers this process never trained
        result.steps, result.tokens_seen = checkpoint_counters(RunDir(run_dir).last_checkpoint)
        result.metrics = summarize_metrics(read_metrics(RunDir(run_dir).metrics))
        result.metrics["fit_seconds"] = time.perf_counter() - started  # this attempt: training + validation
        save_model_dir(model, RunDir(run_dir).model, tokenizer=datamodule.tokenizer)
        result.model_dir = RunDir.MODEL
        if validation is not None:
            text = json.dumps({**validation.summary(), "per_document": validation.per_document})
            atomic_write_text(RunDir(run_dir).validation, text + "\n")
    return result


def final_validation(
    model: MobileLLM, datamodule: TokenDataModule, manifest: dict[str, Any], max_tokens: int | None
) -> Validation | None:
    """The trained model measured once over the held-out split (every rank; None when there is none)."""
    if manifest["splits"]["val"]["tokens"] < 2:
        return None
    tokenizer_cfg, tokenizer = datamodule.tokenizer_cfg, datamodule.tokenizer
    stream = split_tokens(open_split(datamodule.shard_dir, manifest, "val"), max_tokens)  # type: ignore[arg-type]
    return measure_validation(
        model,
        stream,
        tokenizer,
        datamodule.seq_len,
        datamodule.val_micro_batch_size,
        tokenizer.bos_token_id if tokenizer_cfg.add_bos else None,
        tokenizer.eos_token_id if tokenizer_cfg.add_eos else None,
    )
