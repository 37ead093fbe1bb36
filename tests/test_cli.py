"""The README's commands, run as a user would (subprocesses)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_budget_cli_prints_the_counts_of_a_composed_config() -> None:
    result = run("-m", "ablations.budget", "model=mobilellm_350m")
    assert result.returncode == 0, result.stderr
    assert "model=mobilellm_350m" in result.stdout and "345,355,200" in result.stdout
    shared = run(
        "-m", "ablations.budget", "model=mobilellm_125m_ls", "model.sharing_scheme=reverse", "seq_len=4096"
    )
    assert "30 / 60" in shared.stdout and "reverse x2" in shared.stdout and "seq 4096" in shared.stdout


def test_budget_cli_rejects_an_invalid_architecture_by_rule() -> None:
    result = run("-m", "ablations.budget", "model=mobilellm_125m", "model.n_kv_heads=4")
    assert result.returncode != 0
    assert "n_heads (9) must be divisible by n_kv_heads (4)" in result.stderr
    assert "Traceback" not in result.stderr
