"""The evaluation task suite: lm-eval's own task definitions, pointed at local data when offline.

Every task we score is one of lm-eval's YAML tasks (prompts, choices, metrics untouched). For each run we
write a tiny YAML per task that `include:`s the installed lm-eval definition and overrides only the data
source (and the few-shot count), then load them with `TaskManager(include_path=..., include_defaults=False)`
— no 5 s index of lm-eval's 10k task files, and no task can silently come from somewhere else.

With a local folder, task `t` reads `<folder>/<t's folder>/<split>.jsonl` (Hugging Face column layout); a
missing file raises `MissingTaskData` naming the task and the file. Which folder (`eval.data_dir`, the
packaged sample) or the hub a task is read from is decided by `ablations.eval.sources`.
`python -m ablations.fetch_eval_data DIR [task ...]` fills such a folder from the hub once (needs internet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Our task name for the MobileLLM WikiText-2 protocol (computed by `ablations.eval.wikitext`, not lm-eval),
# and the hub dataset (name, config) it reads without a local copy: the line-level WikiText-2 test split.
WIKITEXT_MOBILELLM = "wikitext2_mobilellm"
WIKITEXT_MOBILELLM_HUB = ("wikitext", "wikitext-2-raw-v1")


@dataclass(frozen=True)
class TaskSpec:
    """One scored task: which lm-eval YAML it includes and which local files stand in for the hub."""

    lm_eval_yaml: str
    """Path of the task definition inside the installed `lm_eval/tasks/` package."""
    splits: tuple[str, ...]
    """Splits read from `data_dir/<folder>/<split>.jsonl`: the scored split, plus `train` for few-shot."""
    folder: str
    """Folder under `data_dir` (tasks that differ only in shots share one)."""
    num_fewshot: int | None = None
    """Fixed shot count (TriviaQA 1/5/64); None takes `eval.num_fewshot`."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Extra YAML keys, e.g. RACE's `dataset_name: middle` (lm-eval ships only `high`)."""
    metrics: tuple[str, ...] = ("acc",)
    """The metrics lm-eval's definition reports (its `metric_list`)."""
    hub_train: bool = True
    """Whether lm-eval's definition has a training split on the hub (its few-shot source)."""


def _spec(yaml_path: str, split: str, folder: str, **kw: Any) -> TaskSpec:
    return TaskSpec(yaml_path, (split,), folder, **kw)


ACC_NORM = ("acc", "acc_norm")


TASKS: dict[str, TaskSpec] = {
    "arc_easy": _spec("arc/arc_easy.yaml", "test", "arc_easy", metrics=ACC_NORM),
    "arc_challenge": _spec("arc/arc_challenge.yaml", "test", "arc_challenge", metrics=ACC_NORM),
    "boolq": _spec("super_glue/boolq/default.yaml", "validation", "boolq"),
    "piqa": _spec("piqa/piqa.yaml", "validation", "piqa", metrics=ACC_NORM),
    "social_iqa": _spec("siqa/siqa.yaml", "validation", "social_iqa"),
    "hellaswag": _spec("hellaswag/hellaswag.yaml", "validation", "hellaswag", metrics=ACC_NORM),
    "openbookqa": _spec("openbookqa/openbookqa.yaml", "test", "openbookqa", metrics=ACC_NORM),
    "winogrande": _spec("winogrande/default.yaml", "validation", "winogrande"),
    "wikitext": _spec(
        "wikitext/wikitext.yaml",
        "test",
        "wikitext",
        metrics=("word_perplexity", "byte_perplexity", "bits_per_byte"),
    ),
    "triviaqa": _spec(
        "triviaqa/default.yaml", "validation", "triviaqa", num_fewshot=0, metrics=("exact_match",)
    ),
    **{
        f"triviaqa_{k}shot": TaskSpec(
            "triviaqa/default.yaml", ("validation", "train"), "triviaqa", k, metrics=("exact_match",)
        )
        for k in (1, 5, 64)
    },
    "race_high": _spec(
        "race/race.yaml", "test", "race_high", overrides={"dataset_name": "high"}, hub_train=False
    ),
    "race_middle": _spec(
        "race/race.yaml", "test", "race_middle", overrides={"dataset_name": "middle"}, hub_train=False
    ),
}

# The paper's zero-shot columns, in its table order.
PAPER_ZERO_SHOT = (
    "arc_easy",
    "arc_challenge",
    "boolq",
    "piqa",
    "social_iqa",
    "hellaswag",
    "openbookqa",
    "winogrande",
)

KNOWN_TASKS = (*TASKS, WIKITEXT_MOBILELLM)


class MissingTaskData(FileNotFoundError):
    """A task's local data file is absent under `eval.data_dir`."""

    def __init__(self, task: str, path: Path, data_dir: Path) -> None:
        super().__init__(
            f"eval task {task!r}: expected local data file {path} (eval.data_dir={data_dir}) but it does not "
            f"exist. Fill it from the hub once with `python -m ablations.fetch_eval_data {data_dir} {task}` on a "
            f"machine with internet, or drop the task from eval.tasks, or set eval.data_dir=null (the packaged "
            "sample or the hub)."
        )
        self.task, self.path = task, path


def task_shots(task: str, num_fewshot: int) -> int:
    """The shots a task is scored with: its fixed count, else `eval.num_fewshot`."""
    spec = TASKS[task]
    return spec.num_fewshot if spec.num_fewshot is not None else num_fewshot


def fewshot_violation(task: str, data_dir: str | Path | None, num_fewshot: int) -> str | None:
    """Why `task` cannot be scored with its shots without drawing them from the scored split, or None
    (`data_dir`: the folder the task is read from; None: the hub)."""
    shots, spec = task_shots(task, num_fewshot), TASKS[task]
    has_train = "train" in spec.splits if data_dir is not None else spec.hub_train
    if shots == 0 or has_train:
        return None
    source = (
        f"no {data_dir}/{spec.folder}/train.jsonl is read" if data_dir is not None else "no hub train split"
    )
    return (
        f"task {task!r}: {shots}-shot examples would be drawn from its scored split {spec.splits[0]!r} "
        f"({source}); set eval.num_fewshot=0 for it or use a task with a train split"
    )


def lm_eval_tasks_dir() -> Path:
    import lm_eval  # heavy; the package is only located here, its tasks are loaded by lm-eval later

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def local_data_files(task: str, data_dir: str | Path) -> dict[str, Path]:
    """{split: file} a task reads from `data_dir`; raises MissingTaskData for the first missing one."""
    spec, root = TASKS[task], Path(data_dir)
    files = {split: root / spec.folder / f"{split}.jsonl" for split in spec.splits}
    for path in files.values():
        if not path.is_file():
            raise MissingTaskData(task, path, root)
    return files


def task_yaml(task: str, data_dir: str | Path | None, num_fewshot: int) -> dict[str, Any]:
    """The YAML dict of one task: lm-eval's definition included, data source and shots overridden."""
    spec, shots = TASKS[task], task_shots(task, num_fewshot)
    if (problem := fewshot_violation(task, data_dir, num_fewshot)) is not None:
        raise ValueError(problem)
    doc: dict[str, Any] = {
        "include": str(lm_eval_tasks_dir() / spec.lm_eval_yaml),
        "task": task,
        "num_fewshot": shots,
        **spec.overrides,
    }
    if data_dir is not None:
        files = local_data_files(task, data_dir)
        scored = spec.splits[0]
        doc |= {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(path) for split, path in files.items()}},
            # the scored split keeps its role; splits we have no file for are switched off
            "training_split": "train" if "train" in files else None,
            "validation_split": scored if scored == "validation" else None,
            "test_split": scored if scored == "test" else None,
        }
    return doc


def write_task_configs(
    tasks: list[str], out_dir: str | Path, data_dir: str | Path | None, num_fewshot: int = 0
) -> Path:
    """Write one `<task>.yaml` per lm-eval task into `out_dir` (an include_path for TaskManager)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        text = yaml.safe_dump(task_yaml(task, data_dir, num_fewshot), sort_keys=False)
        (out / f"{task}.yaml").write_text(text)
    return out


def task_manager(config_dir: str | Path) -> Any:
    from lm_eval.tasks import TaskManager  # heavy: indexes task YAMLs

    return TaskManager(include_path=str(config_dir), include_defaults=False)


def export_hub_data(data_dir: str | Path, tasks: list[str]) -> list[Path]:
    """Download each task's splits from the hub into `data_dir/<folder>/<split>.jsonl` (run once, online)."""
    # heavy, and only for this one-off download
    import datasets
    from lm_eval.tasks._yaml_loader import load_yaml

    written = []
    for task in tasks:
        spec = TASKS[task]
        definition = load_yaml(lm_eval_tasks_dir() / spec.lm_eval_yaml, resolve_func=False) | spec.overrides
        for split in spec.splits:
            path = Path(data_dir) / spec.folder / f"{split}.jsonl"
            if path.is_file():
                continue
            rows = datasets.load_dataset(
                definition["dataset_path"], definition.get("dataset_name"), split=split
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            rows.to_json(str(path), lines=True, force_ascii=False)
            written.append(path)
    return written
