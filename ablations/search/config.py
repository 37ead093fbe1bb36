"""Typed nodes a sweep or a search sets in a job config: the solved-width spec and the Optuna trial handle.

Torch-free: Hydra composes these before any job starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ablations.records.errors import ConfigError

SOLVED_FIELDS: dict[str, tuple[str, ...]] = {
    "dim": ("dim", "n_heads", "n_kv_heads", "head_dim", "ffn_hidden"),
    "ffn_hidden": ("ffn_hidden",),
}
PRUNERS: tuple[str, ...] = ("median", "hyperband", "none")
STORAGE_ENV = "ABLATIONS_OPTUNA_STORAGE"
"""The environment variable that carries the study's storage URL (with its password) from the sweeper to
its jobs; the config's `optuna.storage` holds it masked."""
TRIAL_RUN_DIR = "run_dir"
"""The trial's user attribute naming its job's run dir, set by the job when it starts: a search that resumes
reads the run lock there (a trial whose process is gone is failed at once)."""


@dataclass
class SolveSpec:
    """The `solve` node: fit the job's model to a parameter budget by varying one axis."""

    vary: str = "dim"
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


@dataclass
class OptunaTrialConfig:
    """The trial a job runs for the Optuna sweeper (`hydra/sweeper=ablations_optuna`), which sets it."""

    study_name: str | None = None
    storage: str | None = None
    """The storage URL, password masked (the job reads the real URL from ABLATIONS_OPTUNA_STORAGE)."""
    trial_number: int | None = None
    """None: the job is not a search trial."""
    pruner: str = "median"
    """`median`, `hyperband` or `none`: the job reports val/loss, the pruner decides."""
    n_startup_trials: int = 5
    """Median pruner: no pruning before this many trials completed."""
    n_warmup_steps: int = 0
    """No pruning before this optimizer step."""
    heartbeat_interval: int = 60
    """Seconds between the trial's Optuna heartbeats, recorded by the job while it runs."""

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise ConfigError("optuna", [f"optuna.pruner must be one of {PRUNERS} (got {self.pruner!r})"])
