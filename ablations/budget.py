"""Print the parameter counts, FLOPs and per-GPU training memory of any composed config (closed form,
nothing is built):

python -m ablations.budget model=mobilellm_350m [model.sharing_scheme=reverse ...] [train.seq_len=4096]
python -m ablations.budget model=mobilellm_350m train=paper_exploration trainer=ddp device=h100_80gb
python -m ablations.budget model=mobilellm_1.5b trainer=fsdp world_size=32 train.activation_checkpointing=full

Every config key is run.py's (the training window is `train.seq_len`, null: the model's max_seq_len). Two
options are the budget's own: `device=` names an entry of `ablations.train.memory_plan.DEVICES` (default:
`train.device`, else h100_80gb); `world_size=` (a positive integer) overrides trainer.devices ×
trainer.num_nodes (devices=-1 counts as 8 GPUs per node). Bad input exits 2, named.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from ablations.cli import exit_with_usage_if_asked
from ablations.job.config import JobConfig, compose_config, group_choice, job_config
from ablations.model.activations import ACTIVATION_CHECKPOINTING
from ablations.model.config import ModelConfig
from ablations.model.counts import summary_rows
from ablations.records.errors import ConfigError
from ablations.records.secrets import cli_exit
from ablations.train.memory_plan import (
    CHECKPOINTING_ORDER,
    DEVICES,
    GIB,
    SAFETY_MARGIN,
    compute_precision,
    device_capacity,
    largest_micro_batch,
    memory_plan,
)

GPUS_PER_NODE = 8  # assumed for trainer.devices=-1 (every visible GPU), which a plan cannot see


def print_summary(cfg: ModelConfig, title: str, seq_len: int | None = None) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in summary_rows(cfg, seq_len):
        table.add_row(label, value)
    Console().print(table)


def print_memory(job: JobConfig, device: str, world_size: int, seq_len: int) -> None:
    """The per-GPU memory table of this job's layout, and the largest micro-batch per checkpointing mode."""
    train, trainer = job.train, job.trainer
    capacity = device_capacity(device)
    layout = (
        trainer.strategy,
        compute_precision(trainer.strategy, trainer.precision, trainer.fsdp_param_dtype),
    )
    settings = (train.activation_checkpointing_every, train.loss_chunk_tokens)

    def largest(mode: str) -> int:
        return largest_micro_batch(job.model, seq_len, capacity, world_size, *layout, mode, *settings)

    def fits(micro_batch: int, mode: str) -> bool:
        plan = memory_plan(job.model, seq_len, micro_batch, world_size, *layout, mode, *settings)
        return plan.total <= SAFETY_MARGIN * capacity

    checkpointing = train.activation_checkpointing
    sized = 1 if train.micro_batch_size == "auto" else int(train.micro_batch_size)
    if checkpointing == "auto":  # as the plan stage resolves it: the least recompute that fits
        checkpointing = next((m for m in CHECKPOINTING_ORDER if fits(sized, m)), "full")
    micro_batch = largest(checkpointing) if train.micro_batch_size == "auto" else sized
    plan = memory_plan(job.model, seq_len, micro_batch, world_size, *layout, checkpointing, *settings)
    table = Table(
        title=(
            f"per-GPU memory on {device} ({capacity / GIB:.0f} GiB): {world_size} GPUs, strategy "
            f"{trainer.strategy}, {layout[1]}, micro-batch {micro_batch} × {seq_len}, checkpointing "
            f"{checkpointing}{' (auto)' if train.activation_checkpointing == 'auto' else ''}, loss chunk "
            f"{train.loss_chunk_tokens}"
        ),
    )
    table.add_column("part", style="bold")
    table.add_column("GiB", justify="right")
    table.add_column("of device", justify="right")
    for label, size in plan.rows():
        table.add_row(label, f"{size / GIB:.2f}", f"{size / capacity:.0%}")
    for mode in ACTIVATION_CHECKPOINTING:
        try:
            fits = str(largest(mode))
        except ConfigError:
            fits = "none"
        table.add_row(f"largest micro-batch, checkpointing {mode}", fits, "")
    Console().print(table)


def pop_option(overrides: list[str], key: str) -> str | None:
    """Remove `key=value` items (not config keys) from the overrides; the last value wins."""
    value = None
    for item in [o for o in overrides if o.startswith(f"{key}=")]:
        value = item.split("=", 1)[1]
        overrides.remove(item)
    return value


def positive_int(key: str, value: str) -> int:
    """`value` of the option `key` as an integer >= 1, or a ConfigError naming it."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError("budget arguments", [f"{key}={value}: expected a positive integer"])
    return number


def main(argv: list[str] | None = None) -> None:
    overrides = list(sys.argv[1:] if argv is None else argv)
    exit_with_usage_if_asked(overrides, __doc__)
    device = pop_option(overrides, "device")
    world_size = pop_option(overrides, "world_size")
    try:
        if (seq_len := pop_option(overrides, "seq_len")) is not None:  # a spelling README once documented
            raise ConfigError(
                "budget arguments",
                [f"seq_len={seq_len}: not a config key; the training window is train.seq_len={seq_len}, as run.py "
                 "takes it"],
            )  # fmt: skip
        ranks = positive_int("world_size", world_size) if world_size is not None else None
        if device is not None and device not in DEVICES:
            raise ConfigError("budget arguments", [f"device={device}: not one of {sorted(DEVICES)}"])
        cfg = compose_config(overrides)
        job = job_config(cfg)
        window = job.train.seq_len or job.model.max_seq_len
        print_summary(job.model, f"model={group_choice(cfg, 'model')}", window)
        devices = GPUS_PER_NODE if job.trainer.devices == -1 else job.trainer.devices
        print_memory(
            job,
            device or job.train.device or "h100_80gb",
            ranks or devices * job.trainer.num_nodes,
            window,
        )
    except ConfigError as error:
        raise cli_exit(error) from None


if __name__ == "__main__":
    main()
