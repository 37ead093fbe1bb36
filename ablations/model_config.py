"""The typed configuration of the architecture family, and the layer-sharing schedules.

This module imports no torch: the budget CLI and the config validation run without building a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from ablations.errors import ConfigError

FfnType = Literal["relu", "gelu", "swiglu"]
SharingScheme = Literal["none", "immediate", "repeat_all_over", "reverse"]
FFN_TYPES: tuple[str, ...] = ("relu", "gelu", "swiglu")
SHARING_SCHEMES: tuple[str, ...] = ("none", "immediate", "repeat_all_over", "reverse")
# Hidden size before rounding, as a multiple of dim, when neither ffn_hidden nor ffn_multiplier is given:
# 8/3 keeps a gated FFN (three matrices) at the parameter count of a 4x ungated one (two matrices).
DEFAULT_FFN_MULTIPLIER: dict[str, float] = {"swiglu": 8 / 3, "relu": 4.0, "gelu": 4.0}


def block_schedule(n_blocks: int, scheme: str, repeats: int) -> tuple[int, ...]:
    """The order in which the `n_blocks` stored blocks are applied (0-based indices).

    For k = `repeats` passes over N blocks:
    - `none`: 0..N-1 (k is ignored: nothing is shared).
    - `immediate`: each block k times in a row, 0,0,1,1,…,N-1,N-1 for k = 2.
    - `repeat_all_over`: the whole stack k times, 0..N-1,0..N-1 for k = 2.
    - `reverse`: the stack forwards, then backwards, alternating for k passes (a zig-zag),
      0..N-1,N-1..0 for k = 2 and 0..N-1,N-1..0,0..N-1 for k = 3.
    """
    forward = list(range(n_blocks))
    if scheme == "none" or repeats == 1:
        return tuple(forward)
    if scheme == "immediate":
        return tuple(i for i in forward for _ in range(repeats))
    if scheme == "repeat_all_over":
        return tuple(forward * repeats)
    if scheme == "reverse":
        return tuple(i for p in range(repeats) for i in (forward if p % 2 == 0 else forward[::-1]))
    raise ConfigError("sharing scheme", [f"sharing_scheme={scheme!r} is not one of {SHARING_SCHEMES}"])


def derived_ffn_hidden(dim: int, ffn_type: str, multiplier: float | None, multiple_of: int) -> int:
    """FFN hidden size from the LLaMA rule: multiple_of · ceil(multiplier · dim / multiple_of).

    With the default multiplier 8/3 and multiple_of 256 this gives 576 → 1536, 1280 → 3584, 1600 → 4352.
    """
    m = DEFAULT_FFN_MULTIPLIER[ffn_type] if multiplier is None else multiplier
    # round() first so 8/3·576 = 1536.0000000002 does not round up to the next multiple
    return multiple_of * math.ceil(round(m * dim / multiple_of, 9))


@dataclass
class ModelConfig:
    """One point of the architecture family: a LLaMA-style pre-norm decoder with the paper's axes.

    Optional fields (`n_kv_heads`, `head_dim`, `ffn_hidden`) are resolved in `__post_init__`, so a
    constructed config always holds the concrete shape it describes.
    """

    dim: int = 576
    """Width of the residual stream (the paper's "embedding dimension")."""
    n_layers: int = 30
    """Number of distinct (stored) transformer blocks; layer sharing applies them more than once."""
    n_heads: int = 9
    """Number of query heads."""
    n_kv_heads: int | None = None
    """Number of key/value heads (GQA); None → n_heads (MHA); 1 → MQA. Must divide n_heads."""
    head_dim: int | None = None
    """Per-head width; None → dim // n_heads (dim must then be divisible by n_heads). Even, for RoPE."""
    vocab_size: int = 32000
    """Rows of the token embedding (and of the output matrix when untied)."""
    ffn_type: FfnType = "swiglu"
    """`relu`: FC→ReLU→FC (the paper's vanilla FFN); `gelu`: FC→GELU→FC; `swiglu`: down(silu(gate)·up)."""
    ffn_hidden: int | None = None
    """FFN hidden size; None → derived from dim with `ffn_multiplier` and `multiple_of`."""
    ffn_multiplier: float | None = None
    """Hidden = multiplier·dim before rounding; None → 8/3 for swiglu, 4 for relu/gelu."""
    multiple_of: int = 256
    """The derived FFN hidden size is rounded up to a multiple of this (LLaMA uses 256)."""
    share_embeddings: bool = True
    """Tie input and output embeddings: no output matrix exists, logits = h·Eᵀ."""
    sharing_scheme: SharingScheme = "none"
    """Block-wise weight sharing: `none`, `immediate`, `repeat_all_over` or `reverse` (see block_schedule)."""
    sharing_repeats: int = 1
    """How many times each stored block is applied (k ≥ 1); ignored when sharing_scheme is `none`."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    rope_theta: float = 10000.0
    """RoPE base frequency; rotation covers the full head_dim."""
    max_seq_len: int = 2048
    """Training context length; also the default KV-cache size and the FLOP counter's sequence length."""
    init_std: float = 0.02
    """Standard deviation of the N(0, std) init of every linear and embedding weight."""

    def __post_init__(self) -> None:
        problems = self._violations()
        if problems:
            raise ConfigError("model config", problems)
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads
        if self.ffn_hidden is None:
            self.ffn_hidden = derived_ffn_hidden(
                self.dim, self.ffn_type, self.ffn_multiplier, self.multiple_of
            )
        if self.sharing_scheme == "none":
            self.sharing_repeats = 1

    def _violations(self) -> list[str]:
        """Every rule the config breaks, each naming the rule and the values."""
        v: list[str] = []
        for name in ("dim", "n_layers", "n_heads", "vocab_size", "multiple_of", "max_seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                v.append(f"{name} must be a positive integer (got {getattr(self, name)!r})")
        for name in ("n_kv_heads", "head_dim", "ffn_hidden"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                v.append(f"{name} must be a positive integer or null (got {value!r})")
        for name in ("norm_eps", "rope_theta", "init_std"):
            if not getattr(self, name) > 0:
                v.append(f"{name} must be > 0 (got {getattr(self, name)!r})")
        if self.ffn_multiplier is not None and not self.ffn_multiplier > 0:
            v.append(f"ffn_multiplier must be > 0 or null (got {self.ffn_multiplier!r})")
        if self.ffn_type not in FFN_TYPES:
            v.append(f"ffn_type must be one of {FFN_TYPES} (got {self.ffn_type!r})")
        if self.sharing_scheme not in SHARING_SCHEMES:
            v.append(f"sharing_scheme must be one of {SHARING_SCHEMES} (got {self.sharing_scheme!r})")
        if not isinstance(self.sharing_repeats, int) or self.sharing_repeats < 1:
            v.append(f"sharing_repeats must be an integer >= 1 (got {self.sharing_repeats!r})")
        if v:  # shape rules below assume the basic types hold
            return v
        if self.head_dim is None and self.dim % self.n_heads:
            v.append(
                f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads}) when head_dim is not given"
            )
        head_dim = self.head_dim if self.head_dim is not None else self.dim // self.n_heads
        if head_dim % 2:
            v.append(f"head_dim ({head_dim}) must be even: RoPE rotates pairs of channels")
        if self.n_kv_heads is not None and self.n_heads % self.n_kv_heads:
            v.append(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        return v

    @property
    def block_schedule(self) -> tuple[int, ...]:
        """Stored-block index of each block application, in order."""
        return block_schedule(self.n_layers, self.sharing_scheme, self.sharing_repeats)

    @property
    def n_applied_layers(self) -> int:
        """Number of block applications per forward pass (n_layers · repeats)."""
        return len(self.block_schedule)

    @property
    def q_dim(self) -> int:
        """Width of the concatenated query heads (n_heads · head_dim); equals dim by default."""
        return self.n_heads * self.head_dim  # type: ignore[operator]

    @property
    def kv_dim(self) -> int:
        """Width of the concatenated key (or value) heads."""
        return self.n_kv_heads * self.head_dim  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a mapping (a Hydra node, a result record), rejecting unknown keys by name."""
        values = {k: v for k, v in values.items() if k != "_target_"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError("model config", [f"unknown field(s) {unknown}; valid fields: {sorted(known)}"])
        return cls(**values)
