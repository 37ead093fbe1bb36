"""Evaluation end to end: presets, offline task configs, records, per-sample files, checkpoint loading."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ablations.eval.config import EvalConfig
from ablations.eval.scoring import run_evaluation
from ablations.eval.sources import task_data_problems
from ablations.eval.tasks import PAPER_ZERO_SHOT, TASKS, MissingTaskData, lm_eval_tasks_dir, task_yaml
from ablations.job.config import compose_config, job_config
from ablations.records.errors import ConfigError
from tests.eval_fixtures import BENCHMARKS, write_jsonl

needs_benchmarks = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"{BENCHMARKS} absent")

PIQA_ROWS = [
    {"goal": "To cut bread,", "sol1": "use a knife.", "sol2": "use a spoon.", "label": 0},
    {"goal": "To dry hair,", "sol1": "use water.", "sol2": "use a towel.", "label": 1},
]


def test_presets_compose_into_eval_configs():
    none, smoke, zero, full = (
        job_config(compose_config([f"eval={name}"])).eval
        for name in ("none", "smoke", "paper_zero_shot", "paper_full")
    )
    assert none.tasks == [] and compose_config([]).eval.tasks == smoke.tasks  # default: the smoke suite
    assert tuple(zero.tasks) == PAPER_ZERO_SHOT and zero.limit is None
    assert tuple(smoke.tasks) == PAPER_ZERO_SHOT and smoke.limit == 40
    assert {"triviaqa_1shot", "triviaqa_5shot", "triviaqa_64shot", "race_middle", "race_high"} < set(
        full.tasks
    )
    assert {"wikitext", "wikitext2_mobilellm"} < set(full.tasks)
    assert set(zero.paper_avg_metric) == set(PAPER_ZERO_SHOT)


def test_bad_eval_config_names_every_problem():
    with pytest.raises(ConfigError) as err:
        EvalConfig(tasks=["piqa", "mmlu"], limit=0, paper_avg_metric={"piqa": "f1"}, data_dir=None)
    text = str(err.value)
    assert "mmlu" in text and "limit" in text and "f1" in text


def test_task_config_includes_lm_eval_definition_and_overrides_only_data(tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml

    write_jsonl(tmp_path / "piqa" / "validation.jsonl", PIQA_ROWS)
    ours = task_yaml("piqa", tmp_path, num_fewshot=0)
    assert ours["include"] == str(lm_eval_tasks_dir() / "piqa" / "piqa.yaml")
    original = load_yaml(ours["include"], resolve_func=False)
    data_keys = {
        "dataset_path",
        "dataset_name",
        "dataset_kwargs",
        "training_split",
        "validation_split",
        "test_split",
    }
    kept = {k: v for k, v in original.items() if k not in data_keys}
    assert all(ours.get(k, v) == v for k, v in kept.items() if k not in ("include", "task", "num_fewshot"))
    assert ours["dataset_path"] == "json" and ours["validation_split"] == "validation"
    assert ours["dataset_kwargs"]["data_files"] == {"validation": str(tmp_path / "piqa" / "validation.jsonl")}


def test_every_task_includes_an_existing_lm_eval_yaml_whose_metrics_and_train_split_we_know():
    from lm_eval.tasks._yaml_loader import load_yaml

    for spec in TASKS.values():
        assert (lm_eval_tasks_dir() / spec.lm_eval_yaml).is_file(), spec.lm_eval_yaml
        definition = load_yaml(lm_eval_tasks_dir() / spec.lm_eval_yaml, resolve_func=False)
        assert spec.metrics == tuple(m["metric"] for m in definition["metric_list"]), spec.lm_eval_yaml
        assert spec.hub_train == (definition.get("training_split") is not None), spec.lm_eval_yaml


def test_a_metric_the_task_does_not_report_is_refused():
    with pytest.raises(ConfigError, match=r"boolq: acc_norm is not produced by boolq \(it reports acc\)"):
        EvalConfig(tasks=["boolq"], paper_avg_metric={"boolq": "acc_norm"}, data_dir=None)


def test_few_shot_examples_are_never_drawn_from_the_scored_split(tmp_path):
    write_jsonl(tmp_path / "piqa" / "validation.jsonl", PIQA_ROWS)  # local files without a train split
    write_jsonl(tmp_path / "arc_easy" / "test.jsonl", [{"question": "q"}])
    with pytest.raises(ConfigError) as err:
        EvalConfig(tasks=["piqa", "arc_easy", "triviaqa_5shot"], num_fewshot=5, data_dir=str(tmp_path))
    text = str(err.value)
    assert "'piqa': 5-shot examples would be drawn from its scored split 'validation'" in text
    assert "'arc_easy'" in text and "triviaqa" not in text  # TriviaQA reads its shots from train.jsonl
    with pytest.raises(ConfigError, match=r"'race_high': 5-shot .*no hub train split"):
        EvalConfig(tasks=["race_high", "piqa"], num_fewshot=5, data_dir=None)
    with pytest.raises(ValueError, match="'piqa': 3-shot"):  # the task files refuse it too
        task_yaml("piqa", tmp_path, num_fewshot=3)


def test_missing_local_data_names_task_and_file(tmp_path, eval_model, eval_tokenizer):
    write_jsonl(tmp_path / "triviaqa" / "validation.jsonl", [{"question": "q"}])  # its train.jsonl absent
    cfg = EvalConfig(tasks=["triviaqa_5shot"], data_dir=str(tmp_path), limit=1)
    with pytest.raises(MissingTaskData, match=r"triviaqa_5shot.*triviaqa/train\.jsonl"):
        run_evaluation(eval_model, eval_tokenizer, cfg, tmp_path / "out")


@needs_benchmarks
def test_paper_full_on_shared_benchmarks_reports_missing_triviaqa_offline():
    cfg = job_config(compose_config(["eval=paper_full", f"eval.data_dir={BENCHMARKS}"])).eval
    problems = task_data_problems(cfg.tasks, cfg.data_dir, cfg.limit, cfg.num_fewshot)
    assert len(problems) == 5  # TriviaQA 1/5/64-shot and RACE middle/high: not in the folder, hub offline
    assert f"eval.data_dir={BENCHMARKS} has no {BENCHMARKS}/triviaqa/validation.jsonl" in problems[0]
    assert "mandarjoshi/trivia_qa" in problems[0] and "HF_HUB_OFFLINE" in problems[0]


@needs_benchmarks
def test_real_rows_of_every_task(tmp_path, eval_model, eval_tokenizer):
    tasks = [*PAPER_ZERO_SHOT, "wikitext", "wikitext2_mobilellm"]
    cfg = EvalConfig(tasks=tasks, limit=3, data_dir=str(BENCHMARKS), batch_size=8)
    section = run_evaluation(eval_model, eval_tokenizer, cfg, tmp_path)
    for task in PAPER_ZERO_SHOT:
        metrics = section["tasks"][task]
        assert 0.0 <= metrics["acc"] <= 1.0 and "acc_stderr" in metrics
        lines = [
            json.loads(x) for x in (tmp_path / "eval_samples" / f"{task}.jsonl").read_text().splitlines()
        ]
        assert [x["doc_id"] for x in lines] == [0, 1, 2]
        assert sum(x["acc"] for x in lines) / 3 == pytest.approx(metrics["acc"])
        assert all(x["acc"] in (0, 1) for x in lines)
    for task in ("arc_easy", "piqa", "hellaswag", "openbookqa", "arc_challenge"):
        assert "acc_norm" in section["tasks"][task]
    chosen = [section["tasks"][t][m] for t, m in cfg.paper_avg_metric.items()]
    assert section["paper_avg"] == pytest.approx(sum(chosen) / 8)
    assert section["paper_avg_partial"] is False and section["paper_avg_missing"] == []
    assert all(section["tasks"][t]["n_docs"] == 3 for t in tasks)
    assert section["tasks"]["wikitext"]["word_perplexity"] > 1
    assert section["tasks"]["wikitext2_mobilellm"]["n_windows"] == 3
    assert section["task_versions"]["boolq"] == 2.0 and section["lm_eval_version"]


def test_wikitext2_protocol_equals_reference(tmp_path, eval_model, eval_tokenizer):
    from ablations.eval.wikitext import lines_from_pages, wikitext2_perplexity

    # pages as the document-level builder cuts them: no trailing newline, the blank line before a heading lost
    pages = [
        " = Title = \n \n Some text here . \n \n ",
        " = Other = \n \n More words , and more . \n \n ",
    ] * 20
    write_jsonl(tmp_path / "wikitext" / "test.jsonl", [{"page": p} for p in pages])
    assert lines_from_pages(pages[:2]) == [
        *("", " = Title = \n", "", " Some text here . \n", "", ""),
        *(" = Other = \n", "", " More words , and more . \n", "", ""),
    ]
    result = wikitext2_perplexity(eval_model, eval_tokenizer, tmp_path, window=32)
    text = "\n\n".join(lines_from_pages(pages))
    tokens = [eval_tokenizer.bos_token_id, *eval_tokenizer.encode(text, add_special_tokens=False)]
    n = len(tokens) // 32
    losses = []
    for w in range(n):
        chunk = torch.tensor([tokens[w * 32 : (w + 1) * 32]])
        logprobs = F.log_softmax(eval_model(chunk[:, :-1]).float(), dim=-1)
        losses.append(-logprobs.gather(2, chunk[:, 1:, None]).mean().item())
    assert result["n_windows"] == n and result["tokens"] == len(tokens)
    assert result["ppl"] == pytest.approx(math.exp(sum(losses) / n), rel=1e-5)


@needs_benchmarks
def test_wikitext2_rows_equal_hf_wikitext_2_raw_v1_test():
    from ablations.eval.wikitext import lines_from_pages, wikitext2_test_lines

    rows = wikitext2_test_lines(BENCHMARKS)
    # HF `wikitext-2-raw-v1` test: 4,358 rows, the 1,290,590 bytes of wiki.test.raw (an empty row is " \n")
    assert len(rows) == 4358
    assert len("".join(row or " \n" for row in rows).encode()) == 1_290_590
    assert rows[:3] == ["", " = Robert Boulter = \n", ""] and rows[3].startswith(" Robert Boulter is")
    du_fu = rows.index(" = Du Fu = \n")  # the second page: a blank row before each top-level heading
    assert rows[du_fu - 1] == "" and rows[du_fu - 2] == ""
    assert lines_from_pages(["a\n b\n "]) == ["", "a\n", " b\n", ""]


def test_lightning_ckpt_loads_same_model(tmp_path, eval_model, eval_tokenizer):
    from ablations.eval.loading import load_for_eval, tokens_seen

    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in eval_model.state_dict().items()},
        "hyper_parameters": {"model_config": eval_model.config.to_dict()},
        "tokens_seen": 12345,
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    eval_tokenizer.save_pretrained(str(tmp_path))
    model, tokenizer = load_for_eval(tmp_path / "last.ckpt")
    tokens = torch.tensor([eval_tokenizer.encode("hello there")])
    torch.testing.assert_close(model(tokens), eval_model(tokens))
    assert tokenizer.encode("hello there") == eval_tokenizer.encode("hello there")
    assert tokens_seen(tmp_path / "last.ckpt") == 12345


def test_a_runs_own_last_ckpt_finds_the_tokenizer_of_the_runs_model_export(
    tmp_path, eval_model, eval_tokenizer
):
    from ablations.eval.loading import load_for_eval
    from ablations.model.checkpoint import save_model_dir

    run_dir = tmp_path / "run"  # the training job's layout: checkpoints/last.ckpt beside the model/ export
    save_model_dir(eval_model, run_dir / "model", eval_tokenizer)
    (run_dir / "checkpoints").mkdir()
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in eval_model.state_dict().items()},
        "hyper_parameters": {"model_config": eval_model.config.to_dict()},
    }
    torch.save(ckpt, run_dir / "checkpoints" / "last.ckpt")
    _, tokenizer = load_for_eval(run_dir / "checkpoints" / "last.ckpt")
    assert tokenizer.encode("hello there") == eval_tokenizer.encode("hello there")


def test_cli_writes_record_next_to_checkpoint(tmp_path, eval_model, eval_tokenizer):
    from ablations.evaluate import main
    from ablations.model.checkpoint import save_model_dir

    data = tmp_path / "data"
    write_jsonl(data / "piqa" / "validation.jsonl", PIQA_ROWS)
    ckpt = save_model_dir(eval_model, tmp_path / "ckpt", eval_tokenizer)
    record = main([f"ckpt={ckpt}", "eval=smoke", "eval.tasks=[piqa]", f"eval.data_dir={data}"])
    on_disk = json.loads((ckpt / "eval_result.json").read_text())
    assert on_disk["eval"]["tasks"]["piqa"] == record["eval"]["tasks"]["piqa"]
    assert on_disk["params"]["total"] == sum(p.numel() for p in eval_model.parameters())
    assert on_disk["flops_per_token"] > 0 and on_disk["versions"]["lm_eval"]
    assert on_disk["config"]["eval"]["tasks"] == ["piqa"] and on_disk["eval"]["paper_avg_metric"] == {
        "piqa": "acc_norm"
    }
    # one task of the eight: the average says it is partial and which tasks it lacks
    assert on_disk["eval"]["paper_avg"] == on_disk["eval"]["tasks"]["piqa"]["acc_norm"]
    assert on_disk["eval"]["paper_avg_partial"] is True and len(on_disk["eval"]["paper_avg_missing"]) == 7
    assert on_disk["eval"]["tasks"]["piqa"]["n_docs"] == 2
    assert len((ckpt / "eval_samples" / "piqa.jsonl").read_text().splitlines()) == 2
    assert not list(ckpt.glob(".*tmp*")) and not list(ckpt.glob(".eval_result*"))


def test_registered_model_name_and_triviaqa_fewshot_generation(tmp_path, eval_model, eval_tokenizer):
    """`simple_evaluate(model="mobilellm", model_args="path=...")` works, incl. generate_until with shots."""
    import lm_eval

    import ablations.eval.adapter  # noqa: F401  (registers "mobilellm" with lm-eval)
    from ablations.eval.tasks import task_manager, write_task_configs
    from ablations.model.checkpoint import save_model_dir

    trivia = [
        {
            "question": "Which planet is known as the red planet",
            "answer": {"aliases": ["Mars"], "value": "Mars"},
        },
        {"question": "What is the capital of France", "answer": {"aliases": ["Paris"], "value": "Paris"}},
    ]
    write_jsonl(tmp_path / "data" / "triviaqa" / "validation.jsonl", trivia)
    write_jsonl(tmp_path / "data" / "triviaqa" / "train.jsonl", trivia)
    write_jsonl(tmp_path / "data" / "piqa" / "validation.jsonl", PIQA_ROWS)
    ckpt = save_model_dir(eval_model, tmp_path / "ckpt", eval_tokenizer)
    tasks = ["piqa", "triviaqa_1shot"]
    config_dir = write_task_configs(tasks, tmp_path / "tasks", tmp_path / "data")
    out = lm_eval.simple_evaluate(
        model="mobilellm",
        model_args=f"path={ckpt},max_gen_toks=8",
        tasks=tasks,
        task_manager=task_manager(config_dir),
        bootstrap_iters=0,
    )
    assert out["configs"]["triviaqa_1shot"]["num_fewshot"] == 1
    prompt = str(out["samples"]["triviaqa_1shot"][1]["arguments"])
    assert prompt.count("Question:") == 2  # one shot from train.jsonl, then the question
    assert 0.0 <= out["results"]["triviaqa_1shot"]["exact_match,remove_whitespace"] <= 1.0
    section = run_evaluation(
        eval_model, eval_tokenizer, EvalConfig(tasks=["piqa"], data_dir=str(tmp_path / "data")), tmp_path
    )
    assert out["results"]["piqa"]["acc,none"] == section["tasks"]["piqa"]["acc"]
