"""Evaluate a checkpoint on an eval preset:

    python -m ablations.evaluate ckpt=PATH [eval=paper_zero_shot] [eval.limit=N] [eval.tasks=[piqa,boolq]]
                                 [eval.data_dir=DIR] [out=DIR] [tokenizer=DIR] [force=true]

PATH is a native model directory, a Hugging Face LLaMA export or a Lightning `.ckpt`. The record goes to
`<out>/eval_result.json` (default: the checkpoint's directory), per-sample outputs to `<out>/eval_samples/`;
an existing record is replaced (with its samples) only with `force=true`. Bad input exits 2, named.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from ablations.cli import exit_with_usage_if_asked
from ablations.eval.scoring import evaluate_checkpoint
from ablations.job.config import compose_config, job_config
from ablations.model.checkpoint import CheckpointError
from ablations.model.hf_interop import ConversionError
from ablations.records.errors import ConfigError, DataError
from ablations.records.run_dir import RunDir
from ablations.records.secrets import cli_exit

OWN_KEYS = ("ckpt", "out", "tokenizer", "force")
# a checkpoint, model directory, task file or config that cannot be used (MissingTaskData included)
BAD_INPUT = (ConfigError, DataError, CheckpointError, ConversionError, FileNotFoundError)
FLAGS = {"true": True, "false": False}


def split_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(our own key=value arguments, the Hydra overrides), with `eval=paper_zero_shot` unless one is given."""
    own = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if a.split("=", 1)[0] in OWN_KEYS}
    overrides = [a for a in argv if a.split("=", 1)[0] not in OWN_KEYS]
    if not any(o.startswith("eval=") for o in overrides):
        overrides.insert(0, "eval=paper_zero_shot")
    return own, overrides


def print_results(section: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    for column in ("task", "metric", "value", "stderr"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task, metrics in section["tasks"].items():
        for name, value in metrics.items():
            if name.endswith("_stderr") or not isinstance(value, float):
                continue
            stderr = metrics.get(f"{name}_stderr")
            table.add_row(task, name, f"{value:.4f}", "" if stderr is None else f"{stderr:.4f}")
    if section["paper_avg"] is not None:
        label = "paper_avg (PARTIAL)" if section["paper_avg_partial"] else "paper_avg"
        table.add_row(label, "(see paper_avg_metric)", f"{section['paper_avg']:.4f}", "")
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = list(sys.argv[1:] if argv is None else argv)
    exit_with_usage_if_asked(args, __doc__)
    own, overrides = split_args(args)
    try:
        if "ckpt" not in own:
            raise ConfigError("evaluate arguments", [f"ckpt=PATH is required; usage:\n{__doc__}"])
        force = FLAGS.get(own.get("force", "false").lower())
        if force is None:
            raise ConfigError("evaluate arguments", [f"force={own['force']}: expected true or false"])
        eval_cfg = job_config(compose_config(overrides)).eval
        record = evaluate_checkpoint(own["ckpt"], eval_cfg, own.get("out"), own.get("tokenizer"), force)
    except BAD_INPUT as error:  # named in the message; a traceback would add nothing
        raise cli_exit(error) from None
    print_results(record["eval"], f"{own['ckpt']}  ({RunDir.EVAL_RECORD} written)")
    return record


def cli() -> None:
    """`mobilellm-evaluate` (a console script exits with what its function returns: nothing, here)."""
    main()


if __name__ == "__main__":
    cli()
