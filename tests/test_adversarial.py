"""Adversarial probes: what an attacker or a careless user does to the platform, and what must hold.

Each probe is one promise of README's "Reliability and security" section: no code executed from a file the
platform reads, no secret in anything it writes, no complete result overwritten, exact metrics after a
kill -9, one process per run dir, no silent config change on resume, bad input named before compute is spent,
exit codes that tell success, interruption and failure apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import optuna
import pytest
import torch

from ablations.eval.loading import load_for_eval
from ablations.eval.sources import PACKAGED_DIR
from ablations.fetch_eval_data import hub_tasks
from ablations.job.config import compose_config
from ablations.job.stages import run_job
from ablations.model.architecture import MobileLLM
from ablations.model.checkpoint import CheckpointError, UnsafeCheckpoint, load_model_dir, save_model_dir
from ablations.records.errors import ConfigError
from ablations.records.lock import run_dir_lock
from ablations.records.metrics import read_metrics, rewind_metrics
from ablations.records.result import read_result, write_result
from tests.conftest import REPO, small_config

TINY = [
    "train.micro_batch_size=4",
    "train.seq_len=32",
    "train.log_every_n_steps=1",
    "train.val_every_n_steps=0",
    "trainer.enable_progress_bar=false",
    "data.progress=false",
    "logger=none",
    "eval=none",
]


def tokens(steps: int) -> str:
    return f"train.tokens={steps * 4 * 32}"


def run_py(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


class Payload:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------ no code from files read


def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"model_config": {}}, "state_dict": {}, "payload": Payload(marker)}, ckpt)
    with pytest.raises(UnsafeCheckpoint, match=r"evil\.ckpt: refused"):
        load_for_eval(ckpt, tokenizer_dir=tmp_path)
    cli = subprocess.run(
        [sys.executable, "-m", "ablations.evaluate", f"ckpt={ckpt}", f"tokenizer={tmp_path}", "eval=none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode != 0 and "refused" in cli.stderr and "Traceback" not in cli.stderr
    # resuming a job from it: refused by validation, named, before any data is prepared
    resumed = run_py(*TINY, tokens(2), f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    assert resumed.returncode == 2, resumed.stdout[-2000:]  # a bad input, not a failed run
    assert f"{ckpt}: refused" in resumed.stdout + resumed.stderr
    record = read_result(tmp_path / "run")
    assert record["status"] == "failed" and not (tmp_path / "run" / "metrics.jsonl").exists()
    assert not marker.exists()


def test_a_config_cannot_call_code_through_a_callback_target(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write = f"{{_target_: pathlib.Path.write_text, _args_: [{{_target_: pathlib.Path, _args_: ['{marker}']}}, x]}}"
    nested = f"{{_target_: tests.ddp_probe.RankProbe, out_dir: {{_target_: pathlib.Path.mkdir, self: '{marker}'}}}}"
    cfg = compose_config([*TINY, tokens(2), f"+callbacks.write={write}", f"+callbacks.nested={nested}"])
    with pytest.raises(ConfigError) as error:
        run_job(cfg, tmp_path / "run", name="v")
    message = str(error.value)
    assert "callbacks.write._target_=pathlib.Path.write_text: not an importable class" in message
    assert "callbacks.nested: nested `_target_` at ['out_dir']" in message
    assert not marker.exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_corrupt_safetensors_file_is_named(tmp_path: Path) -> None:
    save_model_dir(MobileLLM(small_config()), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model_dir(tmp_path)


# ------------------------------------------------------------------------------------- no secrets


def test_records_and_config_dumps_mask_url_passwords_and_secret_keys(tmp_path: Path) -> None:
    secret = "postgresql+psycopg2://optuna:hunter2secret@db.example/optuna"
    write_result(
        tmp_path, {"status": "running", "config": {"optuna": {"storage": secret}, "api_key": "k-123"}}
    )
    text = (tmp_path / "result.json").read_text()
    assert "hunter2secret" not in text and "k-123" not in text
    assert (
        read_result(tmp_path)["config"]["optuna"]["storage"]
        == "postgresql+psycopg2://optuna:***@db.example/optuna"
    )


def leaks(run_dir: Path, output: str, secrets: list[str]) -> list[str]:
    """`secret in file` for every secret found in any file under run_dir or in the process's output."""
    found = [f"{s} in output" for s in secrets if s in output]
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{s} in {path.relative_to(run_dir)}" for s in secrets if s.encode() in data]
    return found


def test_no_secret_reaches_any_file_of_a_run_or_its_output(tmp_path: Path) -> None:
    secrets = ["EXTRASECRET1", "AWSX1234567", "ACCX1234567", "PKX12345678", "ENVTOKEN9876"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline", MY_SERVICE_TOKEN="ENVTOKEN9876")
    args = [  # a sweep of one job: Hydra's launcher logs its overrides and writes multirun.yaml too
        "-m", *TINY, tokens(2), f"hydra.sweep.dir={tmp_path}", "logger=[csv,tensorboard,wandb]",
        "+train.extra.api_key=EXTRASECRET1", "+train.extra.aws_secret_access_key=AWSX1234567",
        "+train.extra.accessToken=ACCX1234567", "+train.extra.private_key=PKX12345678",
        "name=run-${oc.env:MY_SERVICE_TOKEN}",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the checkpoint's and loggers' hparams, .hydra/*.yaml, W&B's files (config, metadata), the records
    assert leaks(tmp_path, result.stdout + result.stderr, secrets) == []
    (record,) = [read_result(path.parent) for path in tmp_path.rglob("result.json")]
    assert record["status"] == "complete" and record["config"]["train"]["extra"]["api_key"] == "***"


def test_a_url_password_in_a_failing_source_stays_out_of_logs_and_records(tmp_path: Path) -> None:
    # a path join turns https://… into https:/…; the error naming it is logged and recorded
    result = run_py(*TINY, tokens(2), f"hydra.run.dir={tmp_path}", "data=hf_dataset",
                    "data.hf_path=https://bob:HFPASS1@127.0.0.1:1/ds")  # fmt: skip
    assert result.returncode == 2 and "bob:***@127.0.0.1" in result.stdout + result.stderr
    assert leaks(tmp_path, result.stdout + result.stderr, ["HFPASS1"]) == []


# --------------------------------------------------------------------------- results never lost


def test_a_complete_record_is_never_overwritten_without_force(tmp_path: Path) -> None:
    args = [*TINY, tokens(3), f"hydra.run.dir={tmp_path}"]
    assert run_py(*args).returncode == 0
    first = (tmp_path / "result.json").read_text()
    stamp = (tmp_path / "result.json").stat().st_mtime_ns
    # the same command again, and again with a broken eval data dir: the record stays as it was
    for extra in ([], ["eval=smoke", f"eval.data_dir={tmp_path / 'nowhere'}"]):
        again = run_py(*args, *extra)
        assert again.returncode == 0, again.stderr[-2000:]
        assert (tmp_path / "result.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "result.json").read_text() == first
    forced = run_py(*args, "force=true")
    assert forced.returncode == 0 and (tmp_path / "result.json").stat().st_mtime_ns != stamp


def test_a_corrupt_result_record_in_the_run_dir_is_bad_input_named_and_kept(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text('{"status": "compl')
    run = run_py(*TINY, tokens(3), f"hydra.run.dir={tmp_path}")
    assert run.returncode == 2, run.stderr[-2000:]  # bad input, not a failed run
    assert f"{tmp_path / 'result.json'}: unreadable result record" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert (tmp_path / "result.json").read_text() == '{"status": "compl'  # nothing lost
    assert not (tmp_path / "checkpoints").exists()  # nothing built


def test_a_torn_last_metrics_line_is_skipped_and_rewound(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "train/loss": 5.0}\n{"step": 1, "train/loss": 4.0}\n{"step": 2, "tra')
    assert [row["step"] for row in read_metrics(path)] == [0, 1]
    rewind_metrics(path, 1)
    assert path.read_text() == '{"step": 0, "train/loss": 5.0}\n'
    path.write_text('{"step": 0}\n{"ste\n{"step": 2}\n')  # torn in the middle: corruption, named
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2"):
        read_metrics(path)


def test_metrics_after_kill_9_and_resume_are_exactly_the_uninterrupted_runs(tmp_path: Path) -> None:
    steps = 120
    args = [*TINY, tokens(steps), "train.ckpt_every_n_steps=40", "train.keep_checkpoints=-1"]
    reference = tmp_path / "reference"
    assert run_py(*args, f"hydra.run.dir={reference}").returncode == 0

    run_dir = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "run.py", *args, f"hydra.run.dir={run_dir}"]
    job = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline and len(read_metrics(metrics)) < 2 * 50:  # past the step-40 checkpoint
        time.sleep(0.1)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert len(read_metrics(metrics)) < 2 * steps  # it died mid-run
    assert run_py(*args, f"hydra.run.dir={run_dir}").returncode == 0

    def rows(path: Path) -> list[tuple[int, tuple[str, ...]]]:
        return [(r["step"], tuple(sorted(k for k in r if k != "time"))) for r in read_metrics(path)]

    assert rows(metrics) == rows(reference / "metrics.jsonl")  # each step once, same keys, same order
    losses = {r["step"]: r["train/loss"] for r in read_metrics(metrics) if "train/loss" in r}
    expected = {
        r["step"]: r["train/loss"] for r in read_metrics(reference / "metrics.jsonl") if "train/loss" in r
    }
    assert losses == pytest.approx(expected, abs=1e-6)


# ----------------------------------------------------------------------- one run dir, one process


def test_a_second_run_in_a_busy_run_dir_is_refused_with_the_holder(tmp_path: Path) -> None:
    with run_dir_lock(tmp_path):
        second = run_py(*TINY, tokens(2), f"hydra.run.dir={tmp_path}")
    assert second.returncode == 6
    assert f"pid {os.getpid()} on host" in second.stderr + second.stdout
    assert not (tmp_path / "result.json").exists()


# ------------------------------------------------------------------ resume refuses a changed config


def test_resume_refuses_a_changed_config_unless_allowed(tmp_path: Path) -> None:
    base = [*TINY, tokens(3), "train.lr=3e-3"]
    assert run_job(compose_config(base), tmp_path, name="v")["status"] == "complete"
    changed = compose_config([*base, "force=true", "train.lr=1e-2", "model.dim=64"])
    with pytest.raises(ConfigError) as refused:
        run_job(changed, tmp_path, name="v")
    message = str(refused.value)
    assert "train.lr: 0.003 → 0.01" in message and "model.dim: 128 → 64" in message
    assert read_result(tmp_path)["status"] == "complete"  # the refusal wrote nothing over it
    allowed = compose_config([*base, "force=true", "train.lr=1e-2", "resume_allow_changes=[train.lr]"])
    assert run_job(allowed, tmp_path, name="v")["status"] == "complete"


def test_resume_refuses_a_reshaping_change_even_when_allowed_and_keeps_the_runs_record(
    tmp_path: Path,
) -> None:
    base = [*TINY, tokens(3)]
    assert run_job(compose_config(base), tmp_path, name="v")["status"] == "complete"
    interrupted = {**read_result(tmp_path), "status": "interrupted"}  # as a pre-empted run leaves it
    write_result(tmp_path, interrupted)
    reshaped = [*base, "model.dim=64", "resume_allow_changes=[model.dim,model.no_such_key]"]
    with pytest.raises(ConfigError) as refused:
        run_job(compose_config(reshaped), tmp_path, name="v")
    message = str(refused.value)
    assert "the model config changes" in message and "(128,) → (64,)" in message
    assert "resume_allow_changes: 'model.no_such_key' names no key of the job config" in message
    assert read_result(tmp_path) == interrupted  # the refused attempt lost nothing of the run's record


# ------------------------------------------------------------ bad input named before compute is spent


def test_every_broken_rule_of_every_group_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        run_job(
            compose_config(["model.dim=130", "model.ffn_type=foo", "train.lr=-1", "trainer.devices=0"]),
            "/tmp/x",
            "v",
        )
    for rule in (
        "ffn_type must be one of",
        "dim (130) must be divisible",
        "train.lr must be > 0",
        "devices must be >= 1",
    ):
        assert rule in str(error.value)
    for override, key in (("train.lr=abc", "train.lr"), ("seed=abc", "seed")):
        result = run_py(override)
        assert result.returncode != 0 and key in result.stderr and "Traceback" not in result.stderr


def test_a_missing_checkpoint_or_eval_file_is_refused_before_training(tmp_path: Path) -> None:
    empty = tmp_path / "benchmarks"
    empty.mkdir()
    cfg = compose_config(
        [
            *TINY,
            tokens(2),
            "ckpt_path=/nonexistent.ckpt",
            "eval=smoke",
            "eval.tasks=[piqa,wikitext2_mobilellm]",
            "eval.limit=100",  # more rows than the packaged sample holds: only the hub could serve them
            f"eval.data_dir={empty}",
        ]
    )
    with pytest.raises(ConfigError) as error:
        run_job(cfg, tmp_path / "run", name="v")
    message = str(error.value)
    assert "ckpt_path=/nonexistent.ckpt does not exist" in message
    assert f"{empty}/piqa/validation.jsonl" in message and f"{empty}/wikitext/test.jsonl" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_trained_tokenizer_larger_than_the_model_vocabulary_is_refused_before_it_is_trained(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    cfg = compose_config([*TINY, tokens(2), "model.vocab_size=300", f"tokenizer.cache_dir={cache}"])
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_size=4096 > model.vocab_size=300"):
        run_job(cfg, tmp_path / "run", name="v")
    assert not cache.exists()  # no tokenizer was trained, no shard built


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_trainer_and_eval_devices_this_machine_lacks_are_refused_before_data(tmp_path: Path) -> None:
    overrides = ["trainer.precision=bogus", "trainer.accelerator=tpu", "eval=smoke", "eval.device=cuda:7"]
    with pytest.raises(ConfigError) as error:
        run_job(compose_config([*TINY, tokens(2), *overrides]), tmp_path / "bad", name="v")
    message = str(error.value)
    assert "trainer.precision='bogus' is not one of" in message and "trainer.accelerator='tpu'" in message
    with pytest.raises(ConfigError) as error:
        run_job(
            compose_config([*TINY, tokens(2), "trainer=gpu", "eval=smoke", "eval.device=cuda:7"]),
            tmp_path / "gpu",
            name="v",
        )
    message = str(error.value)
    assert "trainer.accelerator=gpu but no CUDA device is visible" in message
    assert "eval.device=cuda:7 but 0 CUDA device(s) are visible" in message
    assert not (tmp_path / "gpu" / "checkpoints").exists()
    # a plan is made anywhere: a login node without GPUs plans a GPU run
    assert run_job(compose_config(["trainer=gpu", "plan_only=true"]), tmp_path / "plan", name="v") is not None


class DamageOnTrainEnd(L.Callback):
    """Overwrites a file with text that is not JSON once training ends (checked before, broken after)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.path).write_text("not json\n")


def test_a_failure_after_training_keeps_the_training_results(tmp_path: Path) -> None:
    data = tmp_path / "benchmarks" / "piqa" / "validation.jsonl"
    data.parent.mkdir(parents=True)
    shutil.copy(PACKAGED_DIR / "piqa" / "validation.jsonl", data)  # valid at validation, broken when scored
    damage = f"{{_target_: tests.test_adversarial.DamageOnTrainEnd, path: '{data}'}}"
    cfg = compose_config(
        [*TINY, tokens(3), "eval=smoke", "eval.tasks=[piqa]", f"eval.data_dir={data.parent.parent}",
         f"+callbacks.damage={damage}"]
    )  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017  (lm-eval's own error)
        run_job(cfg, tmp_path / "run", name="v")
    record = read_result(tmp_path / "run")
    assert (
        record["status"] == "failed" and record["train"]["steps"] == 3 and record["tokens_seen"] == 3 * 4 * 32
    )


def test_the_eval_data_cli_knows_every_task_it_names() -> None:
    assert hub_tasks(["wikitext2_mobilellm", "piqa"]) == ["wikitext", "piqa"]
    with pytest.raises(SystemExit, match="unknown task"):
        hub_tasks(["no_such_task"])


# ------------------------------------------------------------------------------- killed Optuna trials


def test_a_killed_trial_is_failed_as_stale_and_not_counted(tmp_path: Path) -> None:
    from tests.test_search import search

    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="budget_125m", storage=storage)
    killed = study.ask()  # a trial whose job died: RUNNING, its heartbeat stopped
    storage.record_heartbeat(killed._trial_id)
    time.sleep(2)
    resumed = search(tmp_path, url, "hydra.sweeper.n_trials=1", "hydra.sweeper.heartbeat_interval=1",
                     "hydra.sweeper.grace_period=1")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = optuna.load_study(study_name="budget_125m", storage=url).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL  # never RUNNING forever
    assert [t.state for t in trials[1:]] == [optuna.trial.TrialState.COMPLETE]  # and it did not count


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("bad.jsonl", b'{"text": "fine"}\n{"text": broken\n', "bad.jsonl:2: not valid JSON"),
        ("bad.json", b'[{"text": "a"}, ', "bad.json: not valid JSON"),
        ("latin1.jsonl", b'{"text": "caf\xe9"}\n', "latin1.jsonl: not UTF-8"),
        ("binary.txt", b"\x00\x01\x02 ELF", "binary.txt: binary content"),
        ("bad.parquet", b"PAR1 not really parquet", "bad.parquet: not a readable .parquet file"),
    ],
)
def test_a_malformed_corpus_file_is_named_with_its_line(
    tmp_path: Path, name: str, content: bytes, named: str
) -> None:
    from ablations.data.config import DataConfig
    from ablations.data.corpus import iter_documents
    from ablations.records.errors import DataError

    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=named.replace(".", r"\.")):
        list(iter_documents(DataConfig(source="local_files", paths=[str(tmp_path / name)])))


def test_a_job_stopped_by_bad_data_prints_the_named_error_without_a_traceback(tmp_path: Path) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": "fine"}\n{not json\n')
    done = run_py(
        *TINY, tokens(2), "data=local_files", f"data.paths=[{corpus}]", f"hydra.run.dir={tmp_path / 'run'}"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "bad.jsonl" in output, output[-3000:]
    assert "Traceback" not in output
