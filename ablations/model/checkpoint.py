"""The native model directory: any variant (ReLU FFN and layer sharing included) as safetensors + JSON.

    <dir>/model_config.json   ModelConfig fields
    <dir>/model.safetensors   our state dict (stored blocks only)
    <dir>/tokenizer files     when a tokenizer is attached (HF `save_pretrained` layout)

Training, evaluation and export all meet at this format; `hf_interop` converts it to/from LLaMA. Lightning
`.ckpt` files are read here too, as data only (`load_checkpoint_data`), by evaluation and by resume checks.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.records.atomic import atomic_write
from ablations.records.errors import ConfigError

CONFIG_FILE = "model_config.json"
WEIGHTS_FILE = "model.safetensors"
DEFINING_FIELDS: tuple[str, ...] = tuple(
    name
    for name in ModelConfig.__dataclass_fields__
    if name not in ("ffn_multiplier", "multiple_of", "init_std")
)
"""The fields a saved model's config must state: every one that defines its shapes or its computation. A
default would silently build another model (`ffn_multiplier` and `multiple_of` only derive `ffn_hidden`,
which is stated; `init_std` only initialises)."""


def save_model_dir(model: MobileLLM, out_dir: str | Path, tokenizer: Any = None) -> Path:
    """Write `model` (and `tokenizer`, anything with `save_pretrained`) to `out_dir`; files land atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(out / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    atomic_write(out / CONFIG_FILE, lambda p: p.write_text(text))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


class CheckpointError(ValueError):
    """A model file that cannot be read (truncated, corrupted, not safetensors); the message names it."""


class UnsafeCheckpoint(CheckpointError):
    """A `.ckpt` that cannot be read as plain data (tensors, numbers, strings, containers)."""


def load_checkpoint_data(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A `.ckpt` file's contents as data: tensors and plain containers only, never code (weights_only;
    memory-mapped, so checking a large checkpoint reads little of it).

    A file that needs anything else to load (a pickled object, a crafted payload) is refused, named.
    """
    try:
        return torch.load(str(path), map_location=device, weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpoint(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain data, which loading "
            f"would execute ({str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise UnsafeCheckpoint(
            f"{path}: not a readable checkpoint ({type(error).__name__}: {error})"
        ) from None


def read_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (data only: the format holds no code), or an error naming it."""
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def saved_model_config(values: Any, where: str) -> ModelConfig:
    """The ModelConfig a saved model states (`where` names it in errors): a mapping with every defining
    field, each valid, and no unknown one."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{where}: a JSON {type(values).__name__}, not the model config's fields")
    missing = [name for name in DEFINING_FIELDS if name not in values]
    if missing:
        raise CheckpointError(
            f"{where}: missing field(s) {missing}; a saved model states every field that defines its shapes "
            "and computation (a default would build another model)"
        )
    try:
        return ModelConfig.from_dict(values)
    except ConfigError as error:
        raise CheckpointError(f"{where}: {'; '.join(error.violations)}") from None
    except TypeError as error:  # a value of the wrong type that no rule could compare
        raise CheckpointError(f"{where}: {error}") from None


def check_weights_match(
    model: MobileLLM, tensors: dict[str, torch.Tensor], weights: str, config: str
) -> None:
    """The tensors must be exactly the parameters the config builds, shape for shape; otherwise a
    CheckpointError names both sources and the first differences."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    differences = [
        f"{key} is {found[key]} in the weights, {expected[key]} by the config"
        for key in sorted(expected.keys() & found.keys())
        if expected[key] != found[key]
    ]
    differences += [f"{key} missing from the weights" for key in sorted(expected.keys() - found.keys())]
    differences += [f"{key} unknown to the config" for key in sorted(found.keys() - expected.keys())]
    if differences:
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise CheckpointError(f"{weights} does not match {config}: {'; '.join(differences[:3])}{more}")


def load_model_dir(src_dir: str | Path, device: str | torch.device = "cpu") -> MobileLLM:
    """The model saved by `save_model_dir` (its dtype as saved). A config that is not valid JSON, lacks a
    defining field or disagrees with the weights is a CheckpointError naming the file."""
    src = Path(src_dir)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src} is not a model directory: {name} is missing")
    config_path = src / CONFIG_FILE
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{config_path}: not a readable JSON model config ({error})") from None
    cfg = saved_model_config(values, str(config_path))
    with torch.device("meta"):
        model = MobileLLM(cfg)
    tensors = read_safetensors(src / WEIGHTS_FILE, device)
    check_weights_match(model, tensors, str(src / WEIGHTS_FILE), str(config_path))
    model.load_state_dict(tensors, strict=True, assign=True)
    return model
