"""Checkpoint files that survive shared filesystems: written beside their destination under a temporary
name, fsynced, then renamed (a reader, a kill or a full disk never leaves a partial `*.ckpt`); and on
resume, the newest checkpoint that actually loads.

Lightning's own `TorchCheckpointIO` writes through an fsspec transaction: a temporary file in $TMPDIR,
then `shutil.move`, which across filesystems (node-local /tmp → Lustre/NFS) is a copy that a kill
truncates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ablations.model.checkpoint import CheckpointError, load_checkpoint_data
from ablations.records.atomic import atomic_write, temp_files

log = logging.getLogger(__name__)
SHARDED_MARKERS = (".metadata", "meta.pt")  # a torch.distributed.checkpoint directory (FSDP2)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into `<dir>/.<name>.tmp-<host>-<pid>-<random>`, fsync, rename over `<dir>/<name>`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):  # object stores: Lightning's fsspec path (no rename there)
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def remove_partial_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes a kill interrupted (`.step-….ckpt.tmp-<host>-<pid>-…`,
    each as large as a checkpoint; never a checkpoint training resumes from). Called by the run dir's holder
    before training, when no checkpoint of the run is being written."""
    partial = temp_files(ckpt_dir, "*.ckpt")
    for path in partial:
        path.unlink(missing_ok=True)
    if partial:
        log.info("removed %d partial checkpoint file(s) of killed writes: %s", len(partial), partial)
    return partial


def checkpoint_problem(path: Path) -> str | None:
    """Why training cannot resume from `path`, None when it can: a sharded directory needs its metadata, a
    file must be a Lightning checkpoint torch reads as plain data (a pickled payload is refused, never run)."""
    if path.is_dir():
        if any((path / marker).is_file() for marker in SHARDED_MARKERS):
            return None
        return f"{path}: a directory without distributed-checkpoint metadata ({' or '.join(SHARDED_MARKERS)})"
    try:
        data = load_checkpoint_data(path)
    except CheckpointError as error:
        return str(error)
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        return f"{path}: not a Lightning training checkpoint (it has no `state_dict`)"
    return None


def newest_loadable(last: Path, periodic: list[Path]) -> Path | None:
    """`last` if it loads, else the newest periodic checkpoint that does (a warning names each skipped
    one and why), else None."""
    for candidate in [last, *sorted(periodic, reverse=True)]:
        if not candidate.exists():
            continue
        problem = checkpoint_problem(candidate)
        if problem is None:
            return candidate
        log.warning("checkpoint skipped (corrupt, partial or unsafe), trying an older one: %s", problem)
    return None
