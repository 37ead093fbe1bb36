"""The run dir's Hydra files, written only by a job that takes the run dir, with their secrets masked.

Hydra writes `.hydra/*.yaml` (the config, Hydra's config, the overrides) and opens the job's log file
(`run.log`) before the job can look at the run dir: a second run refused because the dir is busy, or a run
of a complete dir with nothing to do, would overwrite the running (or finished) run's dumps with its own
overrides and append to its log. So `conf/config.yaml` turns Hydra's dumps off (`hydra.output_subdir: null`)
and makes the log file a `RunLogHandler`: run.py holds the dumps (`hold_hydra_dumps`), and the job writes
them to `<run dir>/.hydra/` and opens its log (`take_run_dir`) when it writes its first record; a refused or
no-op run writes neither. A sweep's `multirun.yaml` (and dumps in a user-set `hydra.output_subdir`), which
Hydra still writes itself, are rewritten masked as each job starts (`mask_hydra_dumps`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from ablations.records.atomic import atomic_write_text
from ablations.records.run_dir import RunDir
from ablations.records.secrets import mask_secrets

_taken: set[Path] = set()  # run dirs this process's jobs took
_held_dumps: dict[Path, dict[str, str]] = {}  # run dir → {file name: masked YAML}, until the job takes it


def masked_yaml(node: Any) -> str:
    """A config node as YAML (interpolations kept, as Hydra dumps it), secrets masked."""
    plain = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    return OmegaConf.to_yaml(OmegaConf.create(mask_secrets(plain)))


def mask_yaml_file(path: Path) -> None:
    """Rewrite one YAML file with its secrets masked (unchanged files are left alone)."""
    plain = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    masked = mask_secrets(plain)
    if masked != plain:
        atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(masked)))


def mask_hydra_dumps() -> None:
    """Mask the dumps Hydra wrote itself before this job started: a sweep's `multirun.yaml`, and the files of
    a `hydra.output_subdir` set on the command line (ours is null: see `hold_hydra_dumps`)."""
    hydra_cfg = HydraConfig.get()
    paths: list[Path] = []
    if hydra_cfg.output_subdir is not None:
        paths += sorted((Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml"))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        paths.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    for path in paths:
        if path.is_file():
            mask_yaml_file(path)


def hold_hydra_dumps(task_cfg: Any) -> None:
    """Keep this Hydra job's dumps (config, Hydra's config, overrides; masked) until it takes its run dir."""
    hydra_cfg = HydraConfig.get()
    dumps = {
        "config.yaml": task_cfg,
        "hydra.yaml": {"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)},
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    run_dir = _absolute(hydra_cfg.runtime.output_dir)
    _held_dumps[run_dir] = {name: masked_yaml(node) for name, node in dumps.items()}


def take_run_dir(run_dir: str | Path, is_global_zero: bool) -> None:
    """The run dir is this job's from now on: the held Hydra dumps are written to `<run dir>/.hydra/` (by the
    global-zero rank), and every `RunLogHandler` of the dir writes the lines it held and all that follow."""
    run_dir = _absolute(run_dir)
    _taken.add(run_dir)
    dumps = _held_dumps.pop(run_dir, {})
    if is_global_zero:
        for name, text in dumps.items():
            atomic_write_text(RunDir(run_dir).hydra / name, text)
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.copy().values()]  # threads add loggers
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, RunLogHandler) and handler.run_dir == run_dir:
                handler.write_held()


class RunLogHandler(logging.FileHandler):
    """Hydra's job log file (`<run dir>/<job name>.log`, `hydra.job_logging.handlers.file`), opened only once
    the job takes its run dir (`take_run_dir`): the lines logged before are held and written then, and never
    when the job is refused (run dir in use, bad input found before its record) or has nothing to do."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None) -> None:
        super().__init__(filename, mode, encoding, delay=True)  # delay: no empty file before the job takes it
        self.run_dir = Path(self.baseFilename).parent
        self.held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.run_dir in _taken:
            super().emit(record)
        else:
            self.held.append(record)

    def write_held(self) -> None:
        """Write the lines held until now (the run dir was taken)."""
        self.acquire()
        try:
            for record in self.held:
                super().emit(record)
            self.held.clear()
        finally:
            self.release()


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))
