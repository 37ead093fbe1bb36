"""On a real one-node SLURM cluster (skipped where it cannot start): data preparation as an array job."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurm_cluster
from tests.conftest import REPO
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
    cluster.wait_gone(array, timeout=180)
    cluster.wait_gone(single, timeout=180)
    outputs = [(tmp_path / f"part-{i}.out").read_text() for i in (0, 1)]
    assert sum("shards: " in out for out in outputs) == 1, outputs  # one part merged
    (one,) = (tmp_path / "one" / "shards").iterdir()
    (merged,) = [p for p in (tmp_path / "parts" / "shards").iterdir() if p.is_dir()]
    same_tree(one, merged)


def test_a_sweep_through_the_slurm_launcher_records_every_variant(
    cluster: slurm_cluster.Cluster, tmp_path: Path
) -> None:
    """`python run.py -m +sweep=layer_sharing scale=smoke hydra/launcher=slurm` (2 variants): submitit
    submits each as a SLURM job, which trains, evaluates and records it."""
    import subprocess

    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", "+sweep=layer_sharing", "scale=smoke", "hydra/launcher=slurm",
        "axes.budget=125M", "axes.sharing_scheme=none,immediate", "axes.sharing_repeats=2", "eval=none",
        f"hydra.sweep.dir={sweep_dir}", "hydra.launcher.gpus_per_node=null", "hydra.launcher.tasks_per_node=1",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:] + cluster.logs()
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json")}
    assert set(records) == {
        "budget=125M,sharing_repeats=2,sharing_scheme=none",
        "budget=125M,sharing_repeats=2,sharing_scheme=immediate",
    }
    assert all(r["status"] == "complete" for r in records.values())
    assert all(Path(r["run_dir"]).resolve().parent == sweep_dir.resolve() for r in records.values())
