"""Checkpoint files: written atomically beside their destination (even with $TMPDIR on another filesystem,
a kill mid-write never leaves a partial checkpoint), and `ckpt_path=auto` falls back past a corrupt one."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ablations.model.checkpoint import CheckpointError
from ablations.train.checkpoint_io import checkpoint_problem
from ablations.train.fit import resolve_ckpt_path
from tests.conftest import REPO


def save(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.full((1000,), float(step))}}, path)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_auto_resume_falls_back_from_a_truncated_last_ckpt(tmp_path: Path, caplog) -> None:
    ckpts = tmp_path / "checkpoints"
    for step in (2, 4):
        save(ckpts / f"step-{step:07d}.ckpt", step)
    truncate(save(ckpts / "last.ckpt", 5))
    with caplog.at_level(logging.WARNING):
        assert resolve_ckpt_path("auto", tmp_path) == str(ckpts / "step-0000004.ckpt")
    assert "last.ckpt: not a readable checkpoint" in caplog.text
    truncate(ckpts / "step-0000004.ckpt")
    assert resolve_ckpt_path("auto", tmp_path) == str(ckpts / "step-0000002.ckpt")
    (ckpts / "step-0000002.ckpt").write_bytes(b"")
    assert resolve_ckpt_path("auto", tmp_path) is None  # nothing loads: a fresh start


def test_an_explicit_checkpoint_that_does_not_load_is_refused_by_name(tmp_path: Path) -> None:
    # `auto` falls back; an explicitly named checkpoint is the user's choice, so it fails, named, up front
    last = save(tmp_path / "checkpoints" / "last.ckpt", 5)
    assert resolve_ckpt_path("last", tmp_path) == resolve_ckpt_path(str(last), tmp_path) == str(last)
    truncate(last)
    for ckpt_path in ("last", str(last)):
        with pytest.raises(CheckpointError, match=r"last\.ckpt: not a readable checkpoint"):
            resolve_ckpt_path(ckpt_path, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last but .*last\.ckpt does not exist"):
        resolve_ckpt_path("last", tmp_path / "elsewhere")
    weights = tmp_path / "weights.pt"  # torch data, but no training checkpoint
    torch.save({"w": torch.zeros(2)}, weights)
    with pytest.raises(CheckpointError, match=r"weights\.pt: not a Lightning training checkpoint"):
        resolve_ckpt_path(str(weights), tmp_path)


def test_auto_resume_accepts_a_sharded_checkpoint_directory(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.mkdir(parents=True)
    (last / ".metadata").write_bytes(b"x")
    assert resolve_ckpt_path("auto", tmp_path) == str(last)
    problem = checkpoint_problem(tmp_path / "checkpoints")  # a directory without the metadata is not one
    assert problem is not None and "without distributed-checkpoint metadata" in problem


@pytest.fixture
def two_filesystems(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A run dir and a $TMPDIR on two separate tmpfs mounts (skipped where mounting is refused)."""
    mounts = [tmp_path / "run_fs", tmp_path / "tmp_fs"]
    mounted: list[Path] = []
    try:
        for m in mounts:
            m.mkdir()
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(m)], capture_output=True
            )
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
            mounted.append(m)
        assert os.stat(mounts[0]).st_dev != os.stat(mounts[1]).st_dev
        yield mounts[0], mounts[1]
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", "-l", str(m)], check=False)


WRITER = """
import sys, torch
from ablations.train.checkpoint_io import AtomicCheckpointIO
io, state = AtomicCheckpointIO(), {"w": torch.randn(8 << 20)}  # 32 MB per checkpoint
for step in range(100000):
    state["global_step"] = step
    io.save_checkpoint(state, sys.argv[1])
"""


def test_a_checkpoint_killed_mid_write_is_never_partial(two_filesystems: tuple[Path, Path]) -> None:
    run_fs, tmp_fs = two_filesystems
    target = run_fs / "checkpoints" / "last.ckpt"
    env = {**os.environ, "TMPDIR": str(tmp_fs)}
    for delay in (0.05, 0.13, 0.31):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=REPO, env=env)
        deadline = time.time() + 120
        while not target.exists() and time.time() < deadline and writer.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        loaded = torch.load(target, map_location="cpu", weights_only=True, mmap=True)
        assert loaded["w"].numel() == 8 << 20
        assert not list(tmp_fs.iterdir())  # nothing went through $TMPDIR
        for leftover in target.parent.iterdir():  # at most the killed writer's temporary, never a *.ckpt
            assert leftover == target or leftover.name.startswith(".last.ckpt.tmp-")
            if leftover != target:
                leftover.unlink()
