"""The ablation axes of the architecture family: one registry (a dict of frozen entries) per axis.

Every part of the platform that depends on an axis value reads it from here: the model builds from it,
the parameter and FLOP counts count from it, HF interop decides exportability from it, config validation
and sweeps check names against it, and the analysis maps a variant to its paper row with it. Adding a
value (a new FFN kind, norm or sharing scheme) is one entry; the parametrised tests pick it up.

Torch-free: an activation is named by its function in `torch.nn.functional`, resolved by the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FfnKind:
    """A feed-forward block: `down(act(up(x)))`, or gated `down(act(gate(x)) · up(x))`."""

    name: str
    activation: str
    """The activation's name in `torch.nn.functional` (`relu`, `gelu`, `silu`)."""
    gated: bool
    """Gated FFNs have three matrices (gate, up, down), ungated two (up, down)."""
    default_multiplier: float
    """Hidden size as a multiple of dim (before rounding) when the config gives neither: 8/3 keeps a gated
    FFN at the parameter count of a 4x ungated one."""
    hf_hidden_act: str | None
    """`hidden_act` of a LLaMA-format export (whose MLP is always gated); None: not exportable."""
    paper_row: str | None
    """Row key in the paper's FFN comparison and the roadmap's FFN step; None: the paper has no such row."""
    description: str

    @property
    def n_matrices(self) -> int:
        return 3 if self.gated else 2


@dataclass(frozen=True)
class SharingScheme:
    """Block-wise weight sharing: the order in which the stored blocks are applied."""

    name: str
    schedule: Callable[[int, int], tuple[int, ...]]
    """(n_blocks, repeats k ≥ 2) → stored-block index of each application, in order."""
    paper_row: str | None
    """Row key in the paper's Table 2; None: the paper has no such row."""
    description: str


@dataclass(frozen=True)
class NormKind:
    """The normalisation before attention, before the FFN and after the last block."""

    name: str
    centered: bool
    """Subtract the mean before scaling (LayerNorm) or not (RMSNorm)."""
    bias: bool
    """A learned shift after the scale (one more parameter per channel)."""
    hf_exportable: bool
    """LLaMA-format checkpoints hold RMSNorm only."""
    description: str

    @property
    def params_per_channel(self) -> int:
        return 2 if self.bias else 1


@dataclass(frozen=True)
class AttentionLayout:
    """How query heads share key/value heads; the layout is a function of (n_heads, n_kv_heads)."""

    name: str
    matches: Callable[[int, int], bool]
    """(n_heads, n_kv_heads) → whether a config has this layout."""
    description: str


def _immediate(n: int, k: int) -> tuple[int, ...]:
    return tuple(i for i in range(n) for _ in range(k))


def _repeat_all_over(n: int, k: int) -> tuple[int, ...]:
    return tuple(list(range(n)) * k)


def _reverse(n: int, k: int) -> tuple[int, ...]:
    forward = list(range(n))
    return tuple(i for p in range(k) for i in (forward if p % 2 == 0 else forward[::-1]))


def _registry(*entries: FfnKind | SharingScheme | NormKind | AttentionLayout) -> dict:
    return {entry.name: entry for entry in entries}


FFN_KINDS: dict[str, FfnKind] = _registry(
    FfnKind("relu", "relu", False, 4.0, None, "relu", "FC → ReLU → FC, the paper's vanilla FFN"),
    FfnKind("gelu", "gelu", False, 4.0, None, None, "FC → GELU → FC"),
    FfnKind(
        "swiglu", "silu", True, 8 / 3, "silu", "swiglu", "down(SiLU(gate) · up), LLaMA's and MobileLLM's"
    ),
    FfnKind("geglu", "gelu", True, 8 / 3, "gelu", None, "down(GELU(gate) · up), Shazeer's gated GELU"),
)

SHARING_SCHEMES: dict[str, SharingScheme] = _registry(
    SharingScheme("none", lambda n, k: tuple(range(n)), "none", "every block applied once"),
    SharingScheme("immediate", _immediate, "immediate", "each block k times in a row: 0,0,1,1,…"),
    SharingScheme("repeat_all_over", _repeat_all_over, "repeat_all_over", "the stack k times: 0..N-1,0..N-1"),
    SharingScheme("reverse", _reverse, "reverse", "zig-zag: 0..N-1, N-1..0, 0..N-1, … for k passes"),
)

NORMS: dict[str, NormKind] = _registry(
    NormKind("rmsnorm", centered=False, bias=False, hf_exportable=True, description="RMSNorm (LLaMA's)"),
    NormKind("layernorm", centered=True, bias=True, hf_exportable=False, description="LayerNorm with bias"),
)

ATTENTION_LAYOUTS: dict[str, AttentionLayout] = _registry(
    AttentionLayout("mha", lambda h, kv: kv == h, "multi-head: one key/value head per query head"),
    AttentionLayout("gqa", lambda h, kv: 1 < kv < h, "grouped-query: query heads share key/value heads"),
    AttentionLayout("mqa", lambda h, kv: kv == 1 < h, "multi-query: one key/value head for all"),
)


def attention_layout(n_heads: int, n_kv_heads: int) -> str:
    """The registered layout of a head configuration (a single head counts as `mha`)."""
    return next(name for name, layout in ATTENTION_LAYOUTS.items() if layout.matches(n_heads, n_kv_heads))


def attention_violations(dim: int, n_heads: int, n_kv_heads: int | None, head_dim: int | None) -> list[str]:
    """The attention-shape rules a config breaks, each naming the rule and its values."""
    problems = []
    if head_dim is None and dim % n_heads:
        problems.append(f"dim ({dim}) must be divisible by n_heads ({n_heads}) when head_dim is not given")
    resolved_head_dim = head_dim if head_dim is not None else dim // n_heads
    if resolved_head_dim % 2:
        problems.append(f"head_dim ({resolved_head_dim}) must be even: RoPE rotates pairs of channels")
    if n_kv_heads is not None and n_heads % n_kv_heads:
        problems.append(f"n_heads ({n_heads}) must be divisible by n_kv_heads ({n_kv_heads})")
    return problems


def block_schedule(n_blocks: int, scheme: str, repeats: int) -> tuple[int, ...]:
    """The order in which `n_blocks` stored blocks are applied (0-based), from the scheme's registry entry.

    With `repeats == 1` nothing is shared, whatever the scheme.
    """
    if repeats == 1:
        return tuple(range(n_blocks))
    return SHARING_SCHEMES[scheme].schedule(n_blocks, repeats)
