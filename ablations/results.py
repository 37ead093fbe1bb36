"""The result record: one `result.json` per job, written atomically, never deleted or half-written.

Schema (version 1; `analysis/` reads these):
    schema, status ("running" | "complete" | "failed" | "diverged" | "interrupted" | "pruned"), name, sweep, axes, seed,
    run_dir, config (resolved), params {total, embedding, output, non_embedding, applied}, flops_per_token,
    tokens_seen, train {steps, final_loss, val_loss, tokens_per_s, mfu, plan}, data (manifest),
    eval {tasks, paper_avg, ...}, versions {ablations, python, torch, lightning, lm_eval}, error, started, finished
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ablations.atomic import atomic_write_text

SCHEMA_VERSION = 1
RECORD_FILE = "result.json"
STATUSES = (
    "running",
    "complete",
    "failed",
    "diverged",
    "interrupted",
    "pruned",
)  # pruned: by an Optuna search


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in (
        ("ablations", "mobilellm-ablations"),
        ("torch", "torch"),
        ("lightning", "lightning"),
        ("lm_eval", "lm_eval"),
        ("transformers", "transformers"),
    ):
        try:
            out[name] = version(dist)
        except PackageNotFoundError:
            out[name] = None
    return out


def write_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` to run_dir/result.json via a temporary file and an atomic rename."""
    if record.get("status") not in STATUSES:
        raise ValueError(f"result status must be one of {STATUSES} (got {record.get('status')!r})")
    text = json.dumps({"schema": SCHEMA_VERSION, **record}, indent=2, default=str) + "\n"
    path = atomic_write_text(Path(run_dir) / RECORD_FILE, text)
    return path


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The record in run_dir, or None when there is none."""
    path = Path(run_dir) / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def is_complete(run_dir: str | Path) -> bool:
    record = read_record(run_dir)
    return record is not None and record.get("status") == "complete"
