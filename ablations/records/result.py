"""The result record: one `result.json` per job, written atomically, never deleted or half-written.

Schema (version 1; `analysis/` reads these):
    schema, status (one of STATUSES), name, sweep, axes, seed, run_dir, config (resolved), params {total,
    embedding, output, non_embedding, applied}, flops_per_token, tokens_seen, train {steps, final_loss,
    val_loss, val_loss_se, val_bpb, val_bpb_se, val_tokens, val_bytes, val_documents (the final validation
    over the whole held-out split), tokens_per_s, mfu, fit_seconds, plan}, data (manifest), epochs (passes
    over the train split), model_dir, eval {tasks, paper_avg, ...},
    versions {ablations, python, torch, lightning, lm_eval, transformers}, error, started, finished
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ablations.records.atomic import atomic_write_text
from ablations.records.run_dir import RunDir
from ablations.records.secrets import mask_secrets

SCHEMA_VERSION = 1
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


def write_result(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` (secrets masked) to run_dir/result.json via a temporary file and an atomic rename."""
    if record.get("status") not in STATUSES:
        raise ValueError(f"result status must be one of {STATUSES} (got {record.get('status')!r})")
    text = json.dumps(mask_secrets({"schema": SCHEMA_VERSION, **record}), indent=2, default=str) + "\n"
    return atomic_write_text(RunDir(run_dir).record, text)


def result_path(location: str | Path) -> Path:
    """The record file of a run dir, or `location` itself when it names a file."""
    path = Path(location)
    return RunDir(path).record if path.is_dir() or path.suffix != ".json" else path


def read_result(location: str | Path) -> dict[str, Any] | None:
    """The record of a run dir (or a record file); None when there is none.

    An unreadable file (not JSON, not an object) raises ValueError naming it.
    """
    path = result_path(location)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable result record ({error})") from error
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a result record must be a JSON object")
    return record


def is_complete(run_dir: str | Path) -> bool:
    try:
        record = read_result(run_dir)
    except ValueError:
        return False
    return record is not None and record.get("status") == "complete"
