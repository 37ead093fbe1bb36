"""Pre-emption signals, noted from the start of a job.

SIGTERM (SLURM pre-emption, `scancel`) and SIGUSR2 (the time-limit warning of `--signal` and submitit) only
set a process-wide flag. run.py installs the handler first thing, so a signal that arrives while the job
is still importing, preparing data or building the model is not fatal: training stops at its first
optimizer-step boundary, saves `last.ckpt` and requeues (`PreemptionSignals`, `LastCheckpoint`), exactly
as for a signal received mid-training. Torch-free.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class PreemptionFlag:
    """The pre-emption signal this process received, if any. Never cleared: a process asked to stop stops
    every job it goes on to run."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def note(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)  # only a flag: the next optimizer-step boundary acts on it

    def install(self) -> None:
        """Route the signals to `note`, over the default (which kills), submitit's and Lightning's handlers."""
        for signum in SIGNALS:
            signal.signal(signum, self.note)


PREEMPTION = PreemptionFlag()
"""The process's flag (installed by run.py at job start, and again by `PreemptionSignals` at train start)."""
