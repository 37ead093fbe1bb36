"""One run dir, one running process: an advisory lock held for the whole job.

`fcntl.flock` on `<run dir>/.lock`: released by the kernel when the process dies (kill -9 included), so a
requeued or restarted job takes it over; the file names the holder (pid, host) for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablations.records.errors import RunDirLocked

LOCK_FILE = ".lock"


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run dir's lock for the block; RunDirLocked (naming the holder) if another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirLocked(
                f"{run_dir} is in use by another run ({holder}); wait for it or use another dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
