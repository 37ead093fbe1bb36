"""Bytes a training forward pass keeps for backward, in closed form (nothing is built).

The count follows what autograd saves in `ablations.model.architecture` under bf16 autocast (or fp32),
tensor by tensor; `tests/test_memory.py` pins it to the unique storages measured with
`torch.autograd.graph.saved_tensors_hooks` for every registered axis value. Per block application and token:

- each norm: its fp32 input, its fp32 normalised output (kept by the weight multiply), one fp32 statistic
  (two when centred); the compute-dtype copy the next matmul keeps;
- attention: the qkv projection's whole output (its `v` view keeps it alive), the rotated q and k, the
  attention output (the o_proj input is a view of it), and a fp32 log-sum-exp per head;
- FFN: gated kinds keep the fused gate/up output, the activation and the product; ungated kinds keep the
  activation's output, plus its input when the activation needs it (`ACTIVATION_SAVES`);
- per sequence position: the RoPE cos/sin tables cast to the compute dtype by both rotations.

Per micro-batch once: the final norm, the logits (the fp32 log-softmax of the plain loss, or nothing of
vocabulary size with the chunked loss), token ids and targets, and the compute-dtype copies autocast makes of
every matmul weight (cast once per forward, also for a shared block).

Activation checkpointing keeps only a checkpointed application's fp32 input, and recomputes one
application's activations at a time in backward.

Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablations.model.axes import FFN_KINDS, NORMS
from ablations.model.config import ModelConfig
from ablations.model.counts import count_params

ACTIVATION_CHECKPOINTING: tuple[str, ...] = ("none", "full", "every_k")
"""`none`; `full`: every block application; `every_k`: every k-th application (the 0th, k-th, …)."""

ACTIVATION_SAVES: dict[str, tuple[str, ...]] = {
    "relu": ("output",),
    "gelu": ("input",),
    "silu": ("input",),
}
"""What autograd keeps of each activation (by its `torch.nn.functional` name) for its backward."""

FP32 = 4
INDEX = 8  # int64 token ids and targets


def checkpointed_applications(n_applied: int, mode: str, every: int) -> tuple[bool, ...]:
    """Whether each block application (in schedule order) runs under activation checkpointing."""
    if mode == "none":
        return (False,) * n_applied
    if mode == "full":
        return (True,) * n_applied
    if mode == "every_k":
        return tuple(i % every == 0 for i in range(n_applied))
    raise ValueError(f"activation checkpointing {mode!r} is not one of {ACTIVATION_CHECKPOINTING}")


def _norm_bytes(cfg: ModelConfig) -> int:
    """Per token: fp32 input, fp32 normalised output, and its statistics (rstd; mean too when centred)."""
    return 2 * FP32 * cfg.dim + FP32 * (2 if NORMS[cfg.norm_type].centered else 1)


def _ffn_bytes(cfg: ModelConfig, width: int) -> int:
    """Per token, after the norm: the up input copy, then what the FFN kind keeps."""
    kind = FFN_KINDS[cfg.ffn_type]
    if kind.activation not in ACTIVATION_SAVES:
        raise KeyError(
            f"ablations.model.activations.ACTIVATION_SAVES has no entry for activation {kind.activation!r}"
        )
    # gated: the fused gate/up output (2h), act(gate) (h) and act(gate)·up = down's input (h);
    # ungated: the activation's output = down's input (h), and its input (h) if the activation needs it
    ungated = 2 if "input" in ACTIVATION_SAVES[kind.activation] else 1
    kept = 4 * cfg.ffn_hidden if kind.gated else ungated * cfg.ffn_hidden
    return width * (cfg.dim + kept)


def _attention_bytes(cfg: ModelConfig, width: int) -> int:
    """Per token, after the norm: qkv input copy, qkv output, rotated q and k, attention output, lse."""
    qkv = cfg.q_dim + 2 * cfg.kv_dim
    return width * (cfg.dim + qkv + cfg.q_dim + cfg.kv_dim + cfg.q_dim) + FP32 * cfg.n_heads


def block_bytes_per_token(cfg: ModelConfig, compute_bytes: int = 2) -> int:
    """Bytes one block application keeps per token (compute_bytes: 2 under bf16 autocast, 4 in fp32)."""
    return 2 * _norm_bytes(cfg) + _attention_bytes(cfg, compute_bytes) + _ffn_bytes(cfg, compute_bytes)


def rope_bytes_per_position(cfg: ModelConfig, compute_bytes: int = 2) -> int:
    """Per block application and sequence position (not per token): cos and sin cast for q and for k.

    In fp32 nothing is cast: every rotation keeps the one fp32 pair of tables (`head` counts it once).
    """
    return 4 * cfg.head_dim * compute_bytes if compute_bytes != FP32 else 0


def logits_bytes_per_token(cfg: ModelConfig) -> int:
    """The plain loss keeps the fp32 log-softmax of the logits ([tokens × vocab])."""
    return FP32 * cfg.vocab_size


def logits_peak_bytes_per_token(cfg: ModelConfig, compute_bytes: int = 2) -> int:
    """The plain loss's logits at their peak: compute-dtype logits + their fp32 copy + the fp32 log-softmax."""
    return cfg.vocab_size * (compute_bytes + 2 * FP32) if compute_bytes != FP32 else 2 * FP32 * cfg.vocab_size


def weight_copy_bytes(cfg: ModelConfig, compute_bytes: int = 2, param_bytes: int = FP32) -> int:
    """Compute-dtype copies of every stored matmul weight (and the output projection) made by autocast."""
    if compute_bytes >= param_bytes:
        return 0
    counts = count_params(cfg)
    norms = (2 * cfg.n_layers + 1) * cfg.dim * NORMS[cfg.norm_type].params_per_channel
    # the embedding lookup reads the fp32 table; tied, the same table is cast for the output projection
    lookup_only = 0 if cfg.share_embeddings else counts.embedding
    return compute_bytes * (counts.total - norms - lookup_only)


@dataclass(frozen=True)
class ActivationEstimate:
    """Bytes a forward pass keeps until backward for one micro-batch, by part."""

    blocks: int
    """Block applications: their saved tensors (or, checkpointed, their inputs)."""
    recompute: int
    """One application's activations, recomputed in backward (0 without checkpointing)."""
    head: int
    """Final norm, the output projection's input copy, token ids and targets."""
    logits: int
    """What the loss keeps of vocabulary size (the plain path's fp32 log-softmax; 0 with the chunked loss)."""
    weight_copies: int
    """Autocast's compute-dtype copies of the weights (kept until backward)."""

    @property
    def total(self) -> int:
        return self.blocks + self.recompute + self.head + self.logits + self.weight_copies


def activation_bytes(
    cfg: ModelConfig,
    micro_batch: int,
    seq_len: int,
    compute_bytes: int = 2,
    param_bytes: int = FP32,
    checkpointing: str = "none",
    checkpoint_every: int = 2,
    chunked_loss: bool = False,
) -> ActivationEstimate:
    """What one training forward of [micro_batch, seq_len] tokens keeps for backward."""
    tokens = micro_batch * seq_len
    per_application = tokens * block_bytes_per_token(cfg, compute_bytes) + seq_len * rope_bytes_per_position(
        cfg, compute_bytes
    )
    checkpointed = checkpointed_applications(cfg.n_applied_layers, checkpointing, checkpoint_every)
    blocks = sum(FP32 * cfg.dim * tokens if ckpt else per_application for ckpt in checkpointed)
    # the output projection's input: its compute-dtype copy, or (chunked) the fp32 input the chunks recompute from
    head = tokens * (_norm_bytes(cfg) + (FP32 if chunked_loss else compute_bytes) * cfg.dim + 2 * INDEX)
    if compute_bytes == FP32:
        head += 2 * seq_len * cfg.head_dim * FP32  # the fp32 cos/sin tables every rotation shares
    return ActivationEstimate(
        blocks=blocks,
        recompute=per_application if any(checkpointed) else 0,
        head=head,
        logits=0 if chunked_loss else tokens * logits_bytes_per_token(cfg),
        weight_copies=weight_copy_bytes(cfg, compute_bytes, param_bytes),
    )
