"""Print the parameter counts and FLOPs of any composed config (closed form, nothing is built):

python -m ablations.budget model=mobilellm_350m [model.sharing_scheme=reverse ...] [seq_len=4096]
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from ablations.job.config import compose_config, group_choice, job_config
from ablations.model.budget import summary_rows
from ablations.model.config import ModelConfig
from ablations.records.errors import ConfigError


def print_summary(cfg: ModelConfig, title: str, seq_len: int | None = None) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in summary_rows(cfg, seq_len):
        table.add_row(label, value)
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    seq_len = None
    for item in [o for o in overrides if o.startswith("seq_len=")]:
        seq_len = int(item.split("=", 1)[1])
        overrides.remove(item)
    cfg = compose_config(overrides)
    try:
        model_cfg = job_config(cfg).model
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    print_summary(model_cfg, f"model={group_choice(cfg, 'model')}", seq_len)


if __name__ == "__main__":
    main()
