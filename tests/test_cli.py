"""The README's commands, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ablations.job.config import compose_config, job_config
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import load_model_dir
from tests.conftest import REPO


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_budget_cli_prints_the_counts_of_a_composed_config() -> None:
    result = run("-m", "ablations.budget", "model=mobilellm_350m")
    assert result.returncode == 0, result.stderr
    assert "model=mobilellm_350m" in result.stdout and "345,355,200" in result.stdout
    shared = run(  # README's command: the training window is run.py's key, train.seq_len
        "-m",
        "ablations.budget",
        "model=mobilellm_125m_ls",
        "model.sharing_scheme=reverse",
        "train.seq_len=4096",
    )
    assert "30 / 60" in shared.stdout and "reverse x2" in shared.stdout and "seq 4096" in shared.stdout


def test_budget_cli_rejects_an_invalid_architecture_by_rule() -> None:
    result = run("-m", "ablations.budget", "model=mobilellm_125m", "model.n_kv_heads=4")
    assert result.returncode != 0
    assert "n_heads (9) must be divisible by n_kv_heads (4)" in result.stderr
    assert "Traceback" not in result.stderr


def test_budget_cli_counts_a_geglu_model_exactly() -> None:
    result = run("-m", "ablations.budget", "model=tiny", "model.ffn_type=geglu")
    assert result.returncode == 0, result.stderr
    printed = int(
        re.search(r"params: total \(stored\)\s+│?\s*([\d,]+)", result.stdout).group(1).replace(",", "")
    )
    model = MobileLLM(job_config(compose_config(["model=tiny", "model.ffn_type=geglu"])).model)
    assert printed == sum(p.numel() for p in model.parameters())
    assert "geglu, hidden 384" in result.stdout


def test_run_py_trains_scores_and_records_a_geglu_variant(tmp_path: Path) -> None:
    result = run(
        "run.py",
        "model=tiny",
        "model.ffn_type=geglu",
        "train.tokens=16384",  # 4 steps of 16 × 256
        "train.log_every_n_steps=1",
        "eval=sweep_smoke",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == "complete" and record["config"]["model"]["ffn_type"] == "geglu"
    assert set(record["eval"]["tasks"]) == {"arc_easy", "piqa"}
    model = load_model_dir(tmp_path / "model")
    assert model.config.ffn_type == "geglu" and record["params"]["total"] == sum(
        p.numel() for p in model.parameters()
    )


def test_unknown_keys_are_refused_before_anything_runs(tmp_path: Path) -> None:
    for override in ("+eval.no_such_key=1", "model.n_layrs=3", "train.lr=abc"):
        result = run("run.py", override, f"hydra.run.dir={tmp_path / 'run'}")
        assert result.returncode != 0
        key = override.lstrip("+").split("=")[0]
        assert key in result.stderr + result.stdout, override
        assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize(
    "command",
    [["-m", "ablations.budget"], ["-m", "ablations.evaluate", "ckpt=missing"], ["-m", "ablations.prepare"]],
    ids=["budget", "evaluate", "prepare"],
)
def test_the_config_clis_name_a_bad_override_without_a_traceback(command: list[str]) -> None:
    for override, named in (("eval.limit=abc", "full_key: eval.limit"), ("model=nosuch", "'model/nosuch'")):
        result = run(*command, override)
        assert result.returncode == 2 and result.stderr.startswith("error: invalid config:"), result.stderr
        assert named in result.stderr and "Traceback" not in result.stderr
