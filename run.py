"""Hydra entry point: one job = train → evaluate → record one architecture variant.

python run.py                                    # tiny model, embedded corpus, CPU, a few minutes
python run.py model=mobilellm_125m trainer=gpu train=paper_exploration
python run.py -m model.sharing_scheme=immediate,repeat_all_over,reverse model.sharing_repeats=2
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger("run")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ablations.errors import ConfigError
    from ablations.job import check_launch, run_job

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    name = cfg.get("name") or hydra_cfg.runtime.choices.get("model", "model")
    try:
        check_launch(cfg, multirun)
        record = run_job(cfg, run_dir, name, cfg.get("sweep"), dict(cfg.get("axes") or {}))
    except ConfigError as error:
        log.error("%s", error)
        if multirun:
            return None
        sys.exit(2)
    except Exception:
        if multirun:  # recorded as failed in its result.json; the sweep goes on
            return None
        raise
    log.info("result: %s (status %s)", run_dir / "result.json", record["status"])
    print(f"results: {run_dir / 'result.json'}")
    return (record.get("train") or {}).get("val_loss")


if __name__ == "__main__":
    main()
