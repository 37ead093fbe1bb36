"""W&B: log generated tables and figures to a sweep's group; optionally read runs back as records.

Logging works offline (`WANDB_MODE=offline`, no key needed): the run is written under `<dir>/wandb/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ablations.eval.tasks import PAPER_ZERO_SHOT

WANDB_STATUS = {"finished": "complete", "failed": "failed", "crashed": "failed", "running": "running"}


def log_artefacts(
    group: str,
    tables: dict[str, pd.DataFrame],
    figures: dict[str, Path],
    project: str | None = None,
    run_dir: Path | None = None,
) -> str:
    """Log each table (`wandb.Table`) and figure (`wandb.Image`) to one `analysis` run in `group`.

    Returns the run's local directory. Mode, entity and key come from the usual `WANDB_*` variables.
    """
    import wandb  # imported here: only this path needs it

    run = wandb.init(
        project=project or "mobilellm-ablations",
        group=group,
        job_type="analysis",
        name=f"{group}-analysis",
        dir=str(run_dir) if run_dir else None,
        reinit="finish_previous",
    )
    try:
        for name, table in tables.items():
            run.log(
                {f"analysis/{name}": wandb.Table(dataframe=table.astype(object).where(table.notna(), None))}
            )
        for name, path in figures.items():
            run.log({f"analysis/{name}": wandb.Image(str(path))})
        return run.dir
    finally:
        run.finish()


def record_from_run(run: Any) -> dict[str, Any]:
    """A result record from a W&B run: its config as `config`, summary `eval/<task>/<metric>` keys as
    `eval.tasks`, summary `params/*`, `train/*` as the record's fields; a summary `result` dict (the
    whole record, if the job logged it) wins."""
    summary = dict(run.summary)
    if isinstance(summary.get("result"), dict):
        return dict(summary["result"]) | {"run_dir": f"wandb:{run.path}"}
    tasks: dict[str, dict[str, float]] = {}
    for key, value in summary.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "eval" and parts[1] in PAPER_ZERO_SHOT:
            tasks.setdefault(parts[1], {})[parts[2]] = value
    config = dict(run.config)
    return {
        "schema": 1,
        "status": WANDB_STATUS.get(run.state, run.state),
        "name": run.name,
        "sweep": run.group,
        "axes": config.get("axes", {}),
        "seed": config.get("seed"),
        "config": config,
        "params": {k.split("/", 1)[1]: v for k, v in summary.items() if k.startswith("params/")},
        "train": {k.split("/", 1)[1]: v for k, v in summary.items() if k.startswith("train/")},
        "eval": {"tasks": tasks} if tasks else None,
        "run_dir": f"wandb:{'/'.join(run.path)}" if isinstance(run.path, list) else f"wandb:{run.path}",
    }


def records_from_wandb(path: str, group: str | None = None) -> list[dict[str, Any]]:
    """Records of the runs in `entity/project` (optionally one group), from the W&B API (network)."""
    import wandb  # heavy (~1 s): only this path needs it

    filters = {"group": group} if group else {}
    return [record_from_run(run) for run in wandb.Api().runs(path, filters=filters)]
