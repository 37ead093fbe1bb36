"""The training recipe (the paper's by default) and the arithmetic that turns a token budget into steps.

No torch or lightning import: the plan of a run is computed and validated before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ablations.errors import ConfigError

PAPER_GLOBAL_BATCH_TOKENS = 1024 * 2048  # 32 GPUs × 32 sequences × 2048 tokens, at which the peak LR is 2e-3


@dataclass
class TrainConfig:
    """What to train for and how: token budget, batch, AdamW and the LR schedule (conf/train/)."""

    tokens: int = 251_658_240_000
    """Token budget of the run (0.25T = 120k steps at the paper's global batch); steps = tokens / global batch."""
    micro_batch_size: int = 32
    """Sequences per device per forward pass."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated into one optimizer step."""
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
    """Micro-batches per validation run."""
    ckpt_every_n_steps: int = 1000
    """Optimizer steps between periodic checkpoints (last.ckpt is also kept)."""
    keep_checkpoints: int = 3
    """Periodic checkpoints kept on disk (newest first); -1 keeps all."""
    peak_tflops: float | None = None
    """Peak dense TFLOP/s per device for MFU; None → looked up from the device name (A100/H100/H200)."""
    extra: dict = field(default_factory=dict)
    """Free-form notes carried into the result record (e.g. a sweep's explanation)."""

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # YAML gives a list
        v = []
        for name in (
            "tokens",
            "micro_batch_size",
            "grad_accum_steps",
            "base_lr_batch_tokens",
            "log_every_n_steps",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                v.append(f"train.{name} must be a positive integer (got {getattr(self, name)!r})")
        if self.seq_len is not None and self.seq_len < 2:
            v.append(f"train.seq_len must be >= 2 or null (got {self.seq_len})")
        if self.lr is not None and not self.lr > 0:
            v.append(f"train.lr must be > 0 or null (got {self.lr})")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            v.append(f"train.min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            v.append(f"train.betas must be two values in [0, 1) (got {self.betas})")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "val_every_n_steps", "ckpt_every_n_steps"):
            if getattr(self, name) < 0:
                v.append(f"train.{name} must be >= 0 (got {getattr(self, name)})")
        if v:
            raise ConfigError("train config", v)


@dataclass(frozen=True)
class TrainPlan:
    """The concrete numbers of one run, derived from TrainConfig, the world size and the sequence length."""

    steps: int
    global_batch_sequences: int
    global_batch_tokens: int
    seq_len: int
    peak_lr: float
    warmup_steps: int
    tokens: int
    """Tokens the run will actually train on: steps × global batch (≥ the budget)."""


def plan_training(cfg: TrainConfig, world_size: int, model_max_seq_len: int) -> TrainPlan:
    """Steps = ceil(token budget / (micro-batch × world size × accumulation × seq_len)); LR scaled linearly."""
    seq_len = cfg.seq_len or model_max_seq_len
    if seq_len > model_max_seq_len:
        raise ConfigError(
            "train config", [f"train.seq_len ({seq_len}) exceeds model.max_seq_len ({model_max_seq_len})"]
        )
    sequences = cfg.micro_batch_size * world_size * cfg.grad_accum_steps
    batch_tokens = sequences * seq_len
    steps = math.ceil(cfg.tokens / batch_tokens)
    peak_lr = cfg.lr if cfg.lr is not None else cfg.base_lr * batch_tokens / cfg.base_lr_batch_tokens
    return TrainPlan(
        steps=steps,
        global_batch_sequences=sequences,
        global_batch_tokens=batch_tokens,
        seq_len=seq_len,
        peak_lr=peak_lr,
        warmup_steps=cfg.warmup_steps,
        tokens=steps * batch_tokens,
    )


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR / peak at optimizer step `step` (0-based): linear warmup, then cosine from 1 to min_lr_ratio.

    Past `total_steps` it stays at min_lr_ratio, as in MobileLLM's scheduler.
    """
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + 0.5 * (1.0 - min_lr_ratio) * (1.0 + math.cos(math.pi * progress))
