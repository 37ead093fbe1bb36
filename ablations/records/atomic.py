"""Atomic file writes: a reader (or a crash, or a power cut) never sees a half-written record, config or file.

The data goes to a temporary sibling (same directory, so the same filesystem), is fsynced, renamed over the
target, and the directory is fsynced so the rename itself is durable.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path


def temp_sibling(path: str | Path) -> Path:
    """A temporary name beside `path`, unique across hosts sharing the filesystem (host, pid, random)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")


def temp_files(directory: str | Path, name_glob: str = "*") -> list[Path]:
    """The temporary siblings (of files named like `name_glob`) that writes killed before their rename left
    in `directory` (kill -9, a crash, a power cut)."""
    return sorted(path for path in Path(directory).glob(f".{name_glob}.tmp-*") if path.is_file())


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def umask() -> int:
    """The process's file mode creation mask, read without changing it where Linux reports it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but only the mode is at stake)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, fsync it, then rename it over `path`. The file gets
    a new file's mode under the umask (0644 under 022), whatever mode `write` gave it (safetensors: 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))
