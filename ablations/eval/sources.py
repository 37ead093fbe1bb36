"""Where each evaluation task's data comes from, and a check that it is there and parses, before any compute.

A task is read from, in this order:
1. `eval.data_dir` (your folder, `<dir>/<task>/<split>.jsonl`) when it holds the task's files;
2. the packaged sample (`ablations/eval/benchmarks/`: the first 40 rows of the 8 zero-shot tasks) when it
   holds every row asked for: a zero-shot task with `eval.limit` <= its rows, so a score on it equals the
   score on the full split's first rows;
3. the Hugging Face hub (lm-eval's own dataset), downloaded or read from the datasets cache.

Nothing else is looked at (no folder beside the repo). `task_data_problems` parses every local file a task
will read and loads every hub split it will read (from the cache when the hub is offline), so a missing or
damaged input is refused, named, before a model is trained or loaded.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.eval.tasks import (
    TASKS,
    WIKITEXT_MOBILELLM,
    WIKITEXT_MOBILELLM_HUB,
    MissingTaskData,
    lm_eval_tasks_dir,
    task_shots,
)

log = logging.getLogger(__name__)

PACKAGED_DIR = Path(__file__).resolve().parent / "benchmarks"
"""The packaged sample of the smoke suite (package data; its README gives each dataset's source and licence)."""
WIKITEXT_PAGE = "page"
"""The field the MobileLLM WikiText-2 protocol reads from `wikitext/test.jsonl`."""


@dataclass(frozen=True)
class TaskSource:
    """Where one task's data is read from."""

    task: str
    root: Path | None
    """The folder holding `<folder>/<split>.jsonl`; None: the Hugging Face hub."""
    origin: str
    """`data_dir`, `packaged` or `hub`."""
    reason: str
    """Why this source, in words (for logs, records and refusals)."""

    def describe(self) -> str:
        where = f"{self.root}" if self.root is not None else "the Hugging Face hub"
        return f"{self.task}: {self.origin} ({where}; {self.reason})"


def data_task(task: str) -> str:
    """The lm-eval task whose files `task` reads (the MobileLLM WikiText-2 protocol reads `wikitext`'s)."""
    return "wikitext" if task == WIKITEXT_MOBILELLM else task


def task_files(task: str, root: str | Path) -> dict[str, Path]:
    """{split: file} that `task` reads under `root` (present or not)."""
    spec = TASKS[data_task(task)]
    splits = ("test",) if task == WIKITEXT_MOBILELLM else spec.splits
    return {split: Path(root) / spec.folder / f"{split}.jsonl" for split in splits}


@functools.cache
def packaged_rows(task: str) -> int:
    """Rows of the packaged sample of `task` (0: none is packaged)."""
    files = task_files(task, PACKAGED_DIR)
    if not all(path.is_file() for path in files.values()):
        return 0
    return min(sum(1 for line in path.open(encoding="utf-8") if line.strip()) for path in files.values())


def usable_sample_rows(task: str, num_fewshot: int) -> int:
    """Rows of the packaged sample that can stand in for `task` (0: none; it holds no train split for
    few-shot examples, and no WikiText)."""
    if task == WIKITEXT_MOBILELLM or task_shots(task, num_fewshot):
        return 0
    return packaged_rows(task)


def task_source(task: str, data_dir: str | Path | None, limit: int | None, num_fewshot: int) -> TaskSource:
    """Where `task` is read from: `data_dir` if it holds the task, else the packaged sample if it holds
    every row asked for, else the hub."""
    if data_dir is not None:
        files = task_files(task, data_dir)
        if any(path.is_file() for path in files.values()):
            return TaskSource(task, Path(data_dir), "data_dir", f"eval.data_dir={data_dir}")
        absent = f"eval.data_dir={data_dir} has no {next(iter(files.values()))}"
    else:
        absent = "no eval.data_dir"
    rows = usable_sample_rows(task, num_fewshot)
    if not rows:
        return TaskSource(task, None, "hub", f"{absent}; no packaged sample for it")
    if limit is None or limit > rows:
        asked = "eval.limit=null asks for the whole split" if limit is None else f"eval.limit={limit}"
        return TaskSource(task, None, "hub", f"{absent}; the packaged sample has {rows} rows and {asked}")
    return TaskSource(
        task, PACKAGED_DIR, "packaged", f"the first {rows} rows of the split, eval.limit={limit}"
    )


def task_sources(
    tasks: list[str], data_dir: str | Path | None, limit: int | None, num_fewshot: int
) -> dict[str, TaskSource]:
    return {task: task_source(task, data_dir, limit, num_fewshot) for task in tasks}


def hub_offline() -> bool:
    """Whether this process may not reach the hub (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set true)."""
    flags = (os.environ.get(name, "").upper() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag in ("1", "ON", "YES", "TRUE") for flag in flags)


# ------------------------------------------------------------------------------------- the checks


def task_data_problems(
    tasks: list[str], data_dir: str | Path | None, limit: int | None, num_fewshot: int
) -> list[str]:
    """One line per task whose data is missing or does not parse, naming the task, the file or dataset,
    and how to get it (none when every task's data is there). Logs where each task's data comes from."""
    problems = []
    for source in task_sources(tasks, data_dir, limit, num_fewshot).values():
        log.info("eval data: %s", source.describe())
        problem = hub_problem(source, num_fewshot) if source.root is None else local_problem(source)
        if problem is not None:
            problems.append(problem)
    return problems


def local_problem(source: TaskSource) -> str | None:
    """Why the local files of a task cannot be read as its rows, or None."""
    assert source.root is not None
    for path in task_files(source.task, source.root).values():
        try:
            if not path.is_file():
                raise MissingTaskData(source.task, path, source.root)
            fault = jsonl_fault(path, WIKITEXT_PAGE if source.task == WIKITEXT_MOBILELLM else None)
        except MissingTaskData as error:
            return str(error)
        if fault is not None:
            refill = (
                "reinstall the package (its packaged sample is damaged)"
                if source.origin == "packaged"
                else f"delete it and fill it again with `python -m ablations.fetch_eval_data {source.root} "
                f"{data_task(source.task)}` on a machine with internet, or copy it again from its source"
            )
            return f"eval task {source.task!r}: {fault}: {refill}"
    return None


def jsonl_fault(path: Path, field: str | None = None) -> str | None:
    """What makes `path` unreadable as JSON Lines rows (one object a line, the first row's keys in every
    row, at least one row, `field` in each), or None. Blank lines are skipped, as the datasets loader does."""
    keys: set[str] | None = None
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    return (
                        f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno}; truncated?)"
                    )
                if not isinstance(row, dict):
                    return f"{path}:{number}: a JSON {type(row).__name__}, not an object (one row per line)"
                keys = set(row) if keys is None else keys
                if set(row) != keys or (field is not None and field not in row):
                    expected = sorted(keys | ({field} if field else set()))
                    return f"{path}:{number}: columns {sorted(row)}, expected {expected}"
    except UnicodeDecodeError as error:
        return f"{path}: not UTF-8 text (byte {error.start}: {error.reason})"
    except OSError as error:
        return f"{path}: unreadable ({error})"
    return f"{path}: no rows" if keys is None else None


def hub_reads(task: str, num_fewshot: int) -> tuple[tuple[str, str | None], list[str], dict[str, Any]]:
    """What `task` reads from the hub: (dataset, config), its splits (the scored one, and the training
    split when it draws shots), and the loader's extra arguments: lm-eval's own definition of the task."""
    if task == WIKITEXT_MOBILELLM:  # its own protocol reads the line-level dataset
        return WIKITEXT_MOBILELLM_HUB, ["test"], {}
    from lm_eval.tasks._yaml_loader import load_yaml  # heavy: lm-eval's package, only for hub tasks

    spec = TASKS[task]
    definition = load_yaml(lm_eval_tasks_dir() / spec.lm_eval_yaml, resolve_func=False) | spec.overrides
    splits = [spec.splits[0]]
    if task_shots(task, num_fewshot) and definition.get("training_split"):
        splits.append(definition["training_split"])
    dataset = (definition["dataset_path"], definition.get("dataset_name"))
    return dataset, splits, definition.get("dataset_kwargs") or {}


def hub_problem(source: TaskSource, num_fewshot: int) -> str | None:
    """Why the hub dataset of a task cannot be loaded now (offline: from the datasets cache), or None. A
    reachable hub downloads it here, before training, instead of after it."""
    import datasets  # heavy (~1 s): only for tasks read from the hub

    task = source.task
    (name, config), splits, kwargs = hub_reads(task, num_fewshot)
    for split in splits:
        try:
            datasets.load_dataset(name, config, split=split, **kwargs)
        except Exception as error:  # offline and not cached, unreachable, unknown: all say the same to a user
            offline = (
                "the hub is offline (HF_HUB_OFFLINE) and it is not cached" if hub_offline() else "unloadable"
            )
            cause = (str(error).strip().splitlines() or [""])[0][:200]
            rows = usable_sample_rows(task, num_fewshot)
            return (
                f"eval task {task!r}: no local copy ({source.reason}), and the hub dataset {name} "
                f"({config or 'default'}, split {split}): {offline} ({type(error).__name__}: {cause}). Fill "
                f"a folder once on a machine with internet, `python -m ablations.fetch_eval_data DIR "
                f"{data_task(task)}`, and set eval.data_dir=DIR"
                + (f", or set eval.limit <= {rows} (the packaged sample)" if rows else "")
            )
    return None
