"""The job config: every Hydra group as a typed dataclass, registered as Hydra structured configs.

`conf/config.yaml` starts from `job_schema` (`JobConfig`), so Hydra checks every preset YAML, every sweep
file and every command-line override against these dataclasses while composing: an unknown key
(`+eval.no_such_key=1`, a misspelt key in `conf/model/tiny.yaml`) or a value of the wrong type
(`train.lr=abc`) is refused before anything runs, naming the key. `job_config(cfg)` is the one conversion
from a composed config to typed objects; each group's own rules (`__post_init__`) run there.

One source per default: the dataclasses hold every default (ModelConfig's are MobileLLM-125M, TrainConfig's
the paper's recipe), and a preset YAML states only what differs from them or from the preset it extends
(tests/test_config.py checks it); `conf/config.yaml` holds only the defaults list and Hydra's settings.

Torch-free: the CLIs compose and check configs without building anything.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablations.data.config import DataConfig, TokenizerConfig
from ablations.device.config import DeviceConfig
from ablations.eval.config import EvalConfig
from ablations.model.config import ModelConfig
from ablations.records.errors import ConfigError
from ablations.search.config import OptunaTrialConfig, SolveSpec
from ablations.search.sweep import register_resolvers, solve_model
from ablations.train.config import LoggerConfig, TrainConfig, TrainerConfig

CONF_DIR = Path(str(importlib.resources.files("conf")))  # the Hydra tree, installed as the package `conf`
SCHEMA_NAME = "job_schema"


@dataclass
class ScaleConfig:
    """Which size a sweep runs at (`conf/scale/`): the paper's, or shrunk to CPU size."""

    name: str = "none"
    """`none` (a plain job), `paper`, `paper_final` or `smoke`; part of a named sweep's directory."""
    shapes: str = "paper"
    """Which `tables.<table>.<shapes>` entry of a sweep file its model fields read (`paper` or `smoke`)."""


@dataclass
class JobConfig:
    """One job: train, evaluate and record one architecture variant."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    tokenizer: TokenizerConfig = MISSING
    train: TrainConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = MISSING
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    """The optional on-device stage after evaluation (`device.enabled=true`): ExecuTorch export and timing."""
    seed: int = 0
    """Seeds the model init, the data order and every RNG."""
    seeds: int = 1
    """A paper sweep (`+sweep=<name>`) runs each variant under seeds 0 … seeds-1 (its `seed` sweep reads
    this); the records of a variant's seeds are pooled by the analysis. A plain job runs `seed` alone."""
    name: str | None = None
    """The variant's name in records and loggers; None → its axes (`axis=value,…`) or the model preset."""
    sweep: str | None = None
    """Set by sweep files: the W&B group and the record's `sweep`. `sweep` is also the config group of those
    files, so the command line picks one with `+sweep=<name>` and cannot set this key."""
    axes: dict[str, Any] = field(default_factory=dict)
    """Set by sweeps: the axis values that define this variant (W&B tags, analysis columns)."""
    callbacks: dict[str, Any] = field(default_factory=dict)
    """Extra Lightning callbacks by name, each a `{_target_: class, …}` node that Hydra instantiates."""
    plan_only: bool = False
    """Print the plan (steps, batch, accumulation, world size, estimated hours) and exit before data or model."""
    ckpt_path: str | None = "auto"
    """`auto`: resume from `<run dir>/checkpoints/last.ckpt` when present; null: fresh; `last`; or a path."""
    force: bool = False
    """Run again in a run dir whose record is `complete` (otherwise the job refuses and changes nothing)."""
    resume_allow_changes: list[str] = field(default_factory=list)
    """Config keys (`train.lr`, or a group `train`) a resumed run may change from the run it continues;
    others that changed make the job refuse (operational keys, e.g. `eval.*`, `logger.*`, are always allowed)."""
    solve: Any = None
    """Fit the model to a parameter budget: a `SolveSpec` (`{vary: dim|ffn_hidden, params: N | match: {…}}`)
    or null. Untyped here because OmegaConf resolves an interpolation merged into a typed node against the
    file it comes from, and a sweep picks a whole spec (or null) by interpolation; `job_config` types it."""
    skip_variants: list[Any] = field(default_factory=list)
    """`[{axes: {...}, reason: ...}]`: variants of a sweep that are logged and not run."""
    skip_invalid: bool = False
    """A variant whose model config breaks a rule is skipped (logged), not recorded as failed."""
    optuna: OptunaTrialConfig = field(default_factory=OptunaTrialConfig)
    """Set by the Optuna sweeper for the trial this job runs."""
    tables: dict[str, Any] = field(default_factory=dict)
    """Lookup tables of a sweep or search file, read by its interpolations (shapes per budget and scale)."""


GROUPS: tuple[str, ...] = ("model", "data", "tokenizer", "train", "trainer", "logger", "eval", "scale")


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent) and register the config resolvers."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=JobConfig)
    register_resolvers()


def compose_config(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """`conf/<config_name>.yaml` with Hydra overrides applied, as `run.py` would see it (hydra node included)."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=True)
    except HydraException as error:  # a bad override or preset file: Hydra's message names it
        raise ConfigError("config", [hydra_error_text(error)]) from None


def hydra_error_text(error: HydraException) -> str:
    """Hydra's message and its cause's (which names the key and the value), one bullet of a ConfigError:
    continuation lines indented, without OmegaConf's type lines or Hydra's search path; a group's available
    options on one line."""
    text = str(error) if error.__cause__ is None else f"{error}: {error.__cause__}"
    head, _, options = text.split("Config search path:")[0].partition("Available options in")
    if options:  # a missing preset: "Available options in 'model':\n\ta\n\tb" → one line
        group, _, names = options.partition(":")
        head += f"Available options in{group}: {', '.join(names.split())}"
    lines = [line.strip() for line in head.splitlines()]
    kept = [line for line in lines if line and not line.startswith(("reference_type=", "object_type="))]
    return "\n    ".join(kept)


def job_config(cfg: DictConfig) -> JobConfig:
    """The typed job of a composed config, with its `solve` applied; every broken rule of every group is
    listed in one ConfigError (group by group, each naming its keys)."""
    values: dict[str, Any] = {}
    problems = unknown_keys(cfg, JobConfig)
    for f in dataclasses.fields(JobConfig):
        try:
            node = cfg[f.name]
            values[f.name] = OmegaConf.to_object(node) if OmegaConf.is_config(node) else node
        except ConfigError as error:
            problems += [f"{f.name}: {v}" for v in error.violations]
        except OmegaConfBaseException as error:  # a missing mandatory value (`???`), a bad interpolation
            problems.append(f"{f.name}: {first_line(error)}")
    if problems:
        raise ConfigError("job config", problems)
    job = JobConfig(**values)
    if job.solve is not None:
        job.model = solve_model(solve_spec(job.solve), job.model)
    return job


def solve_spec(values: dict[str, Any]) -> SolveSpec:
    """The typed `solve` node (unknown keys refused by name)."""
    names = {f.name for f in dataclasses.fields(SolveSpec)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            "job config", [f"solve.{key}: unknown key; SolveSpec has {sorted(names)}" for key in unknown]
        )
    return SolveSpec(**values)


def unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Keys a command line added with `+` to a typed node (Hydra opens the node for them), recursively."""
    names = {f.name for f in dataclasses.fields(schema)}
    problems = []
    for key in node:
        if prefix == "" and key == "hydra":
            continue
        if key not in names:
            problems.append(f"{prefix}{key}: unknown key; {schema.__name__} has {sorted(names)}")
            continue
        child = node._get_node(key)
        child_type = OmegaConf.get_type(child) if OmegaConf.is_dict(child) else None
        if child_type is not None and dataclasses.is_dataclass(child_type):
            problems += unknown_keys(child, child_type, f"{prefix}{key}.")  # type: ignore[arg-type]
    return problems


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def composed_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain data without Hydra's node (interpolations resolved where they resolve),
    for the record of a job whose config could not be typed."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)  # type: ignore[union-attr]
    resolved: dict[str, Any] = {}
    for key, value in plain.items():  # type: ignore[union-attr]
        try:
            node = cfg[key]
            resolved[str(key)] = (
                OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
            )
        except OmegaConfBaseException:
            resolved[str(key)] = value
    return resolved


def group_choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for a config group (e.g. `model` → `mobilellm_125m`), or '?' if unknown."""
    try:
        return str(cfg.hydra.runtime.choices[group])
    except Exception:  # composed without the hydra node
        return "?"


register_configs()  # before any compose: run.py's @hydra.main and the sweeper plugin import this module
