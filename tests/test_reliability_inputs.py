"""Reliability probes of issue #22 (inputs): the main job offline from a fresh clone, every input checked
before compute is spent, nothing overwritten by `evaluate`, named errors with exit code 2.

Each probe is one a new user or an adversarial tester ran; each test failed before its fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from ablations.data.config import DataConfig
from ablations.data.corpus import is_validation
from ablations.data.epochs import check_validation_split
from ablations.eval.config import EvalConfig
from ablations.eval.loading import load_for_eval
from ablations.eval.scoring import run_evaluation
from ablations.eval.sources import PACKAGED_DIR, task_data_problems, task_source, task_sources
from ablations.eval.tasks import PAPER_ZERO_SHOT, TASKS
from ablations.job.config import compose_config, job_config
from ablations.job.outcome import EXIT_CODES
from ablations.job.stages import run_job
from ablations.model.checkpoint import CONFIG_FILE, CheckpointError, load_model_dir, save_model_dir
from ablations.records.errors import ConfigError, DataError
from ablations.records.secrets import BAD_INPUT_EXIT
from tests.conftest import BENCHMARKS, REPO

TINY = [
    "train.micro_batch_size=4",
    "train.seq_len=32",
    "train.log_every_n_steps=1",
    "train.val_every_n_steps=0",
    "trainer.enable_progress_bar=false",
    "data.progress=false",
    "logger=none",
    "eval=none",
    "train.tokens=256",  # 2 steps
]
SMOKE_ROWS = 40  # conf/eval/smoke.yaml's limit: the rows the packaged sample holds per task


def python(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def offline_env(pythonpath: Path) -> dict[str, str]:
    """This environment with the hub switched off, the code of `pythonpath`, and no shared cache."""
    env = {k: v for k, v in os.environ.items() if k != "ABLATIONS_CACHE"}
    return env | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(pythonpath)}


def fresh_clone(tmp_path: Path) -> Path:
    """`git clone` of this checkout's committed HEAD into a folder with no `../shared` beside it."""
    clone = tmp_path / "mobilellm-ablations"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone.parent / "shared").exists()
    return clone


# ------------------------------------------------------------------------------ the main job, offline


def test_readmes_main_job_runs_offline_from_a_fresh_clone(tmp_path: Path) -> None:
    """README's `python run.py`, as a user runs it in a fresh clone with the hub switched off: a complete
    record scored on the smoke suite from the packaged sample (the whole default job, a few minutes)."""
    clone = fresh_clone(tmp_path)
    done = python("run.py", cwd=clone, env=offline_env(clone), timeout=2400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (path,) = (clone / "outputs").glob("*/*/result.json")
    assert f"results: {path}" in done.stdout
    record = json.loads(path.read_text())
    assert record["status"] == "complete" and record["error"] is None
    assert record["train"]["val_loss"] is not None and record["tokens_seen"] > 0
    scores = record["eval"]
    assert list(scores["tasks"]) == list(PAPER_ZERO_SHOT)
    for task, metrics in scores["tasks"].items():
        assert 0.0 <= metrics["acc"] <= 1.0 and metrics["n_docs"] == SMOKE_ROWS, task
        assert scores["data_sources"][task]["origin"] == "packaged"
        assert scores["data_sources"][task]["root"].startswith(str(clone))  # never a folder outside it
        samples = path.parent / "eval_samples" / f"{task}.jsonl"
        assert len(samples.read_text().splitlines()) == SMOKE_ROWS
    assert 0.0 <= scores["paper_avg"] <= 1.0 and scores["paper_avg_partial"] is False


def test_a_non_editable_install_runs_the_main_job_from_another_folder(tmp_path: Path) -> None:
    """`pip install .` (a wheel: the package data, the Hydra tree, the sweeps) then `mobilellm-run` elsewhere."""
    pytest.importorskip("setuptools")  # the wheel is built from this environment's setuptools, offline
    clone = fresh_clone(tmp_path)
    built = python(
        "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), ".",
        cwd=clone,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for task in PAPER_ZERO_SHOT:
        split = TASKS[task].splits[0]
        assert f"ablations/eval/benchmarks/{task}/{split}.jsonl" in names
    assert "ablations/eval/benchmarks/README.md" in names
    assert "conf/config.yaml" in names and "conf/model/tiny.yaml" in names  # the Hydra tree travels too
    assert "sweeps/sweep/ffn_type.yaml" in names

    # installed, not editable, and run from a folder that is not the repo: the main job, shortened
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    installed = python("-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel))
    assert installed.returncode == 0, installed.stderr[-2000:]
    elsewhere.mkdir()
    env = offline_env(site)
    where = python(
        "-c", "import ablations, conf; print(ablations.__file__, conf.__file__)", cwd=elsewhere, env=env
    )
    assert where.stdout.count(str(site)) == 2, where.stdout  # the installed copy, not this checkout
    job = subprocess.run(
        [str(site / "bin" / "mobilellm-run"), *TINY, "eval=smoke", "eval.limit=2", "eval.tasks=[piqa]"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    (record,) = (elsewhere / "outputs").glob("*/*/result.json")
    saved = json.loads(record.read_text())
    assert saved["status"] == "complete" and saved["eval"]["tasks"]["piqa"]["acc"] is not None
    assert (record.parent / "run.log").is_file() and (record.parent / ".hydra" / "config.yaml").is_file()


def test_the_packaged_sample_is_small_and_each_dataset_names_its_source_and_licence() -> None:
    readme = (PACKAGED_DIR / "README.md").read_text()
    for task in PAPER_ZERO_SHOT:
        path = PACKAGED_DIR / task / f"{TASKS[task].splits[0]}.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        assert len(lines) == SMOKE_ROWS and path.stat().st_size < 256 * 1024
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{task}` |"))
        assert "@" in row or "wheel" in row, task  # a commit or the package it was read from
        assert any(licence in row for licence in ("CC", "AFL", "MIT", "Apache")), task
        full = BENCHMARKS / task / path.name
        if full.is_file():  # the first rows of the full split, byte for byte
            with full.open("rb") as rows:
                assert lines == [next(rows) for _ in range(SMOKE_ROWS)]


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"{BENCHMARKS} absent")
def test_the_packaged_sample_scores_like_the_first_rows_of_the_full_splits(
    tmp_path: Path, eval_model, eval_tokenizer
) -> None:
    packaged = EvalConfig(tasks=list(PAPER_ZERO_SHOT), limit=3, batch_size=8, bootstrap_iters=0)
    full = EvalConfig(
        tasks=list(PAPER_ZERO_SHOT), limit=3, batch_size=8, bootstrap_iters=0, data_dir=str(BENCHMARKS)
    )
    ours = run_evaluation(eval_model, eval_tokenizer, packaged, tmp_path / "packaged")
    reference = run_evaluation(eval_model, eval_tokenizer, full, tmp_path / "full")
    assert {s["origin"] for s in ours["data_sources"].values()} == {"packaged"}
    assert {s["origin"] for s in reference["data_sources"].values()} == {"data_dir"}
    assert ours["tasks"] == reference["tasks"]


def test_data_dir_resolves_to_your_folder_then_the_packaged_sample_then_the_hub(tmp_path: Path) -> None:
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "validation.jsonl").write_text(
        '{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n'
    )
    assert task_source("piqa", tmp_path, None, 0).root == tmp_path  # yours, whatever the limit
    assert task_source("arc_easy", tmp_path, 40, 0).root == PACKAGED_DIR  # it holds the 40 rows asked for
    for limit, shots in ((41, 0), (None, 0), (4, 5)):  # more rows than it holds, or shots it has no split for
        hub = task_source("arc_easy", tmp_path, limit, shots)
        assert (
            hub.root is None
            and f"eval.data_dir={tmp_path} has no {tmp_path}/arc_easy/test.jsonl" in hub.reason
        )
    assert task_source("wikitext2_mobilellm", None, 4, 0).root is None
    # the default names no folder, and nothing resolves outside the package (no ../shared beside the repo)
    default = job_config(compose_config([])).eval
    assert default.data_dir is None
    for source in task_sources(default.tasks, default.data_dir, default.limit, default.num_fewshot).values():
        assert source.root == PACKAGED_DIR and source.origin == "packaged"


def test_more_rows_than_the_packaged_sample_holds_are_refused_offline_naming_the_way_to_get_them() -> None:
    problems = task_data_problems(["arc_easy", "hellaswag"], None, 100, 0)
    assert len(problems) == 2
    assert problems[0].startswith(
        "eval task 'arc_easy': no local copy (no eval.data_dir; the packaged sample"
    )
    assert "has 40 rows and eval.limit=100" in problems[0] and "allenai/ai2_arc" in problems[0]
    assert (
        "HF_HUB_OFFLINE" in problems[0] and "python -m ablations.fetch_eval_data DIR arc_easy" in problems[0]
    )
    assert "eval.limit <= 40" in problems[0]


def test_a_plan_is_made_without_the_evaluation_data(tmp_path: Path) -> None:
    # the paper's zero-shot suite needs the hub or a data_dir to run, not to plan (a login node, offline)
    cfg = compose_config(["scale=paper", "model=mobilellm_125m", "plan_only=true"])
    assert job_config(cfg).eval.limit is None
    assert run_job(cfg, tmp_path / "plan", name="v")["status"] == "planned"


# ------------------------------------------------------------------ every input checked before training


def truncated_task_dir(tmp_path: Path) -> tuple[Path, Path]:
    """(data_dir, file): arc_easy's test.jsonl cut after 1,500 bytes, mid-row."""
    path = tmp_path / "benchmarks" / "arc_easy" / "test.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes((PACKAGED_DIR / "arc_easy" / "test.jsonl").read_bytes()[:1500])
    return path.parent.parent, path


def test_a_truncated_task_file_is_refused_before_training_without_a_traceback(tmp_path: Path) -> None:
    data_dir, path = truncated_task_dir(tmp_path)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = [*TINY, "eval=smoke", "eval.tasks=[arc_easy,piqa]", f"eval.data_dir={data_dir}"]
    done = python("run.py", *args, f"hydra.run.dir={run_dir}", env=env)
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_CODES["config"], output[-3000:]
    lines = [line for line in output.splitlines() if f"{path}:" in line]
    assert lines and "eval task 'arc_easy'" in lines[0] and "not valid JSON" in lines[0]
    assert f"python -m ablations.fetch_eval_data {data_dir} arc_easy" in lines[0]
    assert "Traceback" not in output
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"", "no rows"),
        (b'{"question": "q"}\n[1, 2]\n', ":2: a JSON list, not an object"),
        (b'{"question": "q"}\n{"stem": "q"}\n', ":2: columns ['stem'], expected ['question']"),
        (b'{"question": "caf\xe9"}\n', "not UTF-8"),
    ],
)
def test_a_task_file_that_does_not_parse_is_named(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "arc_easy" / "test.jsonl"
    path.parent.mkdir()
    path.write_bytes(content)
    (problem,) = task_data_problems(["arc_easy"], tmp_path, 4, 0)
    assert problem.startswith(f"eval task 'arc_easy': {path}") and named in problem


def test_wikitext_pages_without_their_field_are_named(tmp_path: Path) -> None:
    path = tmp_path / "wikitext" / "test.jsonl"
    path.parent.mkdir()
    path.write_text('{"text": "a"}\n')
    (problem,) = task_data_problems(["wikitext2_mobilellm"], tmp_path, None, 0)
    assert f"{path}:1: columns ['text'], expected ['page', 'text']" in problem


def model_dir(tmp_path: Path, eval_model, eval_tokenizer) -> Path:
    return save_model_dir(eval_model, tmp_path / "model", eval_tokenizer)


def test_evaluate_refuses_an_out_path_under_a_regular_file_before_scoring(
    tmp_path: Path, eval_model, eval_tokenizer
) -> None:
    ckpt = model_dir(tmp_path, eval_model, eval_tokenizer)
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "results"
    done = python("-m", "ablations.evaluate", f"ckpt={ckpt}", "eval=sweep_smoke", f"out={out}")
    assert done.returncode == BAD_INPUT_EXIT == EXIT_CODES["config"], done.stderr[-2000:]
    assert done.stderr.startswith("error:") and f"out={out}: {tmp_path / 'file'} is a file" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "model"]  # nothing scored, nothing written
    assert not (ckpt / "eval_samples").exists() and not (ckpt / "eval_result.json").exists()


def test_evaluate_checks_the_task_data_before_loading_the_model(tmp_path: Path, capsys) -> None:
    from ablations.evaluate import main

    data_dir, path = truncated_task_dir(tmp_path)
    with pytest.raises(SystemExit) as exit_:  # the checkpoint does not even exist: data is checked first
        main([f"ckpt={tmp_path / 'nowhere'}", "eval=sweep_smoke", f"eval.data_dir={data_dir}"])
    assert exit_.value.code == 2 and f"{path}:" in capsys.readouterr().err


def corpus_run(tmp_path: Path, *overrides: str) -> list[str]:
    return [*TINY, "data=local_files", f"hydra.run.dir={tmp_path / 'run'}", *overrides]


def test_a_one_document_corpus_is_refused_before_training_naming_the_file(tmp_path: Path) -> None:
    """The probe's 5 MB line without newlines is one document: the validation split gets none of it, and
    the run recorded `val_loss: null` silently. 100 kB show the same, faster."""
    text = "".join(f"word{i % 997} " for i in range(20_000))
    assert not is_validation(text, 0.01)  # it lands in the training split
    corpus = tmp_path / "one_line.txt"
    corpus.write_text(text)
    cfg = compose_config(corpus_run(tmp_path, f"data.paths=[{corpus}]"))
    with pytest.raises(DataError) as refused:
        run_job(cfg, tmp_path / "run", name="v")
    message = str(refused.value)
    assert str(corpus) in message and "no window of 32 tokens" in message and "data.val_fraction" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_validation_split_may_be_empty_only_by_choice() -> None:
    manifest = {"key": "k", "splits": {"val": {"tokens": 10, "documents": 1, "shards": [{"tokens": 10}]}}}
    with pytest.raises(DataError, match=r"data.val_fraction=0.01\) holds 1 document\(s\), 10 tokens"):
        check_validation_split(manifest, 32, DataConfig())
    check_validation_split(manifest, 32, DataConfig(val_fraction=0.0))  # no validation asked for
    check_validation_split(manifest, 8, DataConfig())  # one window of 8


def test_an_empty_corpus_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    empty = tmp_path / "corpus" / "empty.jsonl"
    empty.write_text("")
    cfg = compose_config(corpus_run(tmp_path, f"data.paths=[{empty.parent}]"))
    with pytest.raises(DataError, match=rf"empty corpus: {empty} \(data.paths="):
        run_job(cfg, tmp_path / "run", name="v")


# ------------------------------------------------------------------------ nothing overwritten by evaluate


def test_evaluate_refuses_an_existing_result_and_with_force_replaces_it_and_its_samples(
    tmp_path: Path, eval_model, eval_tokenizer, capsys
) -> None:
    from ablations.evaluate import main

    ckpt = model_dir(tmp_path, eval_model, eval_tokenizer)
    main([f"ckpt={ckpt}", "eval=sweep_smoke"])  # arc_easy and piqa, 4 rows each
    result, samples = ckpt / "eval_result.json", ckpt / "eval_samples"
    first = result.read_text()
    assert sorted(p.name for p in samples.iterdir()) == ["arc_easy.jsonl", "piqa.jsonl"]
    with pytest.raises(SystemExit) as refused:
        main([f"ckpt={ckpt}", "eval=sweep_smoke", "eval.tasks=[piqa]"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and f"{result} exists" in err and "pass force=true" in err
    assert result.read_text() == first  # untouched
    record = main([f"ckpt={ckpt}", "eval=sweep_smoke", "eval.tasks=[piqa]", "force=true"])
    assert list(json.loads(result.read_text())["eval"]["tasks"]) == ["piqa"] == list(record["eval"]["tasks"])
    assert [p.name for p in samples.iterdir()] == ["piqa.jsonl"]  # no sample of the earlier run stays
    assert [p.name for p in ckpt.iterdir() if p.name.startswith(".")] == []  # no staging left behind


# ---------------------------------------------------------------- named errors instead of tracebacks


def edit_config(directory: Path, edit) -> Path:
    path = directory / CONFIG_FILE
    values = json.loads(path.read_text())
    path.write_text(edit(values) if callable(edit) else edit)
    return path


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ('{"dim": 64, "n_la', "not a readable JSON model config"),
        (lambda v: json.dumps(v | {"dim": 256}), "model.safetensors does not match"),
        (
            lambda v: json.dumps({k: x for k, x in v.items() if k != "n_layers"}),
            "missing field(s) ['n_layers']",
        ),
    ],
    ids=["truncated", "dim-256", "no-n_layers"],
)
def test_a_model_dir_whose_config_is_broken_is_named_and_exits_2(
    tmp_path: Path, eval_model, eval_tokenizer, capsys, edit, named: str
) -> None:
    from ablations.evaluate import main

    ckpt = model_dir(tmp_path, eval_model, eval_tokenizer)
    path = edit_config(ckpt, edit)
    with pytest.raises(
        CheckpointError, match=named.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        load_model_dir(ckpt)
    with pytest.raises(SystemExit) as refused:
        main([f"ckpt={ckpt}", "eval=sweep_smoke"])
    (line,) = capsys.readouterr().err.splitlines()  # one line, naming the file
    assert refused.value.code == 2 and line.startswith("error: ") and str(ckpt) in line and named in line
    assert str(path) in line or "model.safetensors" in line


def test_a_ckpt_whose_hyper_parameters_width_was_changed_is_named(tmp_path: Path, eval_model) -> None:
    config = eval_model.config.to_dict() | {"dim": 128, "head_dim": 32}
    ckpt = tmp_path / "last.ckpt"
    state = {f"model.{k}": v for k, v in eval_model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model_config": config}}, ckpt)
    with pytest.raises(CheckpointError) as refused:
        load_for_eval(ckpt, tokenizer_dir=tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{ckpt}: state_dict does not match {ckpt}: hyper_parameters['model_config']")
    assert "is (64,) in the weights, (128,) by the config" in message and "more)" in message


def test_every_cli_exits_2_for_bad_input() -> None:
    assert BAD_INPUT_EXIT == EXIT_CODES["config"] == 2


# ------------------------------------------------------------------------------------------ budget CLI


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        ("train.seq_len=-4", "train.seq_len must be >= 2"),
        ("world_size=0", "world_size=0: expected a positive integer"),
        ("world_size=abc", "world_size=abc: expected a positive integer"),
        ("train.seq_len=abc", "train.seq_len"),
        ("seq_len=-4", "seq_len=-4: not a config key; the training window is train.seq_len=-4"),
        ("device=tpu_v9", "device=tpu_v9: not one of ['a100_40gb'"),
    ],
)
def test_the_budget_cli_refuses_nonsense_by_name(capsys, argument: str, named: str) -> None:
    from ablations.budget import main

    with pytest.raises(SystemExit) as refused:
        main(["model=tiny", argument])
    printed = capsys.readouterr()
    assert refused.value.code == 2 and named in printed.err and "Traceback" not in printed.err
    assert printed.out == ""  # refused before any table is printed


def test_the_budget_cli_takes_the_jobs_training_window(capsys, monkeypatch) -> None:
    from ablations.budget import main

    monkeypatch.setenv("COLUMNS", "400")  # rich wraps long table titles at the terminal width
    main(["model=tiny", "train.seq_len=128", "world_size=2"])
    printed = capsys.readouterr().out
    assert "seq 128" in printed and "2 GPUs" in printed and "× 128" in printed


def test_an_evaluation_config_error_lists_every_problem_with_its_task(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        EvalConfig(tasks=["piqa", "nope"], limit=0, data_dir=str(tmp_path / "missing"))
    message = str(refused.value)
    assert (
        "unknown task 'nope'" in message
        and "limit must be >= 1" in message
        and "is not a directory" in message
    )


def test_a_copy_of_the_packaged_sample_in_a_data_dir_is_read_from_there(tmp_path: Path) -> None:
    shutil.copytree(PACKAGED_DIR / "piqa", tmp_path / "piqa")
    assert task_data_problems(["piqa"], tmp_path, None, 0) == []
    assert task_source("piqa", tmp_path, None, 0).origin == "data_dir"
