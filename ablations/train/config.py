"""Typed configs of training: the recipe (`TrainConfig`), the Trainer (`TrainerConfig`), the loggers
(`LoggerConfig`); the `conf/train/`, `conf/trainer/` and `conf/logger/` groups map onto them one to one.

Torch-free: a job's config is validated before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ablations.model.activations import ACTIVATION_CHECKPOINTING
from ablations.records.errors import ConfigError
from ablations.records.secrets import mask_text
from ablations.train.memory_plan import DEVICES

PAPER_GLOBAL_BATCH_TOKENS = 1024 * 2048  # 32 GPUs × 32 sequences × 2048 tokens, at which the peak LR is 2e-3
STRATEGIES: tuple[str, ...] = ("auto", "ddp", "ddp_spawn", "fsdp")
FSDP_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
CLUSTERS: tuple[str, ...] = ("auto", "slurm")
ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu", "cuda")
# Lightning's precision names (the short aliases 32/16/bf16 are its deprecated spellings)
PRECISIONS: tuple[str, ...] = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


@dataclass
class TrainConfig:
    """What to train for and how: token budget, batch, AdamW and the LR schedule (conf/train/)."""

    tokens: int = 251_658_240_000
    """Token budget of the run (0.25T = 120k steps at the paper's global batch); steps = tokens / global batch."""
    micro_batch_size: Any = (
        32  # int | str: OmegaConf 2.3.1 fails to expand a Union field inside the job schema
    )
    """Sequences per device per forward pass, or `auto`: the largest that fits `device` by the memory plan
    (`ablations.train.memory_plan.largest_micro_batch`), resolved by the job's plan stage."""
    global_batch_size: int | None = None
    """Sequences per optimizer step over all devices; set, it fixes the step count and LR whatever the GPU
    count (accumulation = global / (micro × world), which must divide); null → micro × world × grad_accum_steps."""
    device: str | None = None
    """The device the memory plan is checked against (a layout that does not fit is refused) and sizes the
    `auto` settings for, a key of `ablations.train.memory_plan.DEVICES` (`h100_80gb`, `a100_40gb`, …); None → the
    visible GPU of a GPU job (a CPU job is not checked)."""
    activation_checkpointing: str = "none"
    """Recompute block applications in backward instead of keeping their activations: `none`, `full` (every
    application), `every_k` (every `activation_checkpointing_every`-th; a shared block per application), or
    `auto`: the least recompute (none, every_k, full) under which the micro-batch fits the device."""
    activation_checkpointing_every: int = 2
    """k of `every_k`."""
    loss_chunk_tokens: int | None = 4096
    """The loss projects and scores this many tokens at a time (recomputed in backward), so the
    [tokens × vocab] fp32 logits never exist whole; None → all logits at once (the plain path)."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated into one optimizer step (ignored when global_batch_size is set)."""
    seq_len: int | None = None
    """Tokens per training sequence; None → the model's max_seq_len."""
    lr: float | None = None
    """Peak learning rate; None → base_lr scaled linearly with global batch / base_lr_batch_tokens."""
    base_lr: float = 2e-3
    """Peak LR at the reference global batch (the paper: 2e-3 at 1024 × 2048 tokens)."""
    base_lr_batch_tokens: int = PAPER_GLOBAL_BATCH_TOKENS
    """Global batch (tokens) at which base_lr applies."""
    warmup_steps: int = 1000
    """Linear warmup from 0 (lr · step / warmup_steps, as MobileLLM's code)."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at min_lr_ratio · peak at the last step."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Applied to matrices and embeddings; never to norm weights."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables clipping)."""
    compile: bool = False
    """torch.compile the inner model (not the LightningModule, whose self.log must stay eager)."""
    log_every_n_steps: int = 10
    """Optimizer steps between metric rows in metrics.jsonl / the loggers."""
    val_every_n_steps: int = 1000
    """Optimizer steps between validation runs (0 disables periodic validation; one still runs at the end)."""
    val_batches: int = 50
    """Micro-batches per periodic validation run (the final validation after training covers the split)."""
    val_max_tokens: int | None = None
    """Tokens of the held-out split the final validation measures, from its start; None → the whole split
    (`ablations.train.validation`). A cap keeps a paper-scale corpus's 1% split to minutes."""
    ckpt_every_n_steps: int = 1000
    """Optimizer steps between periodic checkpoints (last.ckpt is also kept)."""
    keep_checkpoints: int = 3
    """Periodic checkpoints kept on disk (newest first); -1 keeps all."""
    peak_tflops: float | None = None
    """Peak dense TFLOP/s per device for MFU; None → looked up from the device name (A100/H100/H200)."""
    assumed_mfu: float = 0.4
    """MFU the `plan_only` report assumes to estimate the run's hours."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes carried into the result record (e.g. a sweep's explanation)."""

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # YAML gives a list
        v = []
        for name in (
            "tokens",
            "grad_accum_steps",
            "base_lr_batch_tokens",
            "log_every_n_steps",
            "activation_checkpointing_every",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                v.append(f"train.{name} must be a positive integer (got {getattr(self, name)!r})")
        if self.val_max_tokens is not None and self.val_max_tokens < 2:
            v.append(f"train.val_max_tokens must be >= 2 or null (got {self.val_max_tokens!r})")
        if self.micro_batch_size != "auto" and (
            not isinstance(self.micro_batch_size, int) or self.micro_batch_size < 1
        ):
            v.append(
                f"train.micro_batch_size must be a positive integer (got {self.micro_batch_size!r}), or 'auto'"
            )
        if self.device is not None and self.device not in DEVICES:
            v.append(f"train.device={self.device!r} is not one of {sorted(DEVICES)}")
        if self.activation_checkpointing not in (*ACTIVATION_CHECKPOINTING, "auto"):
            v.append(
                f"train.activation_checkpointing={self.activation_checkpointing!r} is not one of "
                f"{(*ACTIVATION_CHECKPOINTING, 'auto')}"
            )
        if self.loss_chunk_tokens is not None and self.loss_chunk_tokens < 1:
            v.append(f"train.loss_chunk_tokens must be >= 1 or null (got {self.loss_chunk_tokens})")
        if self.seq_len is not None and self.seq_len < 2:
            v.append(f"train.seq_len must be >= 2 or null (got {self.seq_len})")
        if self.global_batch_size is not None and (
            not isinstance(self.global_batch_size, int) or self.global_batch_size < 1
        ):
            v.append(
                f"train.global_batch_size must be a positive integer or null (got {self.global_batch_size!r})"
            )
        if not 0.0 < self.assumed_mfu <= 1.0:
            v.append(f"train.assumed_mfu must be in (0, 1] (got {self.assumed_mfu})")
        for name in ("lr", "peak_tflops"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                v.append(f"train.{name} must be > 0 and finite, or null (got {value})")
        for name in ("base_lr", "eps"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                v.append(f"train.{name} must be > 0 and finite (got {getattr(self, name)})")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            v.append(f"train.min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            v.append(f"train.betas must be two values in [0, 1) (got {self.betas})")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "val_every_n_steps", "ckpt_every_n_steps"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):  # NaN fails both
                v.append(f"train.{name} must be >= 0 and finite (got {getattr(self, name)})")
        if v:
            raise ConfigError("train config", v)


@dataclass
class TrainerConfig:
    """Where and how the Lightning Trainer runs a job: devices, strategy, precision (conf/trainer/)."""

    accelerator: str = "cpu"
    """Lightning's accelerator name: `cpu`, `gpu` (= `cuda`) or `auto`."""
    devices: int = 1
    """Devices per node; -1 = every visible device."""
    num_nodes: int = 1
    """Nodes of a multi-node run (ranks come from the cluster environment)."""
    strategy: str = "auto"
    """`auto` (one device); `ddp` (the command is re-executed per rank: single runs and SLURM); `ddp_spawn`
    (spawned workers: safe inside a local multirun); `fsdp` (FSDP2 `fully_shard`, one unit per stored block
    plus the root, through Lightning's ModelParallelStrategy; the command is re-executed per rank)."""
    fsdp_param_dtype: str = "bfloat16"
    """FSDP2 MixedPrecisionPolicy: dtype parameters are all-gathered and computed in (`float32` on CPU)."""
    fsdp_reduce_dtype: str = "float32"
    """FSDP2 MixedPrecisionPolicy: dtype gradients are reduce-scattered in."""
    fsdp_replicate_groups: int = 1
    """HSDP: > 1 splits the ranks into this many replicas (typically the node count), each sharding the model
    over its own ranks (2-D mesh replicate × shard); 1 = plain FSDP (shard over every rank)."""
    precision: str = "32-true"
    """Lightning precision: `32-true` (CPU), `bf16-mixed` (GPU, the paper's), …"""
    process_group_backend: str | None = None
    """Collective backend (`nccl`, `gloo`); None → Lightning's default for the accelerator."""
    cluster: str = "auto"
    """`auto`: Lightning detects the environment; `slurm`: ranks from SLURM's variables, requeueing left to
    the launcher (submitit) or to the job's SIGTERM handler."""
    enable_progress_bar: bool = True
    """Show the rich progress bar (off in tests and sweeps)."""

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"trainer.strategy={self.strategy!r} is not one of {STRATEGIES}")
        if self.accelerator not in ACCELERATORS:
            problems.append(f"trainer.accelerator={self.accelerator!r} is not one of {ACCELERATORS}")
        if self.precision not in PRECISIONS:
            problems.append(f"trainer.precision={self.precision!r} is not one of {PRECISIONS}")
        if self.cluster not in CLUSTERS:
            problems.append(f"trainer.cluster={self.cluster!r} is not one of {CLUSTERS}")
        if self.devices == 0 or self.devices < -1:
            problems.append(
                f"trainer.devices must be >= 1, or -1 for every visible device (got {self.devices})"
            )
        if self.num_nodes < 1:
            problems.append(f"trainer.num_nodes must be >= 1 (got {self.num_nodes})")
        for name in ("fsdp_param_dtype", "fsdp_reduce_dtype"):
            if getattr(self, name) not in FSDP_DTYPES:
                problems.append(f"trainer.{name}={getattr(self, name)!r} is not one of {FSDP_DTYPES}")
        if self.fsdp_replicate_groups < 1:
            problems.append(f"trainer.fsdp_replicate_groups must be >= 1 (got {self.fsdp_replicate_groups})")
        if problems:
            raise ConfigError("trainer config", problems)


@dataclass
class CsvLoggerConfig:
    """Lightning's CSV logger, under `<run dir>/<name>/`."""

    name: str = "csv"


@dataclass
class TensorboardLoggerConfig:
    """Lightning's TensorBoard logger, under `<run dir>/<name>/`."""

    name: str = "tensorboard"


@dataclass
class WandbLoggerConfig:
    """Weights & Biases: group = the sweep, tags = the variant's axes, the job config as its config."""

    project: str = "mobilellm-ablations"
    entity: str | None = None
    offline: bool | None = None
    """None: offline exactly when no API key is configured (WANDB_API_KEY or ~/.netrc)."""
    log_model: bool = False

    def __post_init__(self) -> None:
        # W&B writes these to its logs and the run's URL: a secret in them could not be masked there
        names = {"project": self.project, "entity": self.entity}
        problems = [
            f"logger.wandb.{key} holds a secret (a URL password or an API key): it must be a W&B {key} name, "
            "e.g. my-team"
            for key, value in names.items()
            if value is not None and mask_text(value) != value
        ]
        if problems:
            raise ConfigError("logger config", problems)


@dataclass
class LoggerConfig:
    """Loggers besides `metrics.jsonl` (always written); `logger=[csv,wandb]` selects several."""

    csv: CsvLoggerConfig | None = None
    wandb: WandbLoggerConfig | None = None
    tensorboard: TensorboardLoggerConfig | None = None
