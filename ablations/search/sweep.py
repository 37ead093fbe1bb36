"""What a declarative sweep needs beyond plain Hydra: solved widths, stable run dirs, skipped variants.

- `solve_model(spec, model)`: the `solve` node of a job config fits the model to a parameter budget with
  `ablations.model.counts.solve_iso_params`, so sweep files name a budget (or a reference shape) and never
  a hand-typed width. The job config's typed conversion applies it, so every job, CLI and test sees it.
- Resolvers (`register_resolvers`): `ablations.sweep_dir` and `ablations.variant_dir` give every variant of
  a named sweep a stable directory per seed (`multirun/<sweep>/<scale>/<axis=value,...>/seed=<n>`), so a
  re-run finds the records it already completed; `ablations.mul` multiplies (head counts → widths in the search spaces).
- `skip_reason(cfg)`: a variant a sweep declares not worth running (a duplicate, an invalid shape), with
  the reason that is logged instead of training.

No torch import: Hydra resolves these while composing, before any job starts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablations.model.config import ModelConfig
from ablations.model.counts import count_params, solve_iso_params
from ablations.records.errors import ConfigError
from ablations.search.config import SolveSpec


def solve_budget(spec: SolveSpec, template: ModelConfig) -> int:
    """The spec's budget in total parameters: given, or the count of the `match` reference shape."""
    if spec.params is not None:
        return int(spec.params)
    return count_params(dataclasses.replace(template, **(spec.match or {}))).total


def solve_model(spec: SolveSpec, template: ModelConfig) -> ModelConfig:
    """`template` fitted to the spec's budget (see `ablations.model.counts.solve_iso_params`)."""
    solved = solve_iso_params(solve_budget(spec, template), template, vary=spec.vary)  # type: ignore[arg-type]
    return dataclasses.replace(solved, **(spec.set_after or {}))


def skip_reason(cfg: DictConfig) -> str | None:
    """Why this variant is not run, or None. Two declarative sources:

    - `skip_variants`: a list of `{axes: {...}, reason: ...}`; a variant whose axes contain those values (an
      axis given a list: any of them) is skipped;
    - `skip_invalid: true`: a model config that breaks a rule (e.g. more kv-heads than heads) is skipped
      with the rule as the reason, instead of being recorded as a failure.
    """
    axes = _plain(cfg.get("axes")) or {}
    for rule in _plain(cfg.get("skip_variants")) or []:
        wanted = rule.get("axes", {})
        if all(str(axes.get(k)) in map(str, v if isinstance(v, list) else [v]) for k, v in wanted.items()):
            return str(rule.get("reason", f"skipped: {wanted}"))
    if cfg.get("skip_invalid"):
        try:
            OmegaConf.to_object(cfg.model)
        except ConfigError as error:
            return f"invalid model config: {error}"
    return None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def sweep_dir(sweep: str | None, scale: str | None, started: str) -> str:
    """`multirun/<sweep>/<scale>` for a named sweep (stable, so re-runs find their records); else
    `multirun/<started>`, the launch time from Hydra's `${now:}`, which Hydra caches in the config and
    hands to every job (and submitit pickles with it), so each task and each requeue of a multirun
    computes the same directory."""
    if not sweep:
        return f"multirun/{started}"
    return f"multirun/{sweep}/{scale or 'default'}"


def variant_name(axes: Any) -> str:
    """`axis=value,...` (sorted, path-safe): a sweep variant's name, the same for each of its seeds."""
    items = _plain(axes) or {}
    text = ",".join(f"{k}={items[k]}" for k in sorted(items))  # type: ignore[index]
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def variant_dir(axes: Any, job_num: Any, seed: Any) -> str:
    """`<variant name>/seed=<seed>` when the variant has axes (one folder per seed, so `seeds=N` runs N
    records side by side; an Optuna trial, one run, passes no seed), else the job number (ad-hoc multiruns)."""
    if not (_plain(axes) or {}):
        return str(job_num)
    return variant_name(axes) if seed is None else f"{variant_name(axes)}/seed={seed}"


def table_row(table: str, key: str, _root_: DictConfig) -> Any:
    """`${ablations.row:TABLE,KEY}`: the value KEY (dotted for nested values) of this job's row of the sweep
    file's table `tables.TABLE`, whose `by` lists what picks the row, level by level: `scale` (the job's
    `scale.shapes`: paper, smoke, proxy_cpu, …) or an axis name (that axis's value):

        tables:
          reference:
            by: [scale, budget]
            rows: {paper: {125M: {dim: 512, n_heads: 8}, 350M: {...}}, smoke: {...}}
        model: {dim: "${ablations.row:reference,dim}"}
    """
    node = _root_.tables.get(table)
    if node is None or "by" not in node or "rows" not in node:
        raise ConfigError("sweep file", [f"tables.{table}: no such table with `by` and `rows`"])
    row, path = node.rows, []
    for level in node.by:
        value = str(_root_.scale.shapes if level == "scale" else _root_.axes.get(level))
        path.append(f"{level}={value}")
        if value not in row:
            raise ConfigError(
                "sweep file", [f"tables.{table}: no row for {', '.join(path)} (rows: {sorted(row)})"]
            )
        row = row[value]
    for part in key.split("."):
        if part not in row:
            raise ConfigError("sweep file", [f"tables.{table} row {', '.join(path)}: no key {key!r}"])
        row = row[part]
    return OmegaConf.to_container(row, resolve=True) if OmegaConf.is_config(row) else row


def register_resolvers() -> None:
    """Register the resolvers the configs use (idempotent)."""
    resolvers = {
        "ablations.sweep_dir": sweep_dir,
        "ablations.variant_dir": variant_dir,
        "ablations.row": table_row,
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
