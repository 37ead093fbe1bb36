"""On a real one-node SLURM cluster (skipped where it cannot start): data preparation as an array job, a sweep
through the SLURM launcher, pre-emption (`scontrol requeue`, a `--signal` time limit) and resumption."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import slurm_cluster
from tests.conftest import REPO
from tests.test_preemption import train_command
from tests.test_prepare import DOCS, same_tree


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurm_cluster.Cluster]:
    started = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    if isinstance(started, str):
        pytest.skip(f"no SLURM cluster: {started}")
    yield started
    started.stop()


def test_preparation_as_an_array_job_equals_one_process(
    cluster: slurm_cluster.Cluster, tmp_path: Path
) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS))
    args = f"data=local_files data.paths=[{corpus}] data.shard_tokens=1500 data.block_documents=16"
    args += f" data.num_proc=1 data.progress=false tokenizer.vocab_size=300 tokenizer.cache_dir={tmp_path / 'tok'}"
    prepare = f"cd {REPO} && HF_HUB_OFFLINE=1 {sys.executable} -m ablations.prepare {args}"
    array = cluster.sbatch(
        "--array=0-1", f"--output={tmp_path}/part-%a.out",
        f"--wrap={prepare} data.cache_dir={tmp_path / 'parts'} part=$SLURM_ARRAY_TASK_ID/2",
    )  # fmt: skip
    single = cluster.sbatch(
        f"--output={tmp_path}/one.out", f"--wrap={prepare} data.cache_dir={tmp_path / 'one'}"
    )
    cluster.wait_finished(array, timeout=180)
    cluster.wait_finished(single, timeout=180)
    outputs = [(tmp_path / f"part-{i}.out").read_text() for i in (0, 1)]
    assert cluster.exit_codes(array) == {"0": "0:0", "1": "0:0"}, outputs
    # a part finishing while another still tokenises leaves the merge to it; a part finishing after the
    # merge (or both at once: the second takes the lock after the first merged) finds the merged shards
    for i, out in enumerate(outputs):
        assert f"part {i}/2 written; the last part to finish merges" in out or "shards: " in out, out
    assert any("shards: " in out for out in outputs), outputs  # one part merged
    (one,) = (tmp_path / "one" / "shards").iterdir()
    (merged,) = [p for p in (tmp_path / "parts" / "shards").iterdir() if (p / "manifest.json").is_file()]
    assert not merged.with_name(f"{merged.name}.parts").exists()  # the parts are removed once merged
    same_tree(one, merged)


def test_a_sweep_through_the_slurm_launcher_records_every_variant(
    cluster: slurm_cluster.Cluster, tmp_path: Path
) -> None:
    """`python run.py -m +sweep=layer_sharing scale=smoke hydra/launcher=slurm` (2 variants): submitit
    submits each as a SLURM job, which trains, evaluates and records it."""
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", "+sweep=layer_sharing", "scale=smoke", "hydra/launcher=slurm",
        "axes.budget=125M", "axes.sharing_scheme=none,immediate", "axes.sharing_repeats=2", "eval=none",
        f"hydra.sweep.dir={sweep_dir}", "hydra.launcher.gpus_per_node=null", "hydra.launcher.tasks_per_node=1",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:] + cluster.logs()
    # a sweep's run dir is <axes>/seed=<n> (docs/sweeps.md)
    records = {
        p.parent.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/seed=0/result.json")
    }
    assert set(records) == {
        "budget=125M,sharing_repeats=2,sharing_scheme=none",
        "budget=125M,sharing_repeats=2,sharing_scheme=immediate",
    }
    assert all(r["status"] == "complete" for r in records.values())
    assert all(Path(r["run_dir"]).resolve().parent.parent == sweep_dir.resolve() for r in records.values())


# what differs between two runs of the same job: the wall clock, throughput and the process's peak memory
WALL_CLOCK_FIELDS = ("time", "perf/tokens_per_s", "perf/tflops", "perf/mfu", "perf/peak_mem_gb")


def metric_rows(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without its wall-clock fields: step, tokens, loss, grad norm, LR, epoch, val loss."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS} for row in rows]


def wait_for_training(metrics: Path, steps: int, timeout: float = 240) -> None:
    """Until `steps` optimizer steps are logged."""
    deadline = time.time() + timeout
    while time.time() < deadline and not (
        metrics.is_file() and metrics.read_text().count("train/loss") >= steps
    ):
        time.sleep(0.05)
    assert metrics.is_file() and metrics.read_text().count("train/loss") >= steps, f"no training in {metrics}"


@pytest.mark.parametrize("preemption", ["scontrol requeue", "--signal time limit"])
def test_a_preempted_job_resumes_in_its_run_dir_and_ends_as_an_uninterrupted_one(
    cluster: slurm_cluster.Cluster, tmp_path: Path, preemption: str
) -> None:
    steps = 40
    reference = subprocess.Popen(train_command(tmp_path / "reference", steps), cwd=REPO, env=cluster.env)
    run_dir = tmp_path / "preempted"
    wrap = f"cd {REPO} && exec {shlex.join(train_command(run_dir, steps))}"
    options = ["--requeue", "--open-mode=append", f"--output={tmp_path}/job.out", f"--wrap={wrap}"]
    if preemption == "--signal time limit":
        # USR2 to the batch shell (exec'd into python) 10 minutes before an 11-minute limit; slurmctld checks
        # time limits every 30 s, so it comes 30-60 s after the start. The job saves and requeues itself.
        options += ["--time=11", "--signal=B:USR2@600"]
    job = cluster.sbatch(*options)
    wait_for_training(run_dir / "metrics.jsonl", steps=3)
    # held mid-training, however fast its steps, until pre-empted: SLURM sends SIGCONT with SIGTERM or USR2
    os.kill(cluster.batch_pid(job), signal.SIGSTOP)
    if preemption == "scontrol requeue":
        cluster.run("scontrol", "requeue", job)
    deadline = time.time() + 240
    while time.time() < deadline and "Restarts=0" in cluster.run("scontrol", "show", "job", job):
        time.sleep(0.5)
    assert "Restarts=0" not in cluster.run("scontrol", "show", "job", job), cluster.logs()  # requeued
    if preemption == "--signal time limit":  # the requeued job (pending for cred_expire) runs to its end
        cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=UNLIMITED")
    cluster.wait_finished(job, timeout=300)
    assert reference.wait(timeout=300) == 0
    out = (tmp_path / "job.out").read_text()
    signal_name = "SIGUSR2" if preemption == "--signal time limit" else "SIGTERM"
    stopped = re.findall(rf"pre-emption signal \({signal_name}\): stopping after step (\d+)", out)
    assert len(stopped) == 1 and 3 <= int(stopped[0]) < steps, out[-3000:] + cluster.logs()  # mid-run
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "complete" and record["train"]["steps"] == steps, out[-3000:]
    assert record["run_dir"] == str(run_dir)
    reference_rows = metric_rows(tmp_path / "reference")
    assert [r["step"] for r in reference_rows if "train/loss" in r] == list(range(steps))
    assert metric_rows(run_dir) == reference_rows  # every row in order: the resumed run logged each step once
    assert (
        record["train"]["final_loss"]
        == json.loads((tmp_path / "reference" / "result.json").read_text())["train"]["final_loss"]
    )
