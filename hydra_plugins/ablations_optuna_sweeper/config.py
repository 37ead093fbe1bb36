"""`hydra/sweeper=ablations_optuna`: the sweeper's typed config, registered in Hydra's ConfigStore.

No `from __future__ import annotations`: Hydra's plugin scan executes this module outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class AblationsOptunaSweeperConf:
    _target_: str = "hydra_plugins.ablations_optuna_sweeper.optuna_sweeper.AblationsOptunaSweeper"
    study_name: str = "search"
    """The study's name in the storage: a re-run with the same name resumes it."""
    storage: Any = None
    """Optuna RDB URL: null → $ABLATIONS_OPTUNA_STORAGE, else sqlite:///<hydra.sweep.dir>/optuna.db;
    `postgresql+psycopg2://...` for many nodes. A URL with a password belongs in that environment variable
    (Hydra writes command-line values into every job's .hydra/ dumps); jobs get the URL through it, and
    everything the platform writes masks the password."""
    heartbeat_interval: int = 60
    """Seconds between a running trial's heartbeats (recorded by its job)."""
    grace_period: int = 180
    """A RUNNING trial without a heartbeat for this long is failed when a sweep (re)starts: its job died."""
    objectives: list[str] = field(default_factory=lambda: ["val_loss"])
    """Minimised, in order: `val_loss` (the job's final validation loss), `params` (total parameters), or a
    dotted path into the job's record, e.g. `device.decode_ms` (one decode step on the device, measured by
    the job's device stage: `device.enabled=true`)."""
    sampler: str = "auto"
    """`auto` (TPE for one objective, NSGA-II for several), `tpe`, `nsga2`, `random` or `grid`."""
    seed: Any = None
    """Sampler seed (null: random)."""
    n_trials: int = 20
    """Launched trials the study should hold (a resumed study counts its earlier ones; infeasible ones don't count)."""
    n_jobs: int = 1
    """Trials asked per batch; the feasible ones are launched together (a parallel launcher, e.g. SLURM,
    runs a batch at once). The last batch may take the study up to n_jobs - 1 trials past n_trials."""
    max_params: Any = None
    """Hard budget in total parameters: a trial over it is pruned before launch (never trained)."""
    min_params: Any = None
    """Optional lower bound on total parameters (keeps the search near the budget)."""
    max_flops_per_token: Any = None
    """Optional budget of training FLOPs per token (`ablations.budget.flops_per_token`)."""
    pruner: str = "median"
    """`median`, `hyperband` or `none`: decides from the val/loss each trial reports during training."""
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    enqueue_trials: list[Any] = field(default_factory=list)
    """Parameter sets tried first (e.g. the paper's MobileLLM-125M point), as {override key: value}."""
    params: dict[str, Any] = field(default_factory=dict)
    """Search space in Hydra's sweep syntax: `choice(a,b)`, `range(lo,hi[,step])`, `interval(lo,hi)`,
    `tag(log, interval(lo,hi))`."""


ConfigStore.instance().store(
    group="hydra/sweeper", name="ablations_optuna", node=AblationsOptunaSweeperConf, provider="ablations"
)
