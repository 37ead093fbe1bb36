"""One run dir, one running process: an advisory lock held for the whole job.

`fcntl.flock` on `<run dir>/.lock`: released by the kernel when the process dies (kill -9 included), so a
requeued or restarted job takes it over; the file names the holder (pid, host) for the refusal message, and
after a kill it still names the dead holder (`gone_holder`: a search fails that job's trial at once).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ablations.records.errors import RunDirLocked
from ablations.records.run_dir import RunDir


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run dir's lock for the block; RunDirLocked (naming the holder) if another process holds it."""
    path = RunDir(run_dir).lock
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


def in_use(run_dir: str | Path) -> bool:
    """Whether a process holds the run dir's lock now (a job of another multirun writing into the same sweep
    dir, say); False when no lock file exists or its holder has ended."""
    try:
        fd = os.open(RunDir(run_dir).lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        # a shared lock conflicts only with a holder's exclusive one; closing the fd releases it
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_holder(run_dir: str | Path) -> tuple[int, str] | None:
    """(pid, host) of the run dir's last lock holder, running or not; None when no lock file names one."""
    try:
        text = RunDir(run_dir).lock.read_text()
    except OSError:
        return None
    match = re.fullmatch(r"pid (\d+) on host (\S+)\s*", text)
    return (int(match[1]), match[2]) if match else None


def gone_holder(run_dir: str | Path) -> str | None:
    """`pid N on host H` when the run dir's last lock holder is a process of this host that no longer runs
    (killed, crashed: its job cannot be running); None when it runs, or is unknown (another host)."""
    holder = lock_holder(run_dir)
    if holder is None or holder[1] != socket.gethostname():
        return None
    pid, host = holder
    gone = f"pid {pid} on host {host}"
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return gone
    except PermissionError:
        return None  # another user's process, running
    try:
        zombie = "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()  # exited, not yet reaped
    except OSError:
        zombie = False
    return gone if zombie else None
