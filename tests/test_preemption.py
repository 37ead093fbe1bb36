"""SIGTERM or SIGUSR2 (SLURM pre-emption, time limit) mid-run, before training, or to rank 1 of 2 only:
last.ckpt is saved at the next step, the record says interrupted, a re-run resumes; an unnamed multirun's
directory is computed once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


def train_command(run_dir: Path, steps: int) -> list[str]:
    """`python run.py` training the default tiny model `steps` steps of 4 × 32 tokens, one row per step."""
    return [
        sys.executable, "run.py", f"hydra.run.dir={run_dir}", "train.micro_batch_size=4", "train.seq_len=32",
        f"train.tokens={steps * 4 * 32}", "train.log_every_n_steps=1", "train.val_every_n_steps=0",
        "train.ckpt_every_n_steps=1000", "trainer.enable_progress_bar=false", "data.progress=false",
        "logger=none", "eval=none",
    ]  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2])  # pre-emption; submitit's time limit
def test_a_preemption_signal_saves_and_the_same_command_resumes(tmp_path: Path, signum: int) -> None:
    run_dir = tmp_path / "run"
    command = train_command(run_dir, 120)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    job = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 5):
        time.sleep(0.2)
    assert job.poll() is None, job.communicate()[0][-3000:]
    job.send_signal(signum)
    output = job.communicate(timeout=120)[0]
    assert job.returncode == 3, output[-3000:]  # interrupted: resumable, not success
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "interrupted", output[-3000:]
    assert record["tokens_seen"] == record["train"]["steps"] * 4 * 32 > 0  # what last.ckpt holds
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    stopped_at = max(json.loads(line)["step"] for line in metrics.read_text().splitlines())
    assert stopped_at < 119

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "complete" and record["train"]["steps"] == 120
    assert record["tokens_seen"] == 120 * 4 * 32
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if "train/loss" in line]
    assert steps == sorted(set(steps)) and steps[-1] == 119  # resumed after the saved step, nothing repeated


def test_a_failing_variant_is_recorded_and_the_multirun_goes_on(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", f"hydra.sweep.dir={sweep_dir}", "model.n_kv_heads=3,2",
        "train.lr=1e4,3e-3", "train.grad_clip=0", "train.warmup_steps=0", "train.micro_batch_size=4",
        "train.seq_len=32", f"train.tokens={8 * 4 * 32}", "train.val_every_n_steps=0",
        "trainer.enable_progress_bar=false", "data.progress=false", "logger=none", "eval=none",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 4, result.stderr[-3000:]  # the worst job's code: diverged
    assert "4 jobs run (1 complete, 1 diverged, 2 failed)" in result.stdout, result.stdout[-2000:]
    records = {
        (r["config"]["model"]["n_kv_heads"], r["config"]["train"]["lr"]): r
        for r in (json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json"))
    }
    assert len(records) == 4  # every variant ran and left a record
    assert records[(3, 1e4)]["status"] == records[(3, 3e-3)]["status"] == "failed"  # invalid architecture
    assert "n_kv_heads (3)" in records[(3, 3e-3)]["error"]
    assert records[(2, 1e4)]["status"] == "diverged"
    assert records[(2, 3e-3)]["status"] == "complete"


def test_an_unnamed_multirun_directory_is_computed_once() -> None:
    """Hydra caches `${now:}` in the config it hands (pickled, under submitit) to every task and requeue."""
    import pickle

    from ablations.job.config import compose_config

    cfg = compose_config([])
    first = cfg.hydra.sweep.dir
    time.sleep(1.1)
    assert first.startswith("multirun/") and cfg.hydra.sweep.dir == first
    assert pickle.loads(pickle.dumps(cfg)).hydra.sweep.dir == first
    assert (
        compose_config(["+sweep=layer_sharing", "scale=smoke"]).hydra.sweep.dir
        == "multirun/layer_sharing/smoke"
    )


def test_a_signal_before_training_stops_at_the_first_step_and_the_same_command_resumes(
    tmp_path: Path,
) -> None:
    """SIGUSR2 while the job still prepares its data (here: tokenizer and shards built afresh) is noted by the
    handler run.py installs first thing, not fatal: training stops after its first step, as mid-run."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    command = [
        sys.executable, "run.py", f"hydra.run.dir={run_dir}", f"data.cache_dir={cache}",
        f"tokenizer.cache_dir={cache}", "data.embedded_max_bytes=300000", "data.num_proc=1",
        "train.micro_batch_size=4", "train.seq_len=32", f"train.tokens={6 * 4 * 32}", "train.log_every_n_steps=1",
        "train.val_every_n_steps=0", "trainer.enable_progress_bar=false", "data.progress=false", "logger=none",
        "eval=none",
    ]  # fmt: skip
    job = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None and not (run_dir / "result.json").is_file():
        time.sleep(0.02)
    job.send_signal(signal.SIGSTOP)  # held where it is: the `running` record comes before data and model
    assert not list(cache.rglob("manifest.json")), "the data was already prepared"
    job.send_signal(signal.SIGUSR2)  # delivered on SIGCONT, during preparation
    job.send_signal(signal.SIGCONT)
    output = job.communicate(timeout=120)[0]
    assert job.returncode == 3, output[-3000:]  # interrupted (the default SIGUSR2 action would kill it)
    assert "pre-emption signal (SIGUSR2): stopping after step 1" in output, output[-3000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "interrupted" and record["train"]["steps"] == 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "complete" and record["train"]["steps"] == 6
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(6))  # step 0 kept, 1-5 resumed


def child_process(parent: int, environ_entry: str) -> int | None:
    """The pid of `parent`'s child whose environment holds `environ_entry` (e.g. `LOCAL_RANK=1`)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line for line in status.read_text().splitlines() if line.startswith("PPid:"))
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue  # gone meanwhile, or not ours to read
        if int(ppid.split()[1]) == parent and environ_entry.encode() in environ:
            return int(status.parent.name)
    return None


def running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_signal_to_rank_1_only_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    """2 DDP processes on gloo (Lightning re-executes run.py for rank 1): SIGUSR2 to rank 1 alone."""
    run_dir, steps = tmp_path / "run", 60
    command = [
        sys.executable, "run.py", f"hydra.run.dir={run_dir}", "trainer=ddp_cpu", "trainer.strategy=ddp",
        "train.micro_batch_size=4", "train.seq_len=32", f"train.tokens={steps * 2 * 4 * 32}",
        "train.log_every_n_steps=1", "train.val_every_n_steps=0", "train.ckpt_every_n_steps=1000",
        "data.progress=false", "logger=none", "eval=none",
    ]  # fmt: skip
    job = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + 180
    while time.time() < deadline and job.poll() is None:
        if metrics.is_file() and metrics.read_text().count("train/loss") >= 2:
            break
        time.sleep(0.05)
    rank_1 = child_process(job.pid, "LOCAL_RANK=1")
    assert rank_1 is not None and job.poll() is None, job.communicate()[0][-3000:]
    os.kill(rank_1, signal.SIGUSR2)
    output = job.communicate(timeout=120)[0]
    deadline = time.time() + 60
    while time.time() < deadline and running(rank_1):
        time.sleep(0.1)  # rank 1 exits too (it may outlive rank 0 by a moment)
    assert not running(rank_1)
    assert job.returncode == 3, output[-3000:]
    noted = re.findall(r"pre-emption signal \(SIGUSR2\): stopping after step (\d+)", output)
    relayed = re.findall(r"pre-emption signal \(on another rank\): stopping after step (\d+)", output)
    assert len(noted) == len(relayed) == 1 and noted == relayed, output[-3000:]  # one step for both ranks
    stopped_at = int(noted[0])
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "interrupted" and record["train"]["steps"] == stopped_at < steps
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]

    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "complete" and record["train"]["steps"] == steps
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(steps))
