"""The Hydra entry point of one job (`python run.py`, or `mobilellm-run` from an installed package): what a
launch decides before the stages run — the variant's name, a declared skip, a sweep's already complete
variant — and the exit code of the outcome (`ablations.job.outcome.EXIT_CODES`).

Lightning and lm-eval are imported only once a job runs (seconds): `--help` and a refused config stay fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ablations.job.config import CONF_DIR, hydra_error_text  # registers the job schema and resolvers
from ablations.job.hydra_dumps import hold_hydra_dumps, mask_hydra_dumps
from ablations.job.outcome import EXIT_CODES
from ablations.records.errors import ConfigError, DataError, RunDirLocked
from ablations.records.result import is_complete, read_result
from ablations.records.run_dir import RunDir
from ablations.records.secrets import install_log_masking, mask_text
from ablations.search.sweep import skip_reason, variant_name
from ablations.train.signals import PREEMPTION

log = logging.getLogger("run")


def variant_of(cfg: DictConfig) -> str:
    """The variant's name in records and loggers: `name`, else a sweep's axis values (the analysis pools a
    variant's seeds by it), else the model preset's name."""
    axes = dict(cfg.get("axes") or {})
    return cfg.get("name") or (
        variant_name(axes) if axes else HydraConfig.get().runtime.choices.get("model", "model")
    )


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """One job in Hydra's output dir; returns its validation loss (a sweeper's objective) or None."""
    PREEMPTION.install()  # first: a pre-emption signal from here on stops training at its first step
    mask_hydra_dumps()  # Hydra wrote a sweep's multirun.yaml, with the command line's values, before this job
    hold_hydra_dumps(cfg)  # .hydra/*.yaml: written once the job takes the run dir, never by a refused run
    from ablations.job.stages import run_job, status_of  # lightning and lm-eval: seconds, only now

    install_log_masking()  # Lightning's own console handler (Hydra's are configured with it) and warnings
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    reason = skip_reason(cfg)
    if reason is not None:  # declared by the sweep: logged, never trained, never recorded as a failure
        log.warning("skipping variant %s: %s", dict(cfg.get("axes") or {}), reason)
        return None
    if multirun and is_complete(run_dir):  # a re-run of a sweep: this variant is already done
        log.info("skipping %s: its result record is complete", run_dir)
        return ((read_result(run_dir) or {}).get("train") or {}).get("val_loss")
    name = variant_of(cfg)
    try:
        record = run_job(cfg, run_dir, name, cfg.get("sweep"), dict(cfg.get("axes") or {}), multirun=multirun)
    except (ConfigError, DataError, RunDirLocked) as error:  # bad input: named, nothing was built
        log.error("%s", error)
        if multirun:
            return None
        sys.exit(EXIT_CODES["locked" if isinstance(error, RunDirLocked) else "config"])
    except BaseException as error:  # recorded in its result.json (failed, diverged, interrupted, pruned)
        if multirun and isinstance(error, Exception):
            return None  # the sweep goes on; its summary reports this job
        log.error("job %s: %s: %s", name, type(error).__name__, error)
        sys.exit(EXIT_CODES[status_of(error)])
    if record["status"] == "planned":  # plan_only=true: printed, nothing run or recorded
        return None
    log.info("result: %s (status %s)", RunDir(run_dir).record, record["status"])
    print(f"results: {RunDir(run_dir).record}")
    return (record.get("train") or {}).get("val_loss")


def cli() -> None:
    """`python run.py` / `mobilellm-run`: Hydra's entry point, with bad config found by Hydra (an unknown
    preset or key, a value of the wrong type) or by the sweeper (e.g. an unwritable Optuna storage) refused
    like the job's own bad config: `error: <message naming the key>` on stderr, exit 2 (Hydra alone exits 1,
    after its search path). HYDRA_FULL_ERROR=1 makes Hydra raise instead (set by you: Hydra's full trace)."""
    if os.environ.get("HYDRA_FULL_ERROR"):
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException, ConfigError) as error:
        print(f"error: {mask_text(refusal_text(error))}", file=sys.stderr)
        sys.exit(EXIT_CODES["config"])


def refusal_text(error: Exception) -> str:
    """The message of bad config refused before any job ran: Hydra's without its search path; a ConfigError
    with one broken rule on one line."""
    if isinstance(error, HydraException):
        return hydra_error_text(error)
    if isinstance(error, ConfigError) and len(error.violations) == 1:
        return f"invalid {error.what}: {error.violations[0]}"
    return str(error)
