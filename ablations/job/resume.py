"""What a resumed job may change from the run it continues.

A resumed run continues a checkpoint: its model, data, tokenizer, recipe and seed must be the ones the
checkpoint was trained with, or the record would describe a run that never happened (a changed LR is not
applied to a restored schedule; a changed shape fails deep inside the state-dict load). Operational keys
(evaluation, the device stage, logging, hardware, checkpoint and validation cadence) may change freely;
others only when listed in `resume_allow_changes`.
"""

from __future__ import annotations

from typing import Any

import torch

from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig

# key prefixes a resumed run may always change
OPERATIONAL: tuple[str, ...] = (
    "eval.",
    "device.",
    "logger.",
    "trainer.",
    "callbacks",
    "name",
    "sweep",
    "axes",
    "tables",
    "scale.",
    "skip_variants",
    "skip_invalid",
    "ckpt_path",
    "force",
    "resume_allow_changes",
    "optuna.",
    "train.log_every_n_steps",
    "train.val_every_n_steps",
    "train.val_batches",
    "train.val_max_tokens",
    "train.ckpt_every_n_steps",
    "train.keep_checkpoints",
    "train.compile",
    "train.peak_tflops",
    "train.assumed_mfu",
    "train.device",
    "train.activation_checkpointing",
    "train.activation_checkpointing_every",
    "train.loss_chunk_tokens",
    "data.loader_workers",
    "plan_only",
    "data.num_proc",
    "data.progress",
    "data.verify_hashes",
    "data.cache_dir",
    "tokenizer.cache_dir",
)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → `a.b.c` keys (lists and scalars are values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_allowed(key: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    """Whether `key` is one of `prefixes` or lies under one (`train` and `train.` both cover `train.lr`)."""
    return any(key == p.rstrip(".") or key.startswith(p.rstrip(".") + ".") for p in prefixes)


def changed_keys(previous: dict[str, Any], current: dict[str, Any], allowed: list[str]) -> list[str]:
    """`key: old → new` for each key that differs and that a resumed run may not change."""
    old, new = flatten(previous), flatten(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key) and not is_allowed(key, (*OPERATIONAL, *allowed)):
            changes.append(f"{key}: {old.get(key)!r} → {new.get(key)!r}")
    return changes


def unknown_allowances(allowed: list[str], job: dict[str, Any]) -> list[str]:
    """Entries of `resume_allow_changes` that cover no key of the job config (a typo allows nothing)."""
    keys = list(flatten(job))
    return [
        f"resume_allow_changes: {entry!r} names no key of the job config"
        for entry in allowed
        if not any(is_allowed(key, [entry]) for key in keys)
    ]


def shape_changes(trained_with: dict[str, Any], model: ModelConfig) -> list[str]:
    """`name: old shape → new shape` for each parameter the changed model config reshapes (or adds or
    drops): the checkpoint's weights cannot load into it, whatever `resume_allow_changes` allows."""
    if trained_with == model.to_dict():
        return []
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        old = {
            k: tuple(v.shape) for k, v in MobileLLM(ModelConfig.from_dict(trained_with)).state_dict().items()
        }
        new = {k: tuple(v.shape) for k, v in MobileLLM(model).state_dict().items()}
    return [
        f"parameter {name}: {old.get(name)} → {new.get(name)} (the checkpoint's weights cannot load)"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
