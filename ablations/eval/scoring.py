"""Evaluation stage: score a model on lm-eval tasks (and the MobileLLM WikiText-2 protocol), write the record.

    run_evaluation(model, tokenizer, eval_cfg, out_dir) -> the record's "eval" section
    evaluate_checkpoint(path, eval_cfg, out_dir=None) -> the whole record, written to <out_dir>/eval_result.json

Per-sample outputs go to `<out_dir>/eval_samples/<task>.jsonl` (one line per doc with its doc_id and 0/1
metrics) so the analysis package can bootstrap confidence intervals. `evaluate_checkpoint` checks every input
first (the tasks' data, the output folder; an existing record is replaced only with `force`) and publishes
the record and its samples together: no sample file of an earlier evaluation stays beside a new record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ablations.eval.adapter import MobileLLMEvalLM
from ablations.eval.config import EvalConfig
from ablations.eval.devices import eval_dtype, rank_and_world, resolve_device
from ablations.eval.loading import load_for_eval, tokens_seen
from ablations.eval.sources import TaskSource, task_data_problems, task_sources
from ablations.eval.tasks import WIKITEXT_MOBILELLM, task_manager, write_task_configs
from ablations.eval.wikitext import wikitext2_perplexity
from ablations.model.architecture import MobileLLM
from ablations.model.counts import count_params, flops_per_token
from ablations.records.atomic import atomic_write_text, temp_sibling
from ablations.records.errors import ConfigError
from ablations.records.result import SCHEMA_VERSION, package_versions
from ablations.records.run_dir import RunDir


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

    config_dir = work_dir / "task_configs"
    for task, source in task_sources(tasks, cfg.data_dir, cfg.limit, cfg.num_fewshot).items():
        write_task_configs([task], config_dir, source.root, cfg.num_fewshot)
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
    sources = task_sources(cfg.tasks, cfg.data_dir, cfg.limit, cfg.num_fewshot)
    if all(source.root is not None for source in sources.values()):
        go_offline()
    device = resolve_device(cfg.device, accelerator)
    model = model.to(device, eval_dtype(device)).eval()
    rank, world_size = rank_and_world() if data_parallel else (0, 1)
    section: dict[str, Any] = {
        "device": str(device),
        "dtype": str(eval_dtype(device)).removeprefix("torch."),
        "world_size": world_size,
        "tasks": {},
        "samples_dir": RunDir.EVAL_SAMPLES,
        "lm_eval_version": version("lm_eval"),
        "task_versions": {},
        "limit": cfg.limit,
        "data_dir": cfg.data_dir,
        "data_sources": {task: recorded_source(source) for task, source in sources.items()},
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
            _write_jsonl(RunDir(out).eval_samples / f"{task}.jsonl", lines)
    if rank != 0:
        return None
    if WIKITEXT_MOBILELLM in cfg.tasks:  # rank 0 alone: a few dozen windows
        root = sources[WIKITEXT_MOBILELLM].root
        ppl = wikitext2_perplexity(model, tokenizer, root, cfg.wikitext_window, cfg.limit)
        losses = ppl.pop("window_losses")
        section["tasks"][WIKITEXT_MOBILELLM] = {**ppl, "n_docs": ppl["n_windows"]}
        section["task_versions"][WIKITEXT_MOBILELLM] = "mobilellm-eval.py"
        lines = [{"doc_id": i, "mean_nll": loss} for i, loss in enumerate(losses)]
        _write_jsonl(RunDir(out).eval_samples / f"{WIKITEXT_MOBILELLM}.jsonl", lines)
    section |= paper_average(section["tasks"], cfg.paper_avg_metric)
    return section


def recorded_source(source: TaskSource) -> dict[str, str | None]:
    """A task's data source as the record keeps it: `data_dir`/`packaged`/`hub`, the folder, and why."""
    return {
        "origin": source.origin,
        "root": None if source.root is None else str(source.root),
        "reason": source.reason,
    }


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
    path = RunDir(out_dir).eval_record
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    return path


def output_problems(out: Path, force: bool) -> list[str]:
    """Why `out` cannot take this evaluation's record: a file where a folder must be, a folder we cannot
    write, or an earlier record that only `force` replaces."""
    existing = next(folder for folder in (out, *out.parents) if folder.exists() or folder == folder.parent)
    if not existing.is_dir():
        return [f"out={out}: {existing} is a file, not a directory"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"out={out}: {existing} is not writable"]
    if (RunDir(out).eval_record).exists() and not force:
        return [
            f"{RunDir(out).eval_record} exists (an earlier evaluation): pass force=true to replace it and "
            f"its {RunDir.EVAL_SAMPLES}/, or out=DIR to write elsewhere"
        ]
    return []


def publish(record: dict[str, Any], staged_samples: Path, out: Path) -> Path:
    """Replace `out`'s record and per-sample files with this evaluation's, together: the earlier samples
    are moved aside first and deleted last, so no stale sample file stays beside the new record."""
    samples = RunDir(out).eval_samples
    earlier = temp_sibling(samples)
    if samples.exists():
        os.replace(samples, earlier)
    if staged_samples.exists():
        os.replace(staged_samples, samples)
    path = write_eval_record(record, out)
    shutil.rmtree(earlier, ignore_errors=True)
    return path


def evaluate_checkpoint(
    path: str | Path,
    cfg: EvalConfig,
    out_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint (native dir, HF export or Lightning .ckpt), evaluate it, write the record next to
    it (or in `out_dir`). Every input is checked before the model is loaded: the tasks' data, the output
    folder, an earlier record (replaced, with its samples, only with `force`)."""
    src = Path(path)
    out = Path(out_dir) if out_dir is not None else (src if src.is_dir() else src.parent)
    problems = [] if src.exists() else [f"ckpt={src} does not exist"]
    problems += output_problems(out, force)
    problems += task_data_problems(cfg.tasks, cfg.data_dir, cfg.limit, cfg.num_fewshot)
    if problems:
        raise ConfigError("evaluation inputs", problems)
    model, tokenizer = load_for_eval(src, tokenizer_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = temp_sibling(RunDir(out).eval_samples)
    try:
        section = run_evaluation(model, tokenizer, cfg, staging)
        if section is None:
            raise RuntimeError(
                "evaluate_checkpoint runs in one process; call run_evaluation on every rank instead"
            )
        extra = {"checkpoint": str(src.resolve()), "tokens_seen": tokens_seen(src)}
        record = build_record(model, section, cfg, extra)
        publish(record, RunDir(staging).eval_samples, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record
