"""Evaluation stage: score a model on lm-eval tasks (and the MobileLLM WikiText-2 protocol), write the record.

    run_evaluation(model, tokenizer, eval_cfg, out_dir) -> the record's "eval" section
    evaluate_checkpoint(path, eval_cfg, out_dir=None) -> the whole record, written to <out_dir>/eval_result.json

Per-sample outputs go to `<out_dir>/eval_samples/<task>.jsonl` (one line per doc with its doc_id and 0/1
metrics) so the analysis package can bootstrap confidence intervals.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ablations.eval.adapter import MobileLLMEvalLM
from ablations.eval.config import EvalConfig
from ablations.eval.devices import eval_dtype, rank_and_world, resolve_device
from ablations.eval.loading import load_for_eval, tokens_seen
from ablations.eval.tasks import WIKITEXT_MOBILELLM, task_manager, write_task_configs
from ablations.eval.wikitext import wikitext2_perplexity
from ablations.model.architecture import MobileLLM
from ablations.model.budget import count_params, flops_per_token
from ablations.records.atomic import atomic_write_text
from ablations.records.result import SCHEMA_VERSION, package_versions

SAMPLES_DIR = "eval_samples"
EVAL_RESULT_FILE = "eval_result.json"


def go_offline() -> None:
    """No network from datasets/hub in this process (local task data needs none)."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # heavy (datasets ~1 s); imported here to switch them to offline mode just before scoring
    import datasets
    import huggingface_hub.constants

    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def paper_average(tasks: dict[str, dict[str, float]], metric_of: dict[str, str]) -> dict[str, Any]:
    """`paper_avg` (mean of `metric_of[task]` over the scored tasks; None if none was), the tasks it
    averages, and `paper_avg_partial`: true when some configured task was not scored."""
    averaged = [t for t in metric_of if t in tasks]
    missing = [t for t in metric_of if t not in tasks]
    values = [tasks[t][metric_of[t]] for t in averaged]
    return {
        "paper_avg": sum(values) / len(values) if values else None,
        "paper_avg_metric": {t: metric_of[t] for t in averaged},
        "paper_avg_partial": bool(missing),
        "paper_avg_missing": missing,
    }


def _task_metrics(raw: dict[str, Any]) -> dict[str, float]:
    """lm-eval's `{"acc,none": x, "acc_stderr,none": s}` → `{"acc": x, "acc_stderr": s}` (one filter)."""
    metrics = {}
    for key, value in raw.items():
        name, _, _filter = key.partition(",")
        if _filter and isinstance(value, (int, float)):
            metrics[name] = float(value)
    return metrics


def _sample_line(sample: dict[str, Any], metric_names: list[str]) -> dict[str, Any]:
    line = {"doc_id": int(sample["doc_id"])}
    for name in metric_names:
        value = sample.get(name)
        # 0/1 accuracies as ints; perplexity parts (loglikelihood, weight) as they come
        line[name] = int(value) if isinstance(value, float) and value in (0.0, 1.0) else value
    line["target"] = sample.get("target")
    line["resps"] = sample.get("filtered_resps")
    return line


def _write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(line, default=str) + "\n" for line in lines)
    atomic_write_text(path, text)


def run_lm_eval(
    model: MobileLLM, tokenizer: Any, cfg: EvalConfig, tasks: list[str], work_dir: Path, data_parallel: bool
) -> dict | None:
    """lm-eval's `simple_evaluate` on our adapter for `tasks`, from generated task configs in `work_dir`
    (on the model's device); None on ranks other than 0 of a data-parallel evaluation."""
    import lm_eval  # its evaluator pulls in datasets and evaluate: seconds, only when scoring

    config_dir = write_task_configs(tasks, work_dir / "task_configs", cfg.data_dir, cfg.num_fewshot)
    device = str(model.embed_tokens.weight.device)
    adapter = MobileLLMEvalLM(
        model=model,
        tokenizer=tokenizer,
        batch_size=cfg.batch_size,
        device=device,
        data_parallel=data_parallel,
    )
    return lm_eval.simple_evaluate(
        model=adapter,
        tasks=tasks,
        limit=cfg.limit,
        task_manager=task_manager(config_dir),
        bootstrap_iters=cfg.bootstrap_iters,
        log_samples=True,
    )


def run_evaluation(
    model: MobileLLM,
    tokenizer: Any,
    cfg: EvalConfig,
    out_dir: str | Path,
    accelerator: str | None = None,
    data_parallel: bool = False,
) -> dict[str, Any] | None:
    """Score `model` on `cfg.tasks` on `cfg.device` (`auto`: the training `accelerator`); write per-sample
    files; return the record's "eval" section. With `data_parallel`, every rank of the initialised process
    group calls this and takes a share of the docs; rank 0 gathers them, writes and returns the section,
    the other ranks return None. Without it, this process scores everything alone."""
    out = Path(out_dir)
    if cfg.data_dir is not None:
        go_offline()
    device = resolve_device(cfg.device, accelerator)
    model = model.to(device, eval_dtype(device)).eval()
    rank, world_size = rank_and_world() if data_parallel else (0, 1)
    section: dict[str, Any] = {
        "device": str(device),
        "dtype": str(eval_dtype(device)).removeprefix("torch."),
        "world_size": world_size,
        "tasks": {},
        "samples_dir": SAMPLES_DIR,
        "lm_eval_version": version("lm_eval"),
        "task_versions": {},
        "limit": cfg.limit,
        "data_dir": cfg.data_dir,
    }
    lm_tasks = [t for t in cfg.tasks if t != WIKITEXT_MOBILELLM]
    if lm_tasks:
        with tempfile.TemporaryDirectory() as work:
            results = run_lm_eval(model, tokenizer, cfg, lm_tasks, Path(work), data_parallel)
        if results is None:  # not rank 0: its share went to rank 0
            return None
        for task in lm_tasks:
            metrics = _task_metrics(results["results"][task])
            metric_names = [m for m in metrics if not m.endswith("_stderr")]
            section["tasks"][task] = {**metrics, "n_docs": int(results["n-samples"][task]["effective"])}
            section["task_versions"][task] = results["versions"][task]
            samples = sorted(results["samples"][task], key=lambda sample: int(sample["doc_id"]))
            lines = [_sample_line(sample, metric_names) for sample in samples]
            _write_jsonl(out / SAMPLES_DIR / f"{task}.jsonl", lines)
    if rank != 0:
        return None
    if WIKITEXT_MOBILELLM in cfg.tasks:  # rank 0 alone: a few dozen windows
        ppl = wikitext2_perplexity(model, tokenizer, cfg.data_dir, cfg.wikitext_window, cfg.limit)
        losses = ppl.pop("window_losses")
        section["tasks"][WIKITEXT_MOBILELLM] = {**ppl, "n_docs": ppl["n_windows"]}
        section["task_versions"][WIKITEXT_MOBILELLM] = "mobilellm-eval.py"
        lines = [{"doc_id": i, "mean_nll": loss} for i, loss in enumerate(losses)]
        _write_jsonl(out / SAMPLES_DIR / f"{WIKITEXT_MOBILELLM}.jsonl", lines)
    section |= paper_average(section["tasks"], cfg.paper_avg_metric)
    return section


def build_record(
    model: MobileLLM, eval_section: dict[str, Any], eval_cfg: EvalConfig, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The evaluation record: config, parameter/FLOP counts, tokens seen, eval section, versions."""
    return {
        "schema": SCHEMA_VERSION,
        "config": {"model": model.config.to_dict(), "eval": dataclasses.asdict(eval_cfg), **(extra or {})},
        "params": count_params(model.config).as_dict(),
        "flops_per_token": flops_per_token(model.config),
        "tokens_seen": (extra or {}).get("tokens_seen"),
        "eval": eval_section,
        "versions": {**package_versions(), "tasks": eval_section["task_versions"]},
    }


def write_eval_record(record: dict[str, Any], out_dir: str | Path) -> Path:
    """`<out_dir>/eval_result.json`, written atomically."""
    path = Path(out_dir) / EVAL_RESULT_FILE
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    return path


def evaluate_checkpoint(
    path: str | Path,
    cfg: EvalConfig,
    out_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Load a checkpoint (native dir, HF export or Lightning .ckpt), evaluate it, write the record next to it."""
    src = Path(path)
    out = Path(out_dir) if out_dir is not None else (src if src.is_dir() else src.parent)
    model, tokenizer = load_for_eval(src, tokenizer_dir)
    section = run_evaluation(model, tokenizer, cfg, out)
    if section is None:
        raise RuntimeError(
            "evaluate_checkpoint runs in one process; call run_evaluation on every rank instead"
        )
    extra = {"checkpoint": str(src.resolve()), "tokens_seen": tokens_seen(src)}
    record = build_record(model, section, cfg, extra)
    write_eval_record(record, out)
    return record
