"""How a job ends, for the shell and for SLURM: exit codes, and a multirun's summary of statuses.

Exit codes tell success, interruption and failure apart:
0 complete (or already complete), 1 failed, 2 bad config or input (nothing was built), 3 interrupted
(pre-empted: resumable from last.ckpt), 4 diverged, 5 pruned by a search, 6 the run dir is in use.
A multirun prints one line per job of this sweep and exits with the worst job's code; a run another process
holds now (a second queue writing into the same sweep dir) is listed, not counted.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ablations.records.lock import in_use
from ablations.records.result import read_result
from ablations.records.run_dir import RunDir

log = logging.getLogger(__name__)
EXIT_CODES: dict[str, int] = {
    "complete": 0,
    "failed": 1,
    "config": 2,
    "interrupted": 3,
    "diverged": 4,
    "pruned": 5,
    "locked": 6,
}


def exit_code(statuses: list[str]) -> int:
    """The worst of the statuses' exit codes (0 when all are complete or pruned by a search)."""
    codes = [EXIT_CODES.get(status, 1) for status in statuses if status != "pruned"]
    return max(codes, default=0)


class MultirunSummary(Callback):
    """`hydra.callbacks.summary`: at the end of a multirun, one line per job this sweep ran (its record),
    the counts per status, and the exit code of the worst job."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        statuses: list[str] = []
        lines = []
        for path in sorted(sweep_dir.rglob(RunDir.RECORD)):
            if path.stat().st_mtime < getattr(self, "started", 0):
                continue  # a record an earlier run of the sweep finished (a skipped complete variant)
            if in_use(path.parent):  # every job of this multirun has ended: another process runs this one
                lines.append(f"  {'in use':<12} {path.parent.relative_to(sweep_dir)}  (by another process)")
                continue
            try:
                record = read_result(path) or {}
            except ValueError:
                record = {"status": "unreadable"}
            statuses.append(str(record.get("status")))
            error = f"  {str(record.get('error')).splitlines()[0][:120]}" if record.get("error") else ""
            lines.append(f"  {record.get('status', '?'):<12} {path.parent.relative_to(sweep_dir)}{error}")
        counts = ", ".join(f"{n} {status}" for status, n in sorted(Counter(statuses).items()))
        print(
            f"sweep {sweep_dir}: {len(statuses)} jobs run ({counts or 'none'})", *lines, sep="\n", flush=True
        )
        code = exit_code(statuses)
        if code:
            sys.exit(code)  # SystemExit passes through Hydra's callback guard, which catches Exception only
