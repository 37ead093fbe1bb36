"""The job side of the Optuna search: heartbeats for the trial, report val/loss, stop when the pruner says so.

The sweeper passes the trial's handle as config (`optuna.study_name`, `optuna.trial_number`, the storage
URL masked) and the real storage URL in the ABLATIONS_OPTUNA_STORAGE environment variable, so the trial is
reopened from the RDB storage in whatever process runs the job (in-process with the basic launcher, one
SLURM job per trial with submitit).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import optuna
from lightning.pytorch.trainer.states import TrainerFn
from optuna.storages._heartbeat import get_heartbeat_thread

from ablations.records.errors import TrialPruned
from ablations.search.config import STORAGE_ENV, TRIAL_RUN_DIR, OptunaTrialConfig


def storage_url(cfg: OptunaTrialConfig) -> str:
    """The study's storage URL: the environment's (with its password), else the config's."""
    url = os.environ.get(STORAGE_ENV) or cfg.storage
    if not url:
        raise ValueError(f"a search trial needs its storage URL ({STORAGE_ENV} or optuna.storage)")
    return url


@contextmanager
def trial_heartbeat(cfg: OptunaTrialConfig, is_global_zero: bool, run_dir: Path) -> Iterator[None]:
    """Optuna's heartbeat for the job's trial while the job runs (global rank 0), and the trial's run dir
    (`TRIAL_RUN_DIR`): a killed job stops beating, and a resumed sweeper fails its trial as stale, or at once
    when the run dir's lock names a process of its host that is gone, instead of leaving it RUNNING."""
    if cfg.trial_number is None or not is_global_zero:
        yield
        return
    storage = optuna.storages.RDBStorage(storage_url(cfg), heartbeat_interval=cfg.heartbeat_interval)
    study_id = storage.get_study_id_from_name(str(cfg.study_name))
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, cfg.trial_number)
    storage.set_trial_user_attr(trial_id, TRIAL_RUN_DIR, str(run_dir))
    with get_heartbeat_thread(trial_id, storage):  # Optuna's own thread (what study.optimize runs)
        yield


def build_pruner(name: str, n_startup_trials: int = 5, n_warmup_steps: int = 0) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"optuna.pruner must be median, hyperband or none (got {name!r})")


def open_trial(
    study_name: str, storage: str, trial_number: int, pruner: optuna.pruners.BasePruner
) -> optuna.Trial:
    """The running trial `trial_number` of a stored study, as an object that can report and prune."""
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
    return optuna.Trial(study, trial_id)


class OptunaPruning(L.Callback):
    """After each validation during fit: report val/loss at the optimizer step; raise TrialPruned when the
    pruner decides (rank 0 decides, every rank follows). Multi-objective studies cannot prune: no-op."""

    def __init__(self, optuna_cfg: OptunaTrialConfig) -> None:
        self.cfg = optuna_cfg
        self.trial: optuna.Trial | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and self.trial is None:
            pruner = build_pruner(self.cfg.pruner, self.cfg.n_startup_trials, self.cfg.n_warmup_steps)
            trial = open_trial(
                str(self.cfg.study_name), str(self.cfg.storage), int(self.cfg.trial_number or 0), pruner
            )
            self.trial = trial if len(trial.study.directions) == 1 else None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero and self.trial is not None:
            loss = trainer.callback_metrics.get("val/loss")
            if loss is not None:
                self.trial.report(float(loss), step=trainer.global_step)
                prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            raise TrialPruned(f"pruned at step {trainer.global_step} (val/loss reported to the study)")
