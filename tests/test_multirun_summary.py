"""A multirun's summary and exit code count the jobs it ran, not a run another process holds in the same
sweep dir (two queues side by side, as `bench/findings_cpu.sh` runs them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ablations.job.outcome import MultirunSummary
from ablations.records.lock import in_use
from ablations.records.result import write_result
from tests.conftest import REPO

HOLD = "import sys, time\nfrom ablations.records.lock import run_dir_lock\nwith run_dir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n"


@contextmanager
def held_by_another_process(run_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holding the run dir's lock, as a job of another multirun does while it trains."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_run_dir_is_in_use_only_while_a_process_holds_its_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert not in_use(run)  # no lock file
    with held_by_another_process(run) as holder:
        assert in_use(run)
        holder.send_signal(signal.SIGKILL)  # the kernel releases a killed holder's lock
        holder.wait()
        assert not in_use(run)


def summarise(sweep: Path, records: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Start the summary, write the records as the sweep's jobs would, end it: (exit code, printed text)."""
    summary = MultirunSummary()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    summary.on_multirun_start(config)
    for name, status in records.items():
        write_result(sweep / name / "seed=0", {"status": status, "name": name})
    try:
        summary.on_multirun_end(config)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    return code, capsys.readouterr().out


def test_a_run_another_multirun_holds_is_listed_not_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "b/seed=0").mkdir(parents=True)
    with held_by_another_process(sweep / "b/seed=0"):
        code, out = summarise(sweep, {"a": "complete", "b": "running"}, capsys)
    assert code == 0, out
    assert "1 jobs run (1 complete)" in out and "in use" in out and "b/seed=0" in out


def test_a_running_record_no_process_holds_is_a_failed_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = summarise(tmp_path / "sweep", {"a": "complete", "b": "running"}, capsys)  # its job died
    assert code == 1 and "2 jobs run (1 complete, 1 running)" in out
