"""Read `result.json` records (one per job) into one flat pandas DataFrame.

Column names (one row per record):
- `run_dir`, `status`, `name`, `sweep`, `seed`, `error`, `schema`
- `axes/<axis>`: the sweep axes the job varied
- `<group>/<field>`: the resolved config, flattened (`model/dim`, `model/sharing_scheme`, `train/lr`, …)
- `params/<kind>`, `flops_per_token`, `tokens_seen`
- `result/train/<field>`: what training reported (`final_loss`, `val_loss`, `steps`, `tokens_per_s`, `mfu`)
- `result/eval/<task>/<metric>`: per-task metrics and stderr (`acc`, `acc_stderr`, `acc_norm`, …)
- `result/eval/paper_avg`, `result/eval/paper_avg_metric/<task>`, `result/eval/samples_dir`
- `result/device/<field>`: the on-device measurement of a job run with `device.enabled=true` (`load_ms`,
  `init_ms`, `decode_ms`, `decode_tok_s`, `pte_bytes`, …: see docs/device.md); absent for a job without one

A record that failed, diverged or is still running keeps its row (its metric columns are empty), so
nothing is silently dropped; unreadable files, and records of the wrong structure (a section that is
not an object, a metric that is not a number), become rows with status `unreadable` naming the file.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ablations.eval.config import DEFAULT_PAPER_AVG_METRIC
from ablations.records.result import read_result
from ablations.records.run_dir import RunDir

TASK_LABELS: dict[str, str] = {
    "arc_easy": "ARC-e",
    "arc_challenge": "ARC-c",
    "boolq": "BoolQ",
    "piqa": "PIQA",
    "social_iqa": "SIQA",
    "hellaswag": "HS",
    "openbookqa": "OBQA",
    "winogrande": "WG",
}


def find_result_files(sources: Iterable[str | Path]) -> list[Path]:
    """`result.json` paths under each source: a directory (searched recursively), a file, or a glob."""
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found.extend(sorted(path.rglob(RunDir.RECORD)))
        elif path.is_file():
            found.append(path)
        else:
            found.extend(Path(p) for p in sorted(glob.glob(str(source), recursive=True)))
    return list(dict.fromkeys(p.resolve() for p in found))  # keep order, drop duplicates


SECTIONS = ("axes", "config", "params", "train", "eval", "device", "versions")  # JSON objects (or null)
SCALARS = ("status", "name", "sweep", "seed", "error", "schema", "flops_per_token", "tokens_seen")
METRICS = {m for metric in DEFAULT_PAPER_AVG_METRIC.values() for m in (metric, f"{metric}_stderr")}
DEVICE_METRICS = (
    "load_ms", "init_ms", "prefill_ms", "prefill_tok_s", "decode_ms", "decode_tok_s", "ttft_ms",
    "pte_bytes", "planned_memory_bytes", "kv_cache_bytes", "peak_rss_bytes", "val_loss_change",
)  # fmt: skip
"""The numbers of a record's `device` block that the analysis averages over seeds."""


def _not_a_number(value: Any) -> bool:
    return value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)))


def structure_problem(record: dict[str, Any]) -> str | None:
    """What makes a parsed record unusable as a table row (a wrong JSON type), or None."""
    for key in SECTIONS:
        if record.get(key) is not None and not isinstance(record[key], dict):
            return f"`{key}` must be an object, not {type(record[key]).__name__}"
    for key in SCALARS:
        if isinstance(record.get(key), (dict, list)):
            return f"`{key}` must be a single value, not {type(record[key]).__name__}"
    tasks = (record.get("eval") or {}).get("tasks")
    if tasks is not None and not isinstance(tasks, dict):
        return f"`eval.tasks` must be an object, not {type(tasks).__name__}"
    for task, scores in (tasks or {}).items():
        if not isinstance(scores, dict):
            return f"`eval.tasks.{task}` must be an object, not {type(scores).__name__}"
        for metric in METRICS & scores.keys():
            if _not_a_number(scores[metric]):
                return f"`eval.tasks.{task}.{metric}` must be a number, not {type(scores[metric]).__name__}"
    device = record.get("device") or {}
    for field in DEVICE_METRICS:
        if _not_a_number(device.get(field)):
            return f"`device.{field}` must be a number, not {type(device[field]).__name__}"
    return None


def load_record(path: Path) -> dict[str, Any]:
    """One record with `run_dir` added; an unreadable file, or one of the wrong structure (see
    `structure_problem`), becomes a record with status `unreadable` naming the file and the problem."""
    try:
        record = read_result(path) or {"status": "unreadable", "error": f"{path}: no such file"}
    except ValueError as exc:
        record = {"status": "unreadable", "name": path.parent.name, "error": str(exc)}
    problem = structure_problem(record)
    if problem:
        record = {"status": "unreadable", "name": path.parent.name, "error": f"{path}: {problem}"}
    record["run_dir"] = str(path.parent)
    return record


def load_records(sources: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every record found under `sources` (see `find_result_files`)."""
    return [load_record(p) for p in find_result_files(sources)]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → one level with `/`-joined keys; lists and scalars are kept as values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """The flat row of one record (column names in the module docstring)."""
    row: dict[str, Any] = {
        "run_dir": record.get("run_dir"),
        "status": record.get("status", "unknown"),
        "name": record.get("name") or Path(str(record.get("run_dir", "?"))).name,
        "sweep": record.get("sweep"),
        "seed": record.get("seed"),
        "error": record.get("error"),
        "schema": record.get("schema"),
    }
    row.update(flatten(record.get("axes") or {}, "axes/"))
    for key, value in flatten(record.get("config") or {}).items():
        row.setdefault(key, value)  # the job config's own `name`/`sweep`/`seed` keys never mask the record's
    row.update(flatten(record.get("params") or {}, "params/"))
    row["flops_per_token"] = record.get("flops_per_token")
    row["tokens_seen"] = record.get("tokens_seen")
    row.update(flatten(record.get("train") or {}, "result/train/"))
    evaluation = dict(record.get("eval") or {})
    tasks = evaluation.pop("tasks", {}) or {}
    row.update(flatten(tasks, "result/eval/"))
    row.update(flatten(evaluation, "result/eval/"))
    row.update(flatten(record.get("device") or {}, "result/device/"))
    return row


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record; see the module docstring for the columns."""
    return pd.DataFrame([record_row(r) for r in records])


def task_metric(row: pd.Series, task: str) -> str:
    """The metric (`acc` / `acc_norm`) a row's record averages for `task`."""
    named = row.get(f"result/eval/paper_avg_metric/{task}")
    return named if isinstance(named, str) else DEFAULT_PAPER_AVG_METRIC[task]


def task_score(row: pd.Series, task: str) -> tuple[float, float]:
    """(accuracy, stderr) of `task` as fractions; NaN where the record lacks them."""
    metric = task_metric(row, task)
    value = row.get(f"result/eval/{task}/{metric}")
    stderr = row.get(f"result/eval/{task}/{metric}_stderr")
    return (
        float("nan") if value is None else float(value),
        float("nan") if stderr is None else float(stderr),
    )


def save_frame(frame: pd.DataFrame, out_dir: Path, stem: str = "records") -> list[Path]:
    """Write `frame` as CSV and Parquet (list-valued cells as JSON text, which Parquet needs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    portable = frame.copy()
    for column in portable.columns:
        if portable[column].map(lambda v: isinstance(v, (list, dict))).any():
            portable[column] = portable[column].map(
                lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v
            )
    csv_path, parquet_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.parquet"
    portable.to_csv(csv_path, index=False)
    # mixed-type object columns (e.g. an axis that is a number in one record, a string in another)
    for column in portable.columns:
        present = portable[column].dropna()
        if pd.api.types.is_object_dtype(portable[column]) and present.map(type).nunique() > 1:
            portable[column] = portable[column].map(lambda v: str(v) if pd.notna(v) else None)
    portable.to_parquet(parquet_path, index=False)
    return [csv_path, parquet_path]
