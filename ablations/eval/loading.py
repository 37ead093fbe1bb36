"""Loading a model and its tokenizer for evaluation from any checkpoint form the platform writes.

- a native model directory (`ablations.checkpoint.save_model_dir`: `model_config.json` + safetensors),
- a Hugging Face LLaMA export (`config.json` + safetensors, `ablations.hf_interop.export_llama`),
- a Lightning `.ckpt` whose `state_dict` keys are `model.<our keys>` and whose
  `hyper_parameters["model_config"]` is the ModelConfig dict (the training module saves that way).

The tokenizer is read with `AutoTokenizer.from_pretrained` from the model directory, or for a `.ckpt` from
its folder or the folder above, and for a training run's own checkpoint (`<run dir>/checkpoints/last.ckpt`)
from the run's model export (`RunDir.model`), unless given explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import (
    CheckpointError,
    check_weights_match,
    load_checkpoint_data,
    load_model_dir,
    saved_model_config,
)
from ablations.model.hf_interop import import_llama
from ablations.records.run_dir import RunDir

LIGHTNING_PREFIX = "model."


def load_lightning_ckpt(path: str | Path, device: str | torch.device = "cpu") -> tuple[MobileLLM, dict]:
    """The MobileLLM inside a Lightning checkpoint, and the checkpoint dict (for step / tokens seen)."""
    ckpt = load_checkpoint_data(path, device)
    hparams = ckpt.get("hyper_parameters") or {}
    if "model_config" not in hparams or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"{path}: hyper_parameters['model_config'] or state_dict is missing; cannot rebuild the model"
        )
    where = f"{path}: hyper_parameters['model_config']"
    cfg = saved_model_config(hparams["model_config"], where)
    state = {
        key.removeprefix(LIGHTNING_PREFIX): value
        for key, value in ckpt["state_dict"].items()
        if key.startswith(LIGHTNING_PREFIX)
    }
    model = MobileLLM(cfg)
    check_weights_match(model, state, f"{path}: state_dict", where)
    model.load_state_dict(state, strict=True)
    return model, ckpt


def find_tokenizer_dir(ckpt: Path) -> Path:
    """The folder holding the tokenizer of a checkpoint: the checkpoint dir itself, or for a `.ckpt` its
    folder or the folder above, and for a run's own checkpoint (`<run dir>/checkpoints/x.ckpt`) the run's
    model export."""
    run = RunDir.of_checkpoint(ckpt)
    exported = [run.model] if run is not None else []
    candidates = [ckpt] if ckpt.is_dir() else [ckpt.parent, ckpt.parent.parent, *exported]
    for folder in candidates:
        if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
            return folder
    raise FileNotFoundError(
        f"no tokenizer found for {ckpt} (looked for tokenizer.json in {', '.join(map(str, candidates))}); "
        "pass tokenizer=DIR"
    )


def load_for_eval(
    path: str | Path, tokenizer_dir: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[MobileLLM, Any]:
    """(model in eval mode, tokenizer) from a native model dir, an HF LLaMA export or a Lightning `.ckpt`."""
    from transformers import AutoTokenizer  # heavy (~2 s): only when a checkpoint is loaded

    src = Path(path)
    if src.is_file() and src.suffix == ".ckpt":
        model, _ = load_lightning_ckpt(src, device)
    elif (src / "model_config.json").is_file():
        model = load_model_dir(src, device)
    elif (src / "config.json").is_file():
        model = import_llama(src).to(device)
    else:
        raise FileNotFoundError(
            f"{src} is not a checkpoint: expected a .ckpt file, a model directory (model_config.json) "
            "or a Hugging Face LLaMA export (config.json)"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or find_tokenizer_dir(src)))
    return model.eval(), tokenizer


def tokens_seen(path: str | Path) -> int | None:
    """Training tokens recorded in a Lightning checkpoint (`tokens_seen` at top level or in loops), if any."""
    src = Path(path)
    if not (src.is_file() and src.suffix == ".ckpt"):
        return None
    ckpt = load_checkpoint_data(src)
    for holder in (ckpt, ckpt.get("hyper_parameters") or {}):
        if "tokens_seen" in holder:
            return int(holder["tokens_seen"])
    return None
