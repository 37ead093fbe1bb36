"""`metrics.jsonl`: one JSON object per logging step, the source of truth for a run's curves.

Keys use `/` namespaces (`train/loss`, `perf/mfu`, `val/loss`); `step` is the 0-based optimizer step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def append_metrics(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row (a JSON object on its own line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file (empty if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
