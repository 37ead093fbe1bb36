"""What a declarative sweep needs beyond plain Hydra: solved widths, stable run dirs, skipped variants.

- `apply_solve(cfg)`: the `solve` node of a job config fits the model to a parameter budget with
  `ablations.budget.solve_iso_params`, so sweep files name a budget (or a reference shape) and never a
  hand-typed width. `compose_config` and `run.py` both apply it, so a composed config is what a job runs.
- Resolvers (`register_resolvers`): `ablations.sweep_dir` and `ablations.variant_dir` give every variant of
  a named sweep a stable directory (`multirun/<sweep>/<scale>/<axis=value,...>`), so a re-run finds the
  records it already completed; `ablations.mul` multiplies (head counts → widths in the search spaces).
- `skip_reason(cfg)`: a variant a sweep declares not worth running (a duplicate, an invalid shape), with
  the reason that is logged instead of training.

No torch import: Hydra resolves these while composing, before any job starts.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablations.budget import count_params, solve_iso_params
from ablations.errors import ConfigError
from ablations.model_config import ModelConfig

SOLVED_FIELDS: dict[str, tuple[str, ...]] = {
    "dim": ("dim", "n_heads", "n_kv_heads", "head_dim", "ffn_hidden"),
    "ffn_hidden": ("ffn_hidden",),
}


@dataclasses.dataclass(frozen=True)
class SolveSpec:
    """The `solve` node: fit the job's model to a parameter budget by varying one axis."""

    vary: str
    """`dim` (width, keeping head_dim and the heads/kv ratio) or `ffn_hidden`."""
    params: int | None = None
    """The budget in total parameters; or null with `match`."""
    match: dict[str, Any] | None = None
    """Model fields that turn the job's model into the reference whose parameter count is the budget
    (e.g. `{ffn_type: swiglu, ffn_hidden: null}`: a ReLU FFN sized to the SwiGLU model's count)."""
    set_after: dict[str, Any] | None = None
    """Model fields set after solving (the roadmap's emb-share step keeps the deeper step's width, then ties)."""

    def __post_init__(self) -> None:
        problems = []
        if self.vary not in SOLVED_FIELDS:
            problems.append(f"solve.vary must be one of {sorted(SOLVED_FIELDS)} (got {self.vary!r})")
        if (self.params is None) == (self.match is None):
            problems.append("solve needs exactly one of `params` (a budget) and `match` (a reference shape)")
        if self.params is not None and int(self.params) < 1:
            problems.append(f"solve.params must be positive (got {self.params})")
        if problems:
            raise ConfigError("solve", problems)

    def budget(self, template: ModelConfig) -> int:
        if self.params is not None:
            return int(self.params)
        return count_params(dataclasses.replace(template, **(self.match or {}))).total


def solve_model(spec: SolveSpec, template: ModelConfig) -> ModelConfig:
    """`template` fitted to the spec's budget (see `ablations.budget.solve_iso_params`)."""
    solved = solve_iso_params(spec.budget(template), template, vary=spec.vary)  # type: ignore[arg-type]
    return dataclasses.replace(solved, **(spec.set_after or {}))


def apply_solve(cfg: DictConfig) -> DictConfig:
    """Replace the solved fields of `cfg.model` with the solver's values (in place; no-op without `solve`)."""
    node = cfg.get("solve")
    if not node:
        return cfg
    values = OmegaConf.to_container(node, resolve=True)
    spec = SolveSpec(**values)  # type: ignore[arg-type]
    template = ModelConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))  # type: ignore[arg-type]
    solved = solve_model(spec, template)
    for field in (*SOLVED_FIELDS[spec.vary], *(spec.set_after or {})):
        cfg.model[field] = getattr(solved, field)
    return cfg


def skip_reason(cfg: DictConfig) -> str | None:
    """Why this variant is not run, or None. Two declarative sources:

    - `skip_variants`: a list of `{axes: {...}, reason: ...}`; a variant whose axes contain those values is skipped;
    - `skip_invalid: true`: a model config that breaks a rule (e.g. more kv-heads than heads) is skipped
      with the rule as the reason, instead of being recorded as a failure.
    """
    axes = _plain(cfg.get("axes")) or {}
    for rule in _plain(cfg.get("skip_variants")) or []:
        wanted = rule.get("axes", {})
        if all(str(axes.get(k)) == str(v) for k, v in wanted.items()):
            return str(rule.get("reason", f"skipped: {wanted}"))
    if cfg.get("skip_invalid"):
        try:
            ModelConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))  # type: ignore[arg-type]
        except ConfigError as error:
            return f"invalid model config: {error}"
    return None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def sweep_dir(sweep: str | None, scale: str | None) -> str:
    """`multirun/<sweep>/<scale>` for a named sweep (stable, so re-runs find their records); else by date."""
    if not sweep:
        return datetime.now().strftime("multirun/%Y-%m-%d/%H-%M-%S")
    return f"multirun/{sweep}/{scale or 'default'}"


def variant_dir(axes: Any, job_num: Any) -> str:
    """`axis=value,...` (sorted) when the variant has axes, else the job number (ad-hoc multiruns)."""
    items = _plain(axes) or {}
    if not items:
        return str(job_num)
    text = ",".join(f"{k}={items[k]}" for k in sorted(items))  # type: ignore[index]
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def register_resolvers() -> None:
    """Register the resolvers the configs use (idempotent)."""
    resolvers = {
        "ablations.sweep_dir": sweep_dir,
        "ablations.variant_dir": variant_dir,
        "ablations.mul": lambda *xs: _product(xs),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _product(values: tuple[Any, ...]) -> int | float:
    out: int | float = 1
    for value in values:
        out *= value
    return out
