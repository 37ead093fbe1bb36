"""One job = validate → plan → data → model → train → evaluate → device → record, one function each.

Every rule is checked before data or a model is built; the result record is written at the start
(`running`) and rewritten atomically at the end (`complete`, `failed`, `diverged`, `interrupted` or
`pruned`), so a crash never loses a result already written and a sweep can tell finished variants from
the rest. Under DDP/FSDP every rank runs the stages and evaluates a share of the docs; only the
global-zero rank gathers the scores and records.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ablations.data.datamodule import TokenDataModule, loader_workers
from ablations.data.epochs import check_epochs, check_validation_split
from ablations.data.shards import open_split, read_manifest
from ablations.data.tokenizer import check_vocab_fits
from ablations.device.config import DeviceConfig
from ablations.device.measure import measure
from ablations.eval.scoring import run_evaluation
from ablations.job.config import JobConfig, composed_config
from ablations.job.hydra_dumps import take_run_dir
from ablations.job.plan_report import print_plan
from ablations.job.validate import validate
from ablations.model.counts import count_params, flops_per_token
from ablations.records.atomic import atomic_write_text
from ablations.records.errors import ConfigError, DataError, DivergenceError, TrialPruned
from ablations.records.lock import run_dir_lock
from ablations.records.result import package_versions, read_result, write_result
from ablations.records.run_dir import RunDir
from ablations.records.secrets import mask_secrets
from ablations.search.pruning import OptunaPruning, trial_heartbeat
from ablations.train.fit import TrainResult, fit, last_checkpoint_counters, resolve_ckpt_path
from ablations.train.loggers import build_loggers
from ablations.train.micro_batch import MemoryLayout, memory_layout
from ablations.train.module import LitMobileLLM
from ablations.train.plan import TrainPlan, plan_training
from ablations.train.signals import PREEMPTION
from ablations.train.trainer import build_trainer, expected_world_size
from ablations.train.validation import Validation, split_tokens

log = logging.getLogger(__name__)
RECORDED_PARAMS = ("total", "embedding", "output", "non_embedding", "applied")
VALIDATION_FIELDS = ("loss", "loss_se", "bpb", "bpb_se", "tokens", "bytes", "documents")


@dataclass(frozen=True)
class JobPlan:
    """What a job will do, computed before anything is built (pure arithmetic)."""

    train: TrainPlan
    world_size: int
    micro_batch_size: int
    """`train.micro_batch_size`, with `auto` resolved by the memory plan."""
    params: dict[str, int]
    flops_per_token: int
    memory: MemoryLayout
    """Micro-batch and checkpointing, checked against the training device; the memory per GPU."""
    resume_from: str | None
    """The checkpoint training resumes from (resolved once, by validation), or None: a fresh start."""


# ------------------------------------------------------------------------------------------- stages


def plan(job: JobConfig, resume_from: str | None = None) -> JobPlan:
    """Steps, batch and LR for the world size the trainer config asks for; parameter and FLOP counts; the
    memory layout (micro-batch, checkpointing) checked against the training device (ConfigError: no fit)."""
    world_size = expected_world_size(job.trainer)
    replicas = job.trainer.fsdp_replicate_groups
    if job.trainer.strategy == "fsdp" and world_size % replicas:
        raise ConfigError(
            "trainer config",
            [f"trainer.fsdp_replicate_groups={replicas} does not divide the {world_size} ranks "
             f"(trainer.devices × trainer.num_nodes)"],
        )  # fmt: skip
    memory = memory_layout(job.train, job.trainer, job.model, world_size)  # refused if it does not fit
    micro_batch = memory.micro_batch_size
    resolved = dataclasses.replace(
        job.train, micro_batch_size=micro_batch, activation_checkpointing=memory.activation_checkpointing
    )
    train_plan = plan_training(resolved, world_size, job.model.max_seq_len)
    counts = count_params(job.model).as_dict()
    return JobPlan(
        train=train_plan,
        world_size=world_size,
        micro_batch_size=micro_batch,
        params={k: counts[k] for k in RECORDED_PARAMS},
        flops_per_token=flops_per_token(job.model, train_plan.seq_len),
        memory=memory,
        resume_from=resume_from,
    )


def prepare_data(job: JobConfig, job_plan: JobPlan) -> TokenDataModule:
    """Tokenizer and token shards, built or reused; the tokenizer must fit the model's vocabulary."""
    datamodule = TokenDataModule(
        job.data,
        job.tokenizer,
        seq_len=job_plan.train.seq_len,
        micro_batch_size=job_plan.micro_batch_size,
        seed=job.seed,
        num_workers=loader_workers(job.data.loader_workers, job.trainer.accelerator),
    )
    datamodule.prepare_data()
    check_vocab_fits(datamodule.tokenizer, job.model.vocab_size)
    return datamodule


def data_epochs(job: JobConfig, job_plan: JobPlan, datamodule: TokenDataModule) -> float:
    """Passes over the train split the plan makes (refused above data.max_epochs, before training); the
    validation split must hold a window."""
    manifest = read_manifest(datamodule.shard_dir, verify_hashes=False)
    check_validation_split(manifest, job_plan.train.seq_len, job.data)
    return check_epochs(job_plan.train.tokens, job_plan.train.seq_len, manifest, job.data)


def build_model(job: JobConfig, job_plan: JobPlan) -> LitMobileLLM:
    """The LightningModule around a freshly initialised model (seeded)."""
    L.seed_everything(job.seed, workers=True)
    return LitMobileLLM(
        job.model.to_dict(),
        dataclasses.asdict(job.train),
        dataclasses.asdict(job_plan.train),
        dataclasses.asdict(job.trainer),
    )


def train(
    job: JobConfig,
    job_plan: JobPlan,
    datamodule: TokenDataModule,
    module: LitMobileLLM,
    run_dir: Path,
    identity: dict[str, Any],
) -> TrainResult:
    """Fit on the data with the configured Trainer (resuming per `ckpt_path`); returns what it produced."""
    loggers = build_loggers(
        job.logger, run_dir, identity["name"], identity["sweep"], identity["axes"], dataclasses.asdict(job)
    )
    trainer = build_trainer(
        job.trainer,
        job.train,
        job_plan.train,
        run_dir,
        job_plan.flops_per_token,
        loggers,
        extra_callbacks(job),
    )
    if trainer.world_size != job_plan.world_size:
        raise ConfigError(
            "trainer config",
            [f"the trainer runs {trainer.world_size} processes but the plan assumed {job_plan.world_size}"],
        )
    return fit(trainer, module, datamodule, run_dir, job_plan.resume_from, job.train.val_max_tokens)


def evaluate(job: JobConfig, trained: TrainResult, run_dir: Path) -> dict[str, Any] | None:
    """lm-eval scores of the trained model (the record's `eval` section; None when no task is configured,
    and on ranks other than 0). Every rank of the training job scores a share of the docs on its own
    device; rank 0 gathers them (one process alone after `ddp_spawn`, whose ranks have exited)."""
    if not job.eval.tasks:
        return None
    return run_evaluation(
        trained.model.eval(),
        trained.tokenizer,
        job.eval,
        run_dir,
        job.trainer.accelerator,
        data_parallel=True,
    )


def measure_on_device(
    job: JobConfig, trained: TrainResult, datamodule: TokenDataModule, run_dir: Path
) -> dict[str, Any] | None:
    """The trained model exported to an ExecuTorch program and measured in `<run dir>/device/` (the record's
    `device` block; None unless `device.enabled`, and on ranks other than 0). A quantized program's val-loss
    change is measured on the start of the run's validation split."""
    if not job.device.enabled or not trained.is_global_zero:
        return None
    tokens = validation_tokens(datamodule, job.device)
    return measure(trained.model, job.device, RunDir(run_dir).device, tokens)


def validation_tokens(datamodule: TokenDataModule, device: DeviceConfig) -> torch.Tensor | None:
    """The first `val_windows` program-length windows of the validation split, for a quantized program's
    val-loss change (None for an fp32 program or without a validation split)."""
    assert datamodule.shard_dir is not None  # prepared before training, in this process too
    manifest = read_manifest(datamodule.shard_dir, verify_hashes=False)
    if device.quant == "none" or manifest["splits"]["val"]["tokens"] < 2:
        return None
    shards = open_split(datamodule.shard_dir, manifest, "val")
    return torch.from_numpy(split_tokens(shards, device.val_windows * device.max_seq_len))


def record(run_dir: Path, values: dict[str, Any]) -> None:
    """Write the result record (global-zero rank only: one writer per run dir)."""
    if rank_zero_only.rank == 0:
        write_result(run_dir, values)


# --------------------------------------------------------------------------------------------- job


def run_job(
    cfg: DictConfig,
    run_dir: str | Path,
    name: str,
    sweep: str | None = None,
    axes: dict[str, Any] | None = None,
    multirun: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and record one variant in `run_dir`; returns the final record.

    Failures are recorded (status, error, traceback in the log) and re-raised; the caller decides whether
    a failure stops anything (a multirun records it and goes on).
    """
    run_dir = Path(run_dir)
    dry_run = bool(cfg.get("plan_only"))  # builds and writes nothing, so it needs no lock (nor a run dir)
    with run_dir_lock(run_dir) if rank_zero_only.rank == 0 and not dry_run else nullcontext():
        return run_locked_job(cfg, run_dir, {"name": name, "sweep": sweep, "axes": axes or {}}, multirun)


def run_locked_job(
    cfg: DictConfig, run_dir: Path, identity: dict[str, Any], multirun: bool
) -> dict[str, Any]:
    """`run_job` once the run dir is this process's: a complete record stays as it is unless forced."""
    try:
        previous = read_result(run_dir)
    except ValueError as error:  # a corrupt record is bad input: named and kept, nothing built
        raise ConfigError("run dir", [f"{error}: fix it or move it away to run this job here"]) from error
    if previous is not None and previous.get("status") == "complete" and not cfg.get("force"):
        log.info("%s: its record is complete; nothing to do (force=true runs it again)", run_dir)
        return previous
    try:
        job, resume_from = validate(cfg, run_dir, multirun)
    except ConfigError as error:  # nothing was built; a new variant is still recorded, as failed
        if previous is None or previous.get("status") == "failed":  # an earlier run's record stays
            take_run_dir(run_dir, rank_zero_only.rank == 0)
            record(
                run_dir, {"status": "failed", **identity, "config": composed_config(cfg), "error": str(error)}
            )
        raise
    with trial_heartbeat(job.optuna, rank_zero_only.rank == 0, run_dir):
        return run_stages(job, resume_from, run_dir, identity)


def run_stages(
    job: JobConfig, resume_from: str | None, run_dir: Path, identity: dict[str, Any]
) -> dict[str, Any]:
    """plan → data → model → train → evaluate → device → record, recording the outcome whatever happens."""
    job_plan = plan(job, resume_from)
    if job.plan_only:  # a dry run: nothing built, nothing recorded
        print_plan(job, job_plan.train, job_plan.params, job_plan.flops_per_token, job_plan.memory)
        return {"status": "planned", **identity, "train": {"plan": dataclasses.asdict(job_plan.train)}}
    values = start_record(job, job_plan, run_dir, identity)
    try:
        datamodule = prepare_data(job, job_plan)
        values["epochs"] = data_epochs(job, job_plan, datamodule)
        module = build_model(job, job_plan)
        trained = train(job, job_plan, datamodule, module, run_dir, identity)
        if trained.is_global_zero:
            values.update(trained_fields(trained, job_plan))
        values["eval"] = evaluate(job, trained, run_dir)  # every rank scores a share; rank 0 gathers
        values["device"] = measure_on_device(job, trained, datamodule, run_dir)
        values["status"] = "complete"
    except BaseException as error:
        values["status"] = status_of(error)
        values["error"] = f"{type(error).__name__}: {error}"
        if values["status"] == "interrupted":  # what the checkpoint it resumes from holds
            counters = last_checkpoint_counters(run_dir)
            values["tokens_seen"] = counters.get("tokens_seen", 0)
            values["train"]["steps"] = counters.get("steps", 0)
            values["error"] = interruption(error, run_dir, counters)
        # bad input names itself (file, line, key): a traceback would only bury that message
        detail = str(error) if isinstance(error, (ConfigError, DataError)) else traceback.format_exc()
        log.error("job %s %s:\n%s", identity["name"], values["status"], detail)
        raise
    finally:
        values["finished"] = datetime.now(timezone.utc).isoformat()
        record(run_dir, values)
        finish_wandb()
    return values


def start_record(
    job: JobConfig, job_plan: JobPlan, run_dir: Path, identity: dict[str, Any]
) -> dict[str, Any]:
    """The `running` record, written before any data or model is built (a resumed job keeps its start)."""
    previous = read_result(run_dir) if rank_zero_only.rank == 0 else None
    values: dict[str, Any] = {
        "status": "running",
        **identity,
        "seed": job.seed,
        "run_dir": str(run_dir),
        "config": mask_secrets(dataclasses.asdict(job)),
        "params": job_plan.params,
        "flops_per_token": job_plan.flops_per_token,
        "tokens_seen": 0,
        "train": {"plan": dataclasses.asdict(job_plan.train)},
        "data": None,
        "epochs": None,
        "eval": None,
        "device": None,
        "versions": package_versions(),
        "error": None,
        "started": (previous or {}).get("started") or datetime.now(timezone.utc).isoformat(),
    }
    take_run_dir(run_dir, rank_zero_only.rank == 0)  # this run's: its .hydra dumps, its run.log
    record(run_dir, values)
    trained_with = RunDir(run_dir).job_config  # the config the run's checkpoints are trained with
    if rank_zero_only.rank == 0 and (job_plan.resume_from is None or not trained_with.is_file()):
        atomic_write_text(trained_with, json.dumps(values["config"], indent=2, default=str) + "\n")
    return values


def trained_fields(trained: TrainResult, job_plan: JobPlan) -> dict[str, Any]:
    """The record's fields from a finished training run."""
    return {
        "tokens_seen": trained.tokens_seen,
        "train": {
            "plan": dataclasses.asdict(job_plan.train),
            "steps": trained.steps,
            **validation_fields(trained.validation),
            **trained.metrics,
        },
        "data": trained.manifest,
        "model_dir": trained.model_dir,
    }


def validation_fields(validation: Validation | None) -> dict[str, Any]:
    """The record's `train.val_*` fields: the final validation over the held-out split (nulls without one)."""
    summary = validation.summary() if validation is not None else dict.fromkeys(VALIDATION_FIELDS)
    return {f"val_{key}": summary[key] for key in VALIDATION_FIELDS}


def extra_callbacks(job: JobConfig) -> dict[str, L.Callback]:
    """User callbacks (`+callbacks.NAME={_target_: …}`, checked by validation) and, for a search
    trial, the pruning callback."""
    callbacks = {key: instantiate(node, _recursive_=False) for key, node in job.callbacks.items()}
    if job.optuna.trial_number is not None:
        callbacks["optuna"] = OptunaPruning(job.optuna)
    return callbacks


def status_of(error: BaseException) -> str:
    if isinstance(error, DivergenceError):
        return "diverged"
    if isinstance(error, TrialPruned):
        return "pruned"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):  # SIGTERMException is a SystemExit
        return "interrupted"
    return "failed"


def interruption(error: BaseException, run_dir: Path, counters: dict[str, int]) -> str:
    """An interrupted job's error: which signal stopped it and where it resumes (Lightning's
    SIGTERMException carries no message)."""
    if PREEMPTION.received is not None:
        cause = f"{PREEMPTION.received.name} (pre-emption)"
    elif isinstance(error, KeyboardInterrupt):
        cause = "SIGINT (Ctrl-C)"
    elif isinstance(error, SIGTERMException):
        cause = "a pre-emption signal on another rank"
    else:
        cause = f"an exit ({error})"
    checkpoint = resolve_ckpt_path("auto", run_dir)
    where = (
        f"resumable from {checkpoint} (step {counters['steps']}, {counters['tokens_seen']:,} tokens seen)"
        if checkpoint is not None
        else "no checkpoint yet, so it starts over from step 0"
    )
    return f"{type(error).__name__}: stopped by {cause}; {where}: run the same command to resume"


def finish_wandb() -> None:
    """End this job's W&B run, or the next job in the same process would log into it."""
    wandb = sys.modules.get("wandb")  # imported only if a W&B logger ran
    if wandb is not None and wandb.run is not None:
        wandb.finish()
