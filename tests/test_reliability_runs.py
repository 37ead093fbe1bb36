"""Reliability probes of runs (issue #22, part B): records keep every number, a refused or no-op run writes
nothing, a killed run leaves no partial files, Optuna refuses a bad storage and fails a killed trial at once,
the memory plan gates the layout, and bad config, bad numbers and signals get their exit codes and messages.

Each test failed before its fix."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from ablations.job.config import compose_config, job_config
from ablations.job.stages import plan, run_job
from ablations.records.errors import ConfigError
from ablations.records.lock import run_dir_lock
from ablations.records.result import read_result
from tests.conftest import REPO
from tests.test_adversarial import TINY, leaks, run_py, tokens
from tests.test_sweeps import run_multirun

SECRETS = {"extra": "EXTRASECRET1", "env": "ENVTOKEN9876"}


# ------------------------------------------------------------------------- one real tiny run, in process


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real tiny run (with secrets in its config and environment, and the partial files a killed
    checkpoint write leaves in its checkpoint dir, under umask 022): its dir, the record it returned
    (unmasked), and the checkpoint connector's log lines."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    partial = [run_dir / "checkpoints" / f".{name}.tmp-{socket.gethostname()}-1-abcd" for name in
               ("step-0000040.ckpt", "last.ckpt")]  # fmt: skip
    for path in partial:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 4096)  # what kill -9 during a checkpoint write leaves
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    connector = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")
    connector.addHandler(handler)
    old_umask = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MY_SERVICE_TOKEN", SECRETS["env"])
            cfg = compose_config([
                *TINY, tokens(3), f"+train.extra.api_key={SECRETS['extra']}",
                "+train.extra.note=run-${oc.env:MY_SERVICE_TOKEN}",
            ])  # fmt: skip
            record = run_job(cfg, run_dir, name="v")
    finally:
        os.umask(old_umask)
        connector.removeHandler(handler)
    yield {"run_dir": run_dir, "record": record, "lines": lines, "partial": partial}


def numbers(tree: Any, path: str = "") -> dict[str, int | float]:
    """Every numeric leaf of a nested record, by its dotted path."""
    if isinstance(tree, dict):
        return {k: v for key, child in tree.items() for k, v in numbers(child, f"{path}.{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, child in enumerate(tree) for k, v in numbers(child, f"{path}[{i}]").items()}
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {path.lstrip("."): tree}
    return {}


def test_every_number_of_a_real_record_survives_the_secret_masking(tiny_run: dict[str, Any]) -> None:
    written = read_result(tiny_run["run_dir"])
    expected = numbers(json.loads(json.dumps(tiny_run["record"], default=str)))
    assert len(expected) > 40 and "flops_per_token" in expected  # the walk saw a whole record
    assert "data.tokenizer.bos_token_id" in expected and "data.tokenizer.eos_token_id" in expected
    found = numbers(written)
    lost = {k: (v, found.get(k)) for k, v in expected.items() if not math.isclose(v, found.get(k, math.nan))}
    assert lost == {}
    assert "***" not in json.dumps({k: v for k, v in written.items() if k != "config"})

    from analysis.records import load_records, records_frame, save_frame

    out = tiny_run["run_dir"].parent / "analysis"
    save_frame(records_frame(load_records([tiny_run["run_dir"]])), out, "records")
    with (out / "records.csv").open() as table:
        row = next(csv.DictReader(table))
    assert row["flops_per_token"] == str(expected["flops_per_token"])
    assert {key for key, value in row.items() if "***" in value} == {
        "train/extra/api_key",
        "train/extra/note",
    }


def test_real_secrets_are_still_masked_in_that_record(tiny_run: dict[str, Any]) -> None:
    written = read_result(tiny_run["run_dir"])
    assert written["config"]["train"]["extra"] == {"api_key": "***", "note": "run-***"}
    assert leaks(tiny_run["run_dir"], "", list(SECRETS.values())) == []


def test_partial_checkpoints_of_killed_writes_are_removed_when_training_starts(
    tiny_run: dict[str, Any],
) -> None:
    assert tiny_run["record"]["status"] == "complete"
    assert not any(path.exists() for path in tiny_run["partial"])
    assert not list((tiny_run["run_dir"] / "checkpoints").glob(".*.tmp-*"))


def test_exported_and_checkpoint_files_honour_the_umask(tiny_run: dict[str, Any]) -> None:
    run_dir = tiny_run["run_dir"]
    for path in (run_dir / "model" / "model.safetensors", run_dir / "checkpoints" / "last.ckpt",
                 run_dir / "result.json"):  # fmt: skip
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # safetensors alone would be 0600


def test_saving_the_last_checkpoint_says_nothing_about_weights_only(tiny_run: dict[str, Any]) -> None:
    assert tiny_run["record"]["status"] == "complete"
    assert not [line for line in tiny_run["lines"] if "weights_only" in line]


# ----------------------------------------------------------------- a refused or no-op run writes nothing


def run_dir_state(run_dir: Path) -> dict[str, bytes]:
    """The bytes of the run dir's Hydra dumps and logs."""
    paths = [*sorted((run_dir / ".hydra").glob("*")), *sorted(run_dir.glob("*.log"))]
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in paths}


def test_a_refused_or_no_op_run_writes_nothing_into_the_run_dir(tmp_path: Path) -> None:
    args = [*TINY, tokens(2), f"hydra.run.dir={tmp_path}"]
    assert run_py(*args).returncode == 0
    before = run_dir_state(tmp_path)
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "run.log"} <= set(before)
    assert b"train.tokens=256" in before[".hydra/overrides.yaml"]
    with run_dir_lock(tmp_path):  # a run in progress holds the dir
        busy = run_py(*args, "train.lr=0.02", "force=true")
    assert busy.returncode == 6, busy.stderr[-2000:]
    done = run_py(*args, "train.lr=0.03")  # the record is complete: nothing to do
    assert done.returncode == 0 and "nothing to do" in done.stdout + done.stderr
    assert run_dir_state(tmp_path) == before  # no .hydra rewrite, no run.log line
    assert read_result(tmp_path)["config"]["train"]["lr"] == 3e-3


# -------------------------------------------------------------------------------------------- Optuna


def search_args(tmp_path: Path, storage: str, *extra: str) -> list[str]:
    """A one-axis smoke search (as tests/test_search.py's) into `tmp_path/search`."""
    return [
        "+search=budget", "scale=smoke", "eval=none", f"hydra.sweep.dir={tmp_path / 'search'}",
        "hydra.sweeper.enqueue_trials=[]", "hydra.sweeper.min_params=null", "hydra.sweeper.seed=0",
        "model.n_layers=1", "model.n_kv_heads=1", "tables.search.gqa_ratio=1", "model.ffn_type=swiglu",
        "model.ffn_multiplier=null", "model.share_embeddings=true", "model.sharing_scheme=none",
        f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.n_trials=1", *extra,
    ]  # fmt: skip


def test_an_unwritable_optuna_storage_is_refused_in_one_line_before_any_trial(tmp_path: Path) -> None:
    regular_file = tmp_path / "file"
    regular_file.write_text("")
    url = f"sqlite:///{regular_file}/study.db"  # a path under a regular file
    result = run_multirun(search_args(tmp_path, url, "train.tokens=1024"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: invalid Optuna storage: hydra.sweeper.storage={url} cannot be opened: "
                      "(sqlite3.OperationalError) unable to open database file"], result.stderr[-3000:]  # fmt: skip
    assert "Traceback" not in result.stderr and not (tmp_path / "search").exists()


def test_a_trial_whose_process_is_gone_is_failed_at_once_on_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    command = [
        sys.executable,
        str(REPO / "run.py"),
        "-m",
        *search_args(tmp_path, url, "train.tokens=2560000"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline, records = time.time() + 300, []
    while time.time() < deadline and killed.poll() is None and not records:
        time.sleep(0.2)
        records = [path.parent for path in (tmp_path / "search").glob("*/result.json")]
    assert records and killed.poll() is None, "the trial's job never started"
    killed.send_signal(signal.SIGKILL)  # the sweep and its in-process job, mid-training
    killed.wait()
    (run_dir,) = records
    assert read_result(run_dir)["status"] == "running"

    resumed = run_multirun(search_args(tmp_path, url, "train.tokens=1024"), cwd=tmp_path)  # grace 180 s
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = optuna.load_study(study_name="budget_125m", storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[0].user_attrs["run_dir"] == str(run_dir)
    record = read_result(run_dir)
    assert record["status"] == "failed" and f"pid {killed.pid} on host" in record["error"]
    assert "is gone" in record["error"]


# --------------------------------------------------------------------------- the memory plan is a gate


PAPER_350M = ["scale=paper", "model=mobilellm_350m", "plan_only=true"]


def test_a_layout_that_does_not_fit_the_device_is_refused_naming_what_fits() -> None:
    job = job_config(
        compose_config([*PAPER_350M, "train.device=h100_80gb", "train.activation_checkpointing=none"])
    )
    with pytest.raises(ConfigError) as refused:
        plan(job)
    message = str(refused.value)
    assert "train.micro_batch_size=32 with train.activation_checkpointing=none" in message
    assert "101.7 GiB per GPU, 127% of h100_80gb" in message
    assert "train.activation_checkpointing=every_k" in message and "train.micro_batch_size=16" in message


def test_auto_checkpointing_picks_the_least_recompute_that_fits_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ablations.train.micro_batch")
    job_plan = plan(job_config(compose_config([*PAPER_350M, "train.device=h100_80gb"])))  # the preset: auto
    assert job_plan.memory.activation_checkpointing == job_plan.train.activation_checkpointing == "every_k"
    assert job_plan.micro_batch_size == 32 and "auto: the least recompute" in (job_plan.memory.chosen or "")
    assert "train.activation_checkpointing=every_k (auto" in caplog.text


def test_plan_only_prints_the_memory_per_gpu_against_the_device() -> None:
    result = run_py(*PAPER_350M, "train.device=h100_80gb", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "activation checkpointing          every_k (auto: the least recompute" in result.stdout
    assert (
        "memory per GPU                    62.0 GiB: 77% of h100_80gb (80 GiB, train.device); fits"
        in result.stdout
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a login node: no GPU visible")
def test_plan_only_without_a_device_or_a_gpu_prints_the_memory_unchecked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_job(compose_config(PAPER_350M), tmp_path, name="v")["status"] == "planned"
    printed = capsys.readouterr().out
    assert "activation checkpointing          auto (chosen when the job runs, for its GPU)" in printed
    assert (
        "memory per GPU                    none 101.7 / every_k 62.0 / full 19.4 GiB: not checked" in printed
    )
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # a plan writes nothing


def test_the_paper_presets_still_plan_on_an_80gb_gpu() -> None:
    presets = sorted(path.stem for path in (REPO / "conf" / "model").glob("mobilellm_*.yaml"))
    refused = {}
    for scale in ("paper", "paper_final"):
        for model in presets:
            overrides = [f"scale={scale}", f"model={model}", "plan_only=true", "train.device=h100_80gb"]
            try:
                plan(job_config(compose_config(overrides)))
            except ConfigError as error:
                refused[(scale, model)] = str(error)
    # 1.5B-LS at micro-batch 32 needs 80 GiB per GPU under DDP even with full checkpointing: sharded, it fits
    assert set(refused) == {("paper", "mobilellm_1.5b_ls"), ("paper_final", "mobilellm_1.5b_ls")}
    assert all("trainer=fsdp" in message for message in refused.values())
    sharded = ["scale=paper", "model=mobilellm_1.5b_ls", "train.device=h100_80gb", "trainer=fsdp",
               "trainer.devices=8", "trainer.num_nodes=4"]  # fmt: skip
    assert plan(job_config(compose_config(sharded))).memory.activation_checkpointing == "full"


# ------------------------------------------------------------------------------ exit codes and messages


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model=no_such_model", "Could not find 'model/no_such_model'"),
        ("model.no_such_key=3", "model.no_such_key"),
    ],
)
def test_a_bad_preset_or_key_exits_2_with_a_short_message(override: str, named: str) -> None:
    result = run_py(override, "plan_only=true", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and named in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # no search path, no traceback
    assert "Config search path" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "rule"),
    [
        ("train.lr=inf", "train.lr must be > 0 and finite"),
        ("train.base_lr=inf", "train.base_lr must be > 0 and finite"),
        ("train.weight_decay=nan", "train.weight_decay must be >= 0 and finite"),
        ("train.grad_clip=inf", "train.grad_clip must be >= 0 and finite"),
        ("train.eps=-1e-8", "train.eps must be > 0 and finite"),
        ("model.init_std=inf", "init_std must be > 0 and finite"),
    ],
)
def test_non_finite_or_negative_recipe_numbers_are_refused_by_key(
    tmp_path: Path, override: str, rule: str
) -> None:
    with pytest.raises(ConfigError, match=rule):
        run_job(compose_config([*TINY, tokens(2), override]), tmp_path, name="v")
    assert not (tmp_path / "checkpoints").exists()  # refused before anything trained


def test_a_sigterm_record_names_the_signal_and_the_checkpoint_it_resumes_from(tmp_path: Path) -> None:
    command = [sys.executable, "run.py", *TINY, tokens(120), f"hydra.run.dir={tmp_path}"]
    job = subprocess.Popen(
        command, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    metrics, deadline = tmp_path / "metrics.jsonl", time.time() + 300
    while time.time() < deadline and job.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    output = job.communicate(timeout=300)[0]
    assert job.returncode == 3, output[-3000:]
    record = read_result(tmp_path)
    steps = record["train"]["steps"]
    assert record["status"] == "interrupted" and steps > 0
    assert record["error"] == (
        f"SIGTERMException: stopped by SIGTERM (pre-emption); resumable from {tmp_path}/checkpoints/last.ckpt "
        f"(step {steps}, {steps * 4 * 32:,} tokens seen): run the same command to resume"
    )
    assert "`weights_only` was not set" not in output  # nor does the checkpoint saved on the way out
