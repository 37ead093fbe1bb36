"""`metrics.jsonl`: one JSON object per logging step, the source of truth for a run's curves.

Keys use `/` namespaces (`train/loss`, `perf/mfu`, `val/loss`); `step` is the 0-based optimizer step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ablations.records.atomic import atomic_write_text

log = logging.getLogger(__name__)


def append_metrics(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row (a JSON object on its own line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file (empty if it does not exist).

    A process killed mid-write leaves a torn last line: it is skipped with a warning (its step is logged
    again when the run resumes). A malformed line anywhere else is corruption and raises, naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise ValueError(f"{path}:{number}: not a JSON row ({error})") from error
            log.warning("%s:%d: torn last line (a killed write) skipped", path, number)
    return rows


def rewind_metrics(path: str | Path, step: int) -> None:
    """Keep only the rows of steps before `step` (the step a resumed run continues from; 0 for a fresh
    start): the rows after it are logged again, so the file ends up exactly the uninterrupted run's."""
    path = Path(path)
    if path.is_file():
        kept = [row for row in read_metrics(path) if row.get("step") is not None and row["step"] < step]
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in kept))
