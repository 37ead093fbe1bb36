"""Records (one per job) → variants (one per `name`, seeds pooled), with scores and 95% intervals.

Scores are percentages (the paper's unit). Columns of `summarize_variants`:
- `variant`, `status`, `n_records`, `n_complete`, `seeds`, `error`, `budget`, `run_dirs`
- every config / axes / params column of the first record (configs of seeds are identical)
- `<task>`, `<task>_low`, `<task>_high` for the 8 tasks; `avg`, `avg_low`, `avg_high`; `n_tasks`
- `ci_source`: `seeds`, `bootstrap`, `stderr` or `none` (see `analysis.bootstrap`)
- `val_bpb`, `val_bpb_low`, `val_bpb_high`: validation bits per byte, the mean over seeds and its 95%
  interval (Student-t over seeds; one seed: its own standard error over documents)
- `device/<field>` for each of `analysis.records.DEVICE_METRICS` (the mean over the complete records that
  measured it) and `device/quant`, `device/threads`: only where some record has a `device` block

`status` is `complete`, `partial` (some seeds not complete, or some tasks missing: see `error`),
or the status shared by all records (`failed`, `diverged`, `running`, …).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablations.eval.tasks import PAPER_ZERO_SHOT
from analysis.bootstrap import (
    N_RESAMPLES,
    NAN_INTERVAL,
    Interval,
    bootstrap_intervals,
    normal_interval,
    read_samples,
    seed_interval,
)
from analysis.records import DEVICE_METRICS, task_metric, task_score

PAPER_BUDGETS_M: dict[str, float] = {
    "125M": 125.0,
    "350M": 345.0,
    "600M": 603.0,
    "1B": 1005.0,
    "1.5B": 1511.0,
}


def budget_label(row: pd.Series) -> str:
    """The parameter budget a variant belongs to: its `budget` axis, else the nearest paper size within
    ×1.6 of `params/total`, else its own size (e.g. `1.3M`). Paper values are compared within a budget;
    a sweep scaled down for a smoke run keeps its `budget` axis and so its paper panel."""
    axis = row.get("axes/budget")
    if isinstance(axis, str) and axis:
        return axis
    total = row.get("params/total")
    if total is None or not math.isfinite(float(total)) or total <= 0:
        return "?"
    millions = float(total) / 1e6
    name, size = min(PAPER_BUDGETS_M.items(), key=lambda kv: abs(math.log(millions / kv[1])))
    return name if abs(math.log(millions / size)) < math.log(1.6) else f"{millions:.3g}M"


def _samples_of(row: pd.Series) -> dict[str, np.ndarray] | None:
    """Per-document values of each task's averaged metric, or None if any task's file is missing."""
    samples_dir = row.get("result/eval/samples_dir")
    if not isinstance(samples_dir, str) or not isinstance(row.get("run_dir"), str):
        return None
    base = Path(row["run_dir"]) / samples_dir
    samples = {}
    for task in PAPER_ZERO_SHOT:
        values = read_samples(base / f"{task}.jsonl", task_metric(row, task))
        if values is None:
            return None
        samples[task] = values
    return samples


def _scores(complete: pd.DataFrame, n_resamples: int, seed: int) -> dict[str, Any]:
    """Task scores, average and their intervals (fractions) over the complete records of one variant."""
    table = np.array([[task_score(r, t)[0] for t in PAPER_ZERO_SHOT] for _, r in complete.iterrows()])
    stderr = np.array([[task_score(r, t)[1] for t in PAPER_ZERO_SHOT] for _, r in complete.iterrows()])
    out: dict[str, Any] = {"n_tasks": int(np.isfinite(table).all(axis=0).sum()) if len(table) else 0}
    if not len(table):
        return out | {"ci_source": "none"}
    means = table.mean(axis=0)
    averages = table.mean(axis=1)  # NaN for a record missing a task
    out.update({t: means[i] for i, t in enumerate(PAPER_ZERO_SHOT)})
    out["avg"] = float(averages.mean())
    task_ci: list[Interval]
    if len(table) >= 2:
        task_ci = [seed_interval(table[:, i]) for i in range(len(PAPER_ZERO_SHOT))]
        avg_ci, source = seed_interval(averages), "seeds"
    elif (samples := _samples_of(complete.iloc[0])) is not None:
        per_task, avg_ci = bootstrap_intervals(samples, n_resamples, seed)
        task_ci, source = [per_task[t] for t in PAPER_ZERO_SHOT], "bootstrap"
    else:
        task_ci = [normal_interval(means[i], stderr[0, i]) for i in range(len(PAPER_ZERO_SHOT))]
        avg_se = math.sqrt(float(np.sum(stderr[0] ** 2))) / len(PAPER_ZERO_SHOT)
        avg_ci, source = normal_interval(out["avg"], avg_se), "stderr"
    if not math.isfinite(out["avg"]):
        avg_ci = NAN_INTERVAL
    for t, (low, high) in zip(PAPER_ZERO_SHOT, task_ci, strict=True):
        out[f"{t}_low"], out[f"{t}_high"] = low, high
    out["avg_low"], out["avg_high"] = avg_ci
    if all(math.isnan(x) for x in (*avg_ci, *(v for ci in task_ci for v in ci))):
        source = "none"
    return out | {"ci_source": source}


def _val_bpb(complete: pd.DataFrame) -> dict[str, float]:
    """Mean validation bits per byte over the complete records and its 95% interval (NaN without any)."""
    values = complete.get("result/train/val_bpb", pd.Series(dtype=float)).dropna().astype(float).to_numpy()
    if not len(values):
        return {"val_bpb": math.nan, "val_bpb_low": math.nan, "val_bpb_high": math.nan}
    if len(values) >= 2:
        low, high = seed_interval(values)
    else:
        se = complete.get("result/train/val_bpb_se", pd.Series([math.nan])).astype(float).iloc[0]
        low, high = normal_interval(float(values[0]), float(se))
    return {"val_bpb": float(values.mean()), "val_bpb_low": low, "val_bpb_high": high}


def _device(complete: pd.DataFrame) -> dict[str, Any]:
    """Each device measurement's mean over the complete records that have it (a variant's seeds export the
    same architecture), with the setting it was measured at; empty when no record has a `device` block."""
    out: dict[str, Any] = {}
    for field in DEVICE_METRICS:
        column = f"result/device/{field}"
        if column in complete:
            values = complete[column].dropna().astype(float)
            out[f"device/{field}"] = float(values.mean()) if len(values) else math.nan
    for setting in ("quant", "threads"):
        if f"result/device/{setting}" in complete:
            given = complete[f"result/device/{setting}"].dropna()
            out[f"device/{setting}"] = given.iloc[0] if len(given) else None
    return out


def _status(group: pd.DataFrame, n_tasks: int) -> tuple[str, str | None]:
    """(status, explanation) of a variant from its records' statuses and task coverage."""
    statuses = group["status"].tolist()
    n_complete = statuses.count("complete")
    errors = [str(e) for e in group.get("error", pd.Series(dtype=object)).dropna() if e]
    if n_complete == 0:
        status = statuses[0] if len(set(statuses)) == 1 else "/".join(sorted(set(statuses)))
        return status, "; ".join(errors) or None
    notes = []
    if n_complete < len(statuses):
        others = ", ".join(s for s in statuses if s != "complete")
        notes.append(f"{n_complete}/{len(statuses)} records complete ({others})")
    if n_tasks < len(PAPER_ZERO_SHOT):
        notes.append(f"{n_tasks}/{len(PAPER_ZERO_SHOT)} tasks evaluated")
    return ("partial" if notes else "complete"), "; ".join(notes + errors) or None


def summarize_variants(records: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per variant (records grouped by `name`), in first-seen order; see the module docstring."""
    rows = []
    for name, group in records.groupby("name", sort=False, dropna=False):
        first = group.iloc[0]
        complete = group[group["status"] == "complete"]
        scores = _scores(complete, n_resamples, seed)
        status, note = _status(group, scores.get("n_tasks", 0))
        base = {k: v for k, v in first.items() if k.split("/")[0] not in ("result", "run_dir", "status")}
        pct = {k: 100 * v for k, v in scores.items() if k not in ("n_tasks", "ci_source")}
        rows.append(
            base
            | {
                "variant": name,
                "status": status,
                "error": note,
                "n_records": len(group),
                "n_complete": len(complete),
                "seeds": ",".join(str(s) for s in group["seed"].dropna().tolist()),
                "budget": budget_label(first),
                "run_dirs": ";".join(group["run_dir"].astype(str)),
                "n_tasks": scores.get("n_tasks", 0),
                "ci_source": scores["ci_source"],
            }
            | pct
            | _val_bpb(complete)
            | _device(complete)
        )
    frame = pd.DataFrame(rows)
    for column in ("avg", "avg_low", "avg_high", *PAPER_ZERO_SHOT):
        if column not in frame:
            frame[column] = math.nan
    return frame
