"""Optuna architecture search: never launches an over-budget trial, survives a failing trial, resumes by
name (SQLite), prunes from reported validation losses, and shares a study through PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from ablations.job.config import compose_config
from ablations.job.stages import run_job
from ablations.records.errors import TrialPruned
from ablations.records.result import read_result
from tests.test_sweeps import run_multirun

REPO = Path(__file__).resolve().parents[1]
MAX_PARAMS = 1_000_000  # sweeps/search/budget.yaml (125M) at scale=smoke


def search(tmp_path: Path, storage: str | None, *extra: str) -> subprocess.CompletedProcess:
    args = [
        "+search=budget",
        "scale=smoke",
        "eval=none",
        "train.tokens=1024",
        f"hydra.sweep.dir={tmp_path / 'search'}",
        "hydra.sweeper.enqueue_trials=[]",
        "hydra.sweeper.min_params=null",
        "hydra.sweeper.seed=0",
        # fixed here, so each test searches only the axes it names
        "model.n_layers=1",
        "model.n_kv_heads=1",
        "tables.search.gqa_ratio=1",
        "model.ffn_type=swiglu",
        "model.ffn_multiplier=null",
        "model.share_embeddings=true",
        "model.sharing_scheme=none",
        *([f"hydra.sweeper.storage='{storage}'"] if storage else []),
        *extra,
    ]
    return run_multirun(args, cwd=tmp_path)


def launched_records(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "search").glob("*/result.json"))]


def check_first_search(tmp_path: Path, storage: str) -> optuna.Study:
    # 2000 layers never fit 1M parameters at smoke size; a 300-token vocabulary fails validation (the
    # tokenizer has 4096): the grid holds 2 feasible trials (1 completes, 1 fails) and 2 over-budget ones
    first = search(
        tmp_path,
        storage,
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=4",  # one batch asks the whole grid
        "model.n_layers=choice(1,2000)",
        "model.vocab_size=choice(4096,300)",
    )
    assert first.returncode == 1, first.stderr[-3000:]  # a trial failed: the sweep's exit code says so
    assert "2 jobs run (1 complete, 1 failed)" in first.stdout
    study = optuna.load_study(study_name="budget_125m", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL", "PRUNED", "PRUNED"], states
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert trial.params["model.n_layers"] == 2000 and "> budget" in trial.user_attrs["infeasible"]
    records = launched_records(tmp_path)
    assert len(records) == 2  # over-budget trials never got a run dir
    complete, failed = sorted(records, key=lambda r: r["status"])
    assert (complete["status"], failed["status"]) == ("complete", "failed")
    assert complete["params"]["total"] <= MAX_PARAMS
    assert "tokenizer.vocab_size=4096 > model.vocab_size=300" in failed["error"]
    assert all(r["axes"]["study"] == "budget_125m" for r in records)
    return study


def test_sqlite_search_prunes_over_budget_trials_survives_a_failure_and_resumes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = check_first_search(tmp_path, storage)
    kept = {t.number: t.state for t in first.trials}

    resumed = search(
        tmp_path,
        storage,
        "hydra.sweeper.sampler=random",
        "hydra.sweeper.n_trials=3",
        "model.n_layers=choice(1,2000)",  # a stored study keeps its categorical spaces
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="budget_125m", storage=storage)
    assert {t.number: t.state for t in study.trials if t.number in kept} == kept  # earlier trials kept
    launched = [t for t in study.trials if "infeasible" not in t.user_attrs]
    assert len(launched) == 3 and launched[-1].state == optuna.trial.TrialState.COMPLETE
    summary = json.loads((tmp_path / "search" / "optuna_summary.json").read_text())
    assert summary["states"]["COMPLETE"] == 2 and summary["best"]


def test_a_trial_is_pruned_from_the_validation_losses_it_reports(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="prune", storage=storage)
    best = study.ask()
    for step in range(0, 50):
        best.report(0.0, step)  # a finished trial that was perfect at every step
    study.tell(best, 0.0)
    study.ask()  # trial 1: the one the job below runs
    cfg = compose_config(
        [
            "scale=smoke",
            "eval=none",
            "train.val_every_n_steps=2",
            "optuna.study_name=prune",
            f"optuna.storage='{storage}'",
            "optuna.trial_number=1",
            "optuna.n_startup_trials=1",
        ]
    )
    with pytest.raises(TrialPruned):
        run_job(cfg, tmp_path / "trial1", name="trial1")
    assert read_result(tmp_path / "trial1")["status"] == "pruned"
    trial = optuna.load_study(study_name="prune", storage=storage).trials[1]
    assert list(trial.intermediate_values) == [2]  # reported at the first validation, then stopped


def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin")):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def _driver() -> str | None:
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        try:
            __import__(module)
            return dialect
        except ImportError:
            continue
    return None


@pytest.fixture
def postgres_url(tmp_path: Path):
    """A throwaway PostgreSQL server on a free local port (skipped without the server or a driver)."""
    bin_dir, dialect = _postgres_bin(), _driver()
    if bin_dir is None or dialect is None:
        pytest.skip("PostgreSQL binaries (/usr/lib/postgresql/*/bin) or a psycopg driver are not installed")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("postgres refuses to run as root and runuser is missing")
    # postgres refuses root: run as root, it runs as the unprivileged `nobody` from a world-readable dir
    server_dir = Path(tempfile.mkdtemp(prefix="optuna-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        os.chmod(server_dir, 0o777)
        as_user = ["runuser", "-u", "nobody", "--"]
    data = server_dir / "pgdata"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "optuna", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(server_dir / "pg.log"),
            "-w",
            "-o",
            f"-p {port} -k {server_dir} -h 127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.time() + 30
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]).returncode:
            assert time.time() < deadline, (server_dir / "pg.log").read_text()
            time.sleep(0.2)
        yield f"{dialect}://optuna@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )


def test_postgres_storage_holds_the_study(tmp_path: Path, postgres_url: str) -> None:
    study = check_first_search(tmp_path, postgres_url)
    assert study.study_name == "budget_125m"


def test_the_storage_password_reaches_no_file_and_no_log(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.replace("://optuna@", "://optuna:hunter2secret@")  # trust auth: the password is unused
    os.environ["ABLATIONS_OPTUNA_STORAGE"] = url  # the documented place for a URL with a password
    try:
        result = search(tmp_path, None, "hydra.sweeper.n_trials=1")
    finally:
        del os.environ["ABLATIONS_OPTUNA_STORAGE"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hunter2secret" not in result.stdout + result.stderr
    written = [p for p in (tmp_path / "search").rglob("*") if p.is_file()]
    assert any(p.name == "result.json" for p in written) and any(p.parent.name == ".hydra" for p in written)
    for path in written:
        assert b"hunter2secret" not in path.read_bytes(), path
