"""Optuna architecture search as a Hydra sweeper, on Optuna's ask/tell API.

Each batch: ask trials → compose each trial's config → prune analytically the ones over the parameter
(or FLOP) budget, without launching them → launch the rest with the configured Hydra launcher → tell
each trial its objectives from the job's result record (`complete` → values; `pruned` → PRUNED, from the
val/loss the job reported to the study during training; anything else, or a non-finite loss → FAIL).
The study lives in an RDB storage (SQLite by default, PostgreSQL for many nodes) and resumes by name, with
Optuna's heartbeat: each job records its run dir and heartbeats for its trial, and a trial whose process was
killed is failed when a sweep starts or resumes (at once when its run lock names a process of this host that
is gone, else once its heartbeat is older than the grace period: `fail_stale_trials`), so it never stays
RUNNING nor counts toward `n_trials`. A storage that cannot be opened is refused before any trial is asked. The storage URL reaches jobs through an environment
variable; configs, overrides, logs and records only ever hold it with its password masked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from sqlalchemy.exc import SQLAlchemyError

from ablations.job.config import first_line, job_config
from ablations.model.counts import count_params, flops_per_token
from ablations.records.atomic import atomic_write_text
from ablations.records.errors import ConfigError
from ablations.records.lock import gone_holder
from ablations.records.result import read_result, write_result
from ablations.records.run_dir import RunDir
from ablations.records.secrets import mask_text
from ablations.search.config import STORAGE_ENV, TRIAL_RUN_DIR

from .config import AblationsOptunaSweeperConf  # noqa: F401  (registers hydra/sweeper=ablations_optuna)

log = logging.getLogger(__name__)
OBJECTIVES = {"val_loss": "train.val_loss", "params": "params.total"}
"""Objective names → their dotted path in the job's record; any other dotted path (`device.decode_ms`) is
read as it stands."""
RECORD_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
INFEASIBLE = "infeasible"
STATUS = "status"  # set when the sweeper tells a trial from its job's record


def distribution_of(override: Override) -> optuna.distributions.BaseDistribution:
    """Hydra sweep syntax → Optuna distribution: choice → categorical, range → int, interval → float/int."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution([_plain(v) for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(x, int) for x in (start, stop, step)):
            return optuna.distributions.IntDistribution(int(start), int(stop) - 1, step=int(step))
        return optuna.distributions.FloatDistribution(start, stop, step=step)
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(
        f"search parameter {override.get_key_element()}: use choice/range/interval, not {value!r}"
    )


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value)


def build_sampler(
    name: str, n_objectives: int, seed: int | None, space: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    if name == "auto":
        name = "tpe" if n_objectives == 1 else "nsga2"
    samplers = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    if name == "grid":  # every combination of a categorical space, each once
        choices = {k: list(d.choices) for k, d in space.items() if hasattr(d, "choices")}
        if len(choices) != len(space):
            raise ValueError("sampler=grid needs a space of choice(...) parameters only")
        return _AskTellGridSampler(choices, seed=seed)
    if name not in samplers:
        raise ValueError(f"hydra.sweeper.sampler must be one of {['auto', 'grid', *samplers]} (got {name!r})")
    return samplers[name](seed=seed)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its `study.stop()` once the grid is covered: that call only works inside
    `study.optimize`; this sweeper stops at n_trials."""

    def after_trial(self, *args: Any, **kwargs: Any) -> None:
        pass


class AblationsOptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = OmegaConf.create(conf)
        for objective in self.conf.objectives:
            if objective not in OBJECTIVES and not RECORD_PATH.fullmatch(str(objective)):
                raise ValueError(
                    f"hydra.sweeper.objectives: {objective!r} is neither one of {sorted(OBJECTIVES)} "
                    "nor a dotted path into the job's record (e.g. device.decode_ms)"
                )
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def storage_url(self) -> tuple[str, str]:
        """(URL, where it comes from): `hydra.sweeper.storage`, else the ABLATIONS_OPTUNA_STORAGE environment
        variable (the place for a URL with a password: a command-line value is written by Hydra into each
        job's .hydra/ dumps), else a SQLite file in the sweep dir."""
        if self.conf.storage:
            return str(self.conf.storage), "hydra.sweeper.storage"
        if os.environ.get(STORAGE_ENV):
            return os.environ[STORAGE_ENV], f"${STORAGE_ENV}"
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.sweep_dir.resolve() / 'optuna.db'}", "the sweep dir"

    def open_storage(self, url: str, source: str) -> optuna.storages.RDBStorage:
        """The study's RDB storage, opened (created) before any trial is asked; one ConfigError naming the
        URL (masked) and its source when it cannot be (an unwritable path, a bad URL, a missing driver, a
        server that refuses)."""
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=self.conf.heartbeat_interval, grace_period=self.conf.grace_period
            )
        except (SQLAlchemyError, OSError, ImportError) as error:
            reason = first_line(error)
            raise ConfigError(
                "Optuna storage", [f"{source}={mask_text(url)} cannot be opened: {mask_text(reason)}"]
            ) from None

    def search_space(self, arguments: list[str]) -> tuple[list[str], dict[str, Any]]:
        """(fixed overrides, {key: distribution}): the config's `params`, then sweeps on the command line."""
        parser = OverridesParser.create()
        configured = parser.parse_overrides([f"{k}={v}" for k, v in self.conf.params.items()])
        given = parser.parse_overrides(arguments)
        space = {o.get_key_element(): distribution_of(o) for o in configured}
        fixed: dict[str, str] = {}
        for override in given:  # the command line wins; for a key given twice, the last one
            key = override.get_key_element()
            if override.is_sweep_override():
                space[key] = distribution_of(override)
                fixed.pop(key, None)
            else:  # a value given on the command line is fixed, even for a key the config searches
                space.pop(key, None)
                fixed[key] = override.input_line
        return list(fixed.values()), space

    def sweep(self, arguments: list[str]) -> None:
        fixed, space = self.search_space(arguments)
        url, source = self.storage_url()
        storage = self.open_storage(url, source)
        os.environ[STORAGE_ENV] = url  # jobs (in-process, or SLURM jobs inheriting it) open the study with it
        study = optuna.create_study(
            study_name=self.conf.study_name,
            storage=storage,
            sampler=build_sampler(self.conf.sampler, len(self.conf.objectives), self.conf.seed, space),
            directions=["minimize"] * len(self.conf.objectives),
            load_if_exists=True,
        )
        for params in self.conf.enqueue_trials:
            study.enqueue_trial(OmegaConf.to_container(params, resolve=True), skip_if_exists=True)
        fail_killed_trials(study)  # trials whose job died without a word: FAIL, not RUNNING
        log.info("study %s in %s: %d trials so far", study.study_name, mask_text(url), len(study.trials))
        asked = 0
        while _launched(study) < self.conf.n_trials and asked < 20 * self.conf.n_trials:
            batch: list[tuple[optuna.trial.Trial, list[str]]] = []
            for _ in range(self.conf.n_jobs):  # asked together; the feasible ones are launched together
                trial = study.ask(space)
                asked += 1
                overrides = self.trial_overrides(fixed, trial, study.study_name, mask_text(url))
                reason = self.infeasible(overrides)
                if reason is not None:
                    trial.set_user_attr(INFEASIBLE, reason)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    log.info("trial %d pruned before launch: %s", trial.number, reason)
                    continue
                batch.append((trial, overrides))
            if not batch:
                continue
            returns = self.launcher.launch([o for _, o in batch], initial_job_idx=self.job_idx)
            self.job_idx += len(batch)
            for (trial, _), job in zip(batch, returns, strict=True):
                self.tell(study, trial, job)
        self.write_summary(study)

    def trial_overrides(
        self, fixed: Sequence[str], trial: optuna.trial.Trial, study_name: str, masked_storage: str
    ) -> list[str]:
        """The trial's job config: fixed and sampled values, and the trial handle (the storage URL masked:
        the job reads the real one from the environment)."""
        handle = [
            f"optuna.study_name={study_name}",
            f"optuna.storage='{masked_storage}'",
            f"optuna.trial_number={trial.number}",
            f"optuna.pruner={self.conf.pruner}",
            f"optuna.n_startup_trials={self.conf.n_startup_trials}",
            f"optuna.n_warmup_steps={self.conf.n_warmup_steps}",
            f"optuna.heartbeat_interval={self.conf.heartbeat_interval}",
            f"+axes.study={study_name}",
            f"+axes.trial={trial.number}",
        ]
        sampled = [f"{key}={_override_value(value)}" for key, value in trial.params.items()]
        return [*fixed, *sampled, *handle]

    def infeasible(self, overrides: list[str]) -> str | None:
        """Why a trial's config is over budget or invalid, from its composed config alone (no training)."""
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            job = job_config(cfg)
        except ConfigError as error:
            return f"invalid config: {error}"
        model_cfg = job.model
        total = count_params(model_cfg).total
        if self.conf.max_params is not None and total > int(self.conf.max_params):
            return f"{total:,} parameters > budget {int(self.conf.max_params):,}"
        if self.conf.min_params is not None and total < int(self.conf.min_params):
            return f"{total:,} parameters < minimum {int(self.conf.min_params):,}"
        if self.conf.max_flops_per_token is not None:
            seq_len = job.train.seq_len or model_cfg.max_seq_len
            flops = flops_per_token(model_cfg, seq_len)
            if flops > float(self.conf.max_flops_per_token):
                return f"{flops:,} FLOPs/token > budget {float(self.conf.max_flops_per_token):,.0f}"
        return None

    def tell(self, study: optuna.Study, trial: optuna.trial.Trial, job: Any) -> None:
        if study._storage.get_trial(trial._trial_id).state.is_finished():  # failed as stale meanwhile
            log.warning("trial %d was already finished (its heartbeat went stale)", trial.number)
            return
        record = _record_of(job)
        status = (record or {}).get("status")
        trial.set_user_attr(STATUS, status or "no record")
        if record and record.get("run_dir"):
            trial.set_user_attr("run_dir", record["run_dir"])
        if status == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        values = _objectives(record, self.conf.objectives) if status == "complete" else None
        if values is None:
            error = (record or {}).get("error")
            if status == "complete":  # e.g. device.decode_ms without the job's device stage
                error = f"the record lacks a finite value of {list(self.conf.objectives)}"
            trial.set_user_attr("error", str(error))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d failed (%s): %s", trial.number, status, error)
            return
        study.tell(trial, values)

    def write_summary(self, study: optuna.Study) -> None:
        """`<sweep dir>/optuna_summary.json`: the best trial(s) and the count of trials per state."""
        states: dict[str, int] = {}
        for t in study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        best = [{"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials]
        summary = {"study": study.study_name, "states": states, "best": best}
        atomic_write_text(self.sweep_dir / "optuna_summary.json", json.dumps(summary, indent=2) + "\n")
        log.info("study %s: %s; best %s", study.study_name, states, best)


def fail_killed_trials(study: optuna.Study) -> None:
    """Fail the RUNNING trials whose job was killed (a sweep killed with its in-process job, a SLURM job
    cancelled), so they never stay RUNNING nor count toward n_trials: at once when the trial's run lock names
    a process of this host that is gone, whatever the grace period; else once their heartbeat is older than
    it (Optuna's `fail_stale_trials`). Their `running` records are marked failed."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    killed = set()
    for trial in running:
        run_dir = trial.user_attrs.get(TRIAL_RUN_DIR)
        holder = gone_holder(run_dir) if run_dir else None
        if holder is not None:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            mark_killed(trial, f"its job's process ({holder}) is gone")
            killed.add(trial.number)
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    for trial in running:
        if trial.number not in killed and states[trial.number] == optuna.trial.TrialState.FAIL:
            mark_killed(trial, "its heartbeat stopped for longer than the grace period")


def mark_killed(trial: optuna.trial.FrozenTrial, reason: str) -> None:
    """Log a trial failed as killed, and mark its job's record failed if it was left `running`."""
    log.warning("trial %d failed: %s", trial.number, reason)
    run_dir = trial.user_attrs.get(TRIAL_RUN_DIR)
    try:
        record = read_result(run_dir) if run_dir else None
    except ValueError:  # unreadable: left as it is, for the user to see
        return
    if record is not None and record.get("status") == "running":
        error = f"killed: {reason}; trial {trial.number} was failed when the search resumed"
        path = RunDir(run_dir).record
        killed_at = path.stat().st_mtime_ns  # kept: the multirun summary counts only the jobs this sweep ran
        write_result(run_dir, {**record, "status": "failed", "error": error})
        os.utime(path, ns=(killed_at, killed_at))


def _launched(study: optuna.Study) -> int:
    """Trials that count toward n_trials: launched (not infeasible), and not failed as stale (a killed job
    whose trial was never told: it is re-done)."""
    stale = optuna.trial.TrialState.FAIL
    return sum(
        1
        for t in study.trials
        if INFEASIBLE not in t.user_attrs and not (t.state == stale and STATUS not in t.user_attrs)
    )


def _record_of(job: Any) -> dict[str, Any] | None:
    try:
        run_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # the launcher returned no config: nothing ran
        return None
    try:
        return read_result(run_dir)
    except ValueError:  # an unreadable record: the trial failed
        return None


def _record_value(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a record (None where a key is missing)."""
    value: Any = record
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _objectives(record: dict[str, Any] | None, names: Sequence[str]) -> list[float] | None:
    """The objectives' values in the record (`OBJECTIVES`, or a dotted path), or None where one is missing,
    not a number or not finite."""
    if record is None:
        return None
    values = [_record_value(record, OBJECTIVES.get(name, name)) for name in names]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        return None  # a NaN loss (or a missing measurement) is a failed trial, never a value that crashes the study
    return [float(v) for v in values]
