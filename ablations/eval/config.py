"""EvalConfig: what an evaluation run scores and how (the `conf/eval/` group). Torch-free."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ablations.eval.sources import task_source
from ablations.eval.tasks import KNOWN_TASKS, PAPER_ZERO_SHOT, TASKS, fewshot_violation
from ablations.records.errors import ConfigError

# The average column's metric per task: acc_norm where lm-eval reports it, acc elsewhere (the paper does
# not say which it used; this is the common lm-eval convention).
DEFAULT_PAPER_AVG_METRIC: dict[str, str] = {
    "arc_easy": "acc_norm",
    "arc_challenge": "acc_norm",
    "boolq": "acc",
    "piqa": "acc_norm",
    "social_iqa": "acc",
    "hellaswag": "acc_norm",
    "openbookqa": "acc_norm",
    "winogrande": "acc",
}


@dataclass
class EvalConfig:
    """Which tasks to score, on which data, how many rows, in what batches, on which device."""

    tasks: list[str] = field(default_factory=list)
    """Tasks to score (names in `ablations.eval.tasks.TASKS`, plus `wikitext2_mobilellm`); empty = skip."""
    limit: int | None = None
    """Rows per task (first N docs), for smoke runs; None = the whole split."""
    batch_size: int = 16
    """Sequences per forward pass in the adapter."""
    data_dir: str | None = None
    """Your local data folder (`<dir>/<task>/<split>.jsonl`), read first; a task it lacks is read from the
    packaged sample when that holds every row asked for, else from the Hugging Face hub
    (`ablations.eval.sources`)."""
    num_fewshot: int = 0
    """Shots for tasks without a fixed count (TriviaQA variants fix theirs)."""
    paper_avg_metric: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PAPER_AVG_METRIC))
    """Metric per task averaged into `paper_avg`; a record scoring only some of them marks it partial."""
    bootstrap_iters: int = 1000
    """lm-eval bootstrap resamples for stderr of non-mean metrics (perplexities)."""
    wikitext_window: int = 2048
    """Window of the MobileLLM WikiText-2 protocol (capped at the model's max_seq_len)."""
    device: str = "auto"
    """Torch device the model is evaluated on (`cpu`, `cuda`, `cuda:N`); `auto` = the training accelerator
    in a job (CUDA when present for a standalone evaluation). bf16 weights on a GPU, fp32 on the CPU."""

    def __post_init__(self) -> None:
        self.tasks = list(self.tasks)
        self.paper_avg_metric = dict(self.paper_avg_metric)
        problems = [
            f"unknown task {t!r} (known: {', '.join(KNOWN_TASKS)})"
            for t in self.tasks
            if t not in KNOWN_TASKS
        ]
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1 or null (got {self.limit})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.num_fewshot < 0:
            problems.append(f"num_fewshot must be >= 0 (got {self.num_fewshot})")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            problems.append(f"device must be auto, cpu, cuda or cuda:N (got {self.device!r})")
        if self.wikitext_window < 2:
            problems.append(f"wikitext_window must be >= 2 (got {self.wikitext_window})")
        for task, metric in self.paper_avg_metric.items():
            if task not in PAPER_ZERO_SHOT:
                problems.append(f"paper_avg_metric {task}: not a paper zero-shot task ({PAPER_ZERO_SHOT})")
            elif metric not in TASKS[task].metrics:
                problems.append(
                    f"paper_avg_metric {task}: {metric} is not produced by {task} (it reports "
                    f"{'|'.join(TASKS[task].metrics)})"
                )
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            problems.append(f"data_dir {self.data_dir} is not a directory")
        for task in (t for t in self.tasks if t in TASKS):
            root = task_source(task, self.data_dir, self.limit, self.num_fewshot).root  # None: the hub
            problems += filter(None, [fewshot_violation(task, root, self.num_fewshot)])
        if problems:
            raise ConfigError("eval config", problems)
