"""The rules that refuse a job before anything is built: its config (typed, every group's own rules), how it
is launched, its callbacks, the devices and evaluation data it names, the device stage's extra, and the
checkpoint it resumes from with what may change on the way. `validate` lists every broken rule in one
ConfigError.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from omegaconf import DictConfig

from ablations.device.config import missing_dependency
from ablations.eval.sources import task_data_problems
from ablations.job.config import JobConfig, first_line, job_config
from ablations.job.resume import changed_keys, shape_changes, unknown_allowances
from ablations.model.checkpoint import CheckpointError
from ablations.records.errors import ConfigError
from ablations.records.run_dir import RunDir
from ablations.records.secrets import mask_secrets
from ablations.train.fit import resolve_ckpt_path


def validate(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> tuple[JobConfig, str | None]:
    """Every rule of every group, before anything is built: the config, the launch, the checkpoint to resume
    and what it may change, the evaluation data (one ConfigError lists all broken rules). Returns the typed
    job and the checkpoint it resumes from (None: a fresh start), resolved here once for the whole job."""
    job = job_config(cfg)
    problems = launch_problems(job, multirun) + callback_problems(job.callbacks)
    if not job.plan_only:  # a plan is made anywhere (a login node); a run needs the devices and data it names
        problems += device_problems(job) + device_stage_problems(job)
        problems += task_data_problems(
            job.eval.tasks, job.eval.data_dir, job.eval.limit, job.eval.num_fewshot
        )
    if job.tokenizer.kind == "trained" and job.tokenizer.vocab_size > job.model.vocab_size:
        problems.append(  # known before the tokenizer is trained (minutes on a real corpus)
            f"tokenizer.vocab_size={job.tokenizer.vocab_size} > model.vocab_size={job.model.vocab_size}: ids >= "
            f"{job.model.vocab_size} would index past the embedding; set model.vocab_size >= tokenizer.vocab_size"
        )
    current = json.loads(json.dumps(mask_secrets(dataclasses.asdict(job)), default=str))  # as stored
    problems += unknown_allowances(job.resume_allow_changes, current)
    try:
        resume_from = resolve_ckpt_path(job.ckpt_path, run_dir)
    except (FileNotFoundError, CheckpointError) as error:  # missing, unreadable or unsafe: named
        problems.append(str(error))
        resume_from = None
    problems += resume_problems(job, current, resume_from, RunDir(run_dir))
    if problems:
        raise ConfigError("job", problems)
    return job, resume_from


def launch_problems(job: JobConfig, multirun: bool) -> list[str]:
    """Launches known to go wrong, refused before anything starts."""
    many = job.trainer.devices == -1 or job.trainer.devices > 1 or job.trainer.num_nodes > 1
    reexecuted = job.trainer.strategy in ("ddp", "fsdp", "auto")  # Lightning's auto on several devices is ddp
    if multirun and reexecuted and many and "SLURM_JOB_ID" not in os.environ:
        return [
            f"trainer.strategy={job.trainer.strategy} with trainer.devices={job.trainer.devices}, "
            f"trainer.num_nodes={job.trainer.num_nodes} re-executes the command line for ranks >= 1, so under a "
            "local multirun each rank would start its own sweep: use trainer.strategy=ddp_spawn (trainer=ddp_spawn "
            "or trainer=ddp_cpu), or hydra/launcher=slurm"
        ]
    return []


def callback_problems(callbacks: dict[str, Any]) -> list[str]:
    """User callbacks must each name a Lightning Callback class, with plain arguments: Hydra's `_target_` can
    call any importable function (e.g. `pathlib.Path.write_text`), and a config must never act by itself."""
    problems = []
    for name, node in callbacks.items():
        key = f"callbacks.{name}"
        target = node.get("_target_") if isinstance(node, dict) else None
        if not isinstance(target, str):
            problems.append(f"{key}: must be a mapping with `_target_: <a lightning Callback class>`")
            continue
        try:
            callback_class = get_class(target)
        except Exception as error:  # not importable, or not a class
            problems.append(
                f"{key}._target_={target}: not an importable class ({first_line(error.__cause__ or error)})"
            )
            continue
        if not issubclass(callback_class, L.Callback):
            problems.append(f"{key}._target_={target}: not a lightning Callback subclass")
        nested = [path for path in _target_paths(node) if path]
        if nested:
            problems.append(f"{key}: nested `_target_` at {nested} (arguments must be plain values)")
    return problems


def _target_paths(node: Any, path: str = "") -> list[str]:
    """Dotted paths of every `_target_` key in a nested mapping/list ("" for the top level)."""
    found = [path] if isinstance(node, dict) and "_target_" in node else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        found += _target_paths(child, f"{path}.{key}".lstrip("."))
    return found


def device_problems(job: JobConfig) -> list[str]:
    """CUDA devices the job asks for (training accelerator, evaluation device) that this machine lacks."""
    visible = torch.cuda.device_count()
    problems = []
    if job.trainer.accelerator in ("gpu", "cuda") and visible == 0:
        problems.append(f"trainer.accelerator={job.trainer.accelerator} but no CUDA device is visible")
    index = job.eval.device.partition(":")[2]
    if job.eval.tasks and job.eval.device.startswith("cuda") and int(index or 0) >= visible:
        problems.append(f"eval.device={job.eval.device} but {visible} CUDA device(s) are visible")
    return problems


def device_stage_problems(job: JobConfig) -> list[str]:
    """The device stage needs the `device` extra: refused before training, not after it."""
    missing = missing_dependency() if job.device.enabled else None
    return [f"device.enabled=true but {missing}"] if missing else []


def resume_problems(
    job: JobConfig, current: dict[str, Any], resumed: str | None, run_dir: RunDir
) -> list[str]:
    """A resumed run's config may differ from the one its checkpoints were trained with (`current`, as
    stored) only where resuming allows and the parameter shapes stay the same."""
    path = run_dir.job_config
    if resumed is None or not path.is_file():
        return []
    try:
        trained_with = json.loads(path.read_text())
    except ValueError as error:
        return [f"{path}: unreadable ({error}); it records the config the checkpoints were trained with"]
    problems = [
        f"resuming {resumed} with a changed config (allow with resume_allow_changes=[KEY,...]): {change}"
        for change in changed_keys(trained_with, current, job.resume_allow_changes)
    ]
    reshaped = shape_changes(trained_with["model"], job.model)
    if reshaped:
        problems.append(f"resuming {resumed}: the model config changes {len(reshaped)} parameter shape(s), "
                        f"e.g. {'; '.join(reshaped[:3])}")  # fmt: skip
    return problems
