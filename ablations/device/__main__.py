"""Export a model to an ExecuTorch program (XNNPACK) and measure it on this CPU, as the paper's Table 7 does:

    python -m ablations.device [model=PRESET] [model.KEY=VALUE ...] [quant=none|8da4w|w8a8] [threads=N]
                               [max_seq_len=N] [prompt_tokens=N] [warmup=N] [iterations=N] [out=DIR]
    python -m ablations.device ckpt=PATH [...]    a native model dir, a Hugging Face LLaMA dir or a .ckpt
    python -m ablations.device run=RUN_DIR [...]  a training run's model export (<RUN_DIR>/model)

A preset (default: tiny) gets random weights (seed 0): latency and size depend on its shapes alone. Writes
`<out>/program.pte` and `<out>/device.json` (default out: `<RUN_DIR>/device`, else
`device_out/<preset or checkpoint name>`) and prints the measurement. Needs the device extra
(`pip install -e ".[device]"`). Bad input exits 2, named.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from ablations.cli import exit_with_usage_if_asked
from ablations.device.config import DeviceConfig, missing_dependency
from ablations.device.export import LoweringError
from ablations.device.measure import measure
from ablations.eval.loading import load_lightning_ckpt
from ablations.job.config import compose_config, group_choice, job_config
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import CheckpointError, load_model_dir
from ablations.model.hf_interop import ConversionError, import_llama
from ablations.records.errors import ConfigError
from ablations.records.run_dir import RunDir
from ablations.records.secrets import cli_exit

SOURCE_KEYS = ("ckpt", "run")
CONFIG_KEYS = ("quant", "threads", "max_seq_len", "prompt_tokens", "warmup", "iterations")
OWN_KEYS = (*SOURCE_KEYS, "out", *CONFIG_KEYS)
DEFAULT_OUT = Path("device_out")
MIB = 1024 * 1024


class MissingExtra(RuntimeError):
    """executorch or torchao is not installed (the message names the extra to install)."""


def split_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(our own key=value arguments, the Hydra model overrides); any other argument is refused by name."""
    own: dict[str, str] = {}
    overrides: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key in OWN_KEYS and sep:
            own[key] = value
        elif sep and (key == "model" or key.startswith("model.")):
            overrides.append(arg)
        else:
            known = ", ".join(f"{k}=" for k in ("model", "model.KEY", *OWN_KEYS))
            raise ConfigError("device arguments", [f"{arg}: unknown argument (known: {known})"])
    if all(key in own for key in SOURCE_KEYS):
        raise ConfigError("device arguments", ["ckpt= and run= both given: measure one model at a time"])
    if overrides and any(key in own for key in SOURCE_KEYS):
        raise ConfigError("device arguments", [f"{overrides[0]}: model= overrides a preset, not ckpt=/run="])
    return own, overrides


def device_config(own: dict[str, str]) -> DeviceConfig:
    """The DeviceConfig of the command line (integers parsed; its rules name each bad key)."""
    values: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        if key not in own:
            continue
        if key == "quant":
            values[key] = own[key]
            continue
        try:
            values[key] = int(own[key])
        except ValueError:
            raise ConfigError("device arguments", [f"{key}={own[key]}: must be an integer"]) from None
    return DeviceConfig(**values)


def load_checkpoint(path: Path) -> MobileLLM:
    """The model of a native model dir, a Hugging Face LLaMA dir or a Lightning `.ckpt` (the forms
    `python -m ablations.evaluate` reads)."""
    if path.is_file() and path.suffix == ".ckpt":
        return load_lightning_ckpt(path)[0]
    if (path / "model_config.json").is_file():
        return load_model_dir(path)
    if (path / "config.json").is_file():
        return import_llama(path)
    raise FileNotFoundError(
        f"ckpt={path}: not a checkpoint (expected a .ckpt file, a model directory with model_config.json "
        "or a Hugging Face LLaMA export with config.json)"
    )


def preset_model(overrides: list[str]) -> tuple[MobileLLM, str]:
    """A preset's model (with its `model.*` overrides) at random weights, seed 0, and the preset's name."""
    cfg = compose_config(overrides)
    model_cfg = job_config(cfg).model
    torch.manual_seed(0)
    return MobileLLM(model_cfg), group_choice(cfg, "model")


def load_source(own: dict[str, str], overrides: list[str]) -> tuple[MobileLLM, str, Path]:
    """(the model to measure, its name, the default output folder) from ckpt=, run= or a preset."""
    if "run" in own:
        run = RunDir(own["run"])
        if not run.model.is_dir():
            raise FileNotFoundError(f"run={own['run']}: no model export at {run.model}")
        return load_checkpoint(run.model), run.path.name, run.device
    if "ckpt" in own:
        path = Path(own["ckpt"])
        if not path.exists():
            raise FileNotFoundError(f"ckpt={path}: no such file or directory")
        return load_checkpoint(path), path.stem, DEFAULT_OUT / path.stem
    model, preset = preset_model(overrides)
    return model, preset, DEFAULT_OUT / preset


def print_measurement(record: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("measure", justify="left")
    table.add_column("value", justify="right")
    rows = [
        ("program size", f"{record['pte_bytes'] / MIB:,.2f} MiB"),
        ("planned memory", f"{record['planned_memory_bytes'] / MIB:,.2f} MiB"),
        ("KV cache", f"{record['kv_cache_bytes'] / MIB:,.2f} MiB ({record['max_seq_len']} positions)"),
        ("peak RSS", f"{record['peak_rss_bytes'] / MIB:,.1f} MiB"),
        ("load ms", f"{record['load_ms']:.2f}"),
        ("init ms", f"{record['init_ms']:.2f}"),
        (f"prefill ms ({record['prompt_tokens']} tokens)", f"{record['prefill_ms']:.2f}"),
        ("prefill tok/s", f"{record['prefill_tok_s']:,.1f}"),
        ("decode ms", f"{record['decode_ms']:.3f}"),
        ("decode tok/s", f"{record['decode_tok_s']:,.1f}"),
        ("TTFT ms", f"{record['ttft_ms']:.2f}"),
    ]
    if record["val_loss_change"] is not None:
        rows.append(("val loss change", f"{record['val_loss_change']:+.4f}"))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = list(sys.argv[1:] if argv is None else argv)
    exit_with_usage_if_asked(args, __doc__)
    try:
        own, overrides = split_args(args)
        cfg = device_config(own)
        missing = missing_dependency()
        if missing is not None:
            raise MissingExtra(missing)
        model, name, out = load_source(own, overrides)
    except (ConfigError, CheckpointError, ConversionError, FileNotFoundError, MissingExtra) as error:
        raise cli_exit(error) from None  # named in the message; a traceback would add nothing
    out = Path(own.get("out") or out)
    try:
        record = measure(model, cfg, out)
    except LoweringError as error:  # names the axis value or op
        raise cli_exit(error) from None
    settings = f"quant={cfg.quant}, threads={cfg.threads}, max_seq_len={cfg.max_seq_len}"
    print_measurement(record, f"{name}: {settings}  ({out / RunDir.DEVICE_RECORD} written)")
    return record


def cli() -> None:
    """`mobilellm-device` (a console script exits with what its function returns: nothing, here)."""
    main()


if __name__ == "__main__":
    cli()
