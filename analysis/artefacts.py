"""Which variant of a sweep is which row of a paper artefact.

Each artefact maps the variants of one budget (see `analysis.variants.budget_label`) to the row keys of
`paper_reference/paper_values.csv`, from the variants' config:

| artefact | paper | row key from | baseline |
|---|---|---|---|
| `table1` | Table 1, embedding sharing | `model/share_embeddings` false → `untied_30l`; true at the untied depth (or the shallowest) → `tied_30l`; true and deeper → `tied_deeper` | `untied_30l` |
| `table2` | Table 2, layer-sharing schemes | the sharing scheme's `paper_row` (`ablations.model.axes.SHARING_SCHEMES`); `sharing_repeats` 1 → `none` | `none` |
| `table3` | Table 3, main zero-shot | `model/sharing_scheme` none → `mobilellm`, else → `mobilellm_ls` | `mobilellm` |
| `ffn` | §2.2.1, FFN comparison | the FFN kind's `paper_row` (`ablations.model.axes.FFN_KINDS`: `relu`, `swiglu`; others none) | `relu` |
| `roadmap` | Fig. 3 / Table 10, cumulative steps | `axes/roadmap_step` if set, else the config (see `roadmap_step`) | `baseline` |
| `fig4` | Fig. 4, accuracy vs depth | `model/n_layers` = N → `lN` (x-axis `model/n_layers`, one panel per budget) | none |
| `fig5` | Fig. 5, heads × kv-heads | no paper values (not recovered); x `model/n_kv_heads`, one line per `model/n_heads` | none |
| `table7` | Table 7, on-device load, init and execute time | `axes/table7_model` if set, else a shared model → `mobilellm_ls`; unshared at the shallowest unshared depth → `mobilellm`; unshared and deeper → `unshared_60l` | `mobilellm` |

`axes` lists the sweep axes that make `python -m analysis.tables` pick the artefact automatically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ablations.model.axes import FFN_KINDS, SHARING_SCHEMES, attention_layout

Classifier = Callable[[pd.DataFrame], pd.Series]


def _column(frame: pd.DataFrame, name: str, default: object) -> pd.Series:
    return frame[name] if name in frame else pd.Series(default, index=frame.index)


def embedding_row(variants: pd.DataFrame) -> pd.Series:
    """Table 1 rows from `model/share_embeddings` and `model/n_layers` (relative depth, so scaled sweeps map)."""
    tied = _column(variants, "model/share_embeddings", True).astype(bool)
    layers = _column(variants, "model/n_layers", 0)
    reference_depth = layers[~tied].min() if (~tied).any() else layers.min()
    keys = pd.Series("tied_deeper", index=variants.index)
    keys[tied & (layers <= reference_depth)] = "tied_30l"
    keys[~tied] = "untied_30l"
    return keys


def _registry_row(values: pd.Series, registry: dict) -> pd.Series:
    """Each value's `paper_row` in an axis registry (None for an unregistered value or one without a row)."""
    return values.map(lambda v: registry[v].paper_row if v in registry else None).astype(object)


def sharing_row(variants: pd.DataFrame) -> pd.Series:
    """Table 2 rows from `model/sharing_scheme` (a scheme with 1 repeat shares nothing)."""
    scheme = _column(variants, "model/sharing_scheme", "none").astype(str)
    repeats = _column(variants, "model/sharing_repeats", 2)
    return _registry_row(scheme.where(repeats != 1, "none"), SHARING_SCHEMES)


def main_row(variants: pd.DataFrame) -> pd.Series:
    """Table 3 rows: unshared → MobileLLM, shared → MobileLLM-LS."""
    return sharing_row(variants).map(lambda s: "mobilellm" if s == "none" else "mobilellm_ls")


def ffn_row(variants: pd.DataFrame) -> pd.Series:
    """FFN comparison rows from `model/ffn_type`."""
    return _registry_row(_column(variants, "model/ffn_type", "swiglu").astype(str), FFN_KINDS)


def roadmap_step(variants: pd.DataFrame) -> pd.Series:
    """Roadmap step of each variant: `axes/roadmap_step` where given, else, in this order, layer sharing →
    `layer_share`; a GQA/MQA attention layout → `gqa`; tied embeddings → `emb_share`; the vanilla FFN row →
    `baseline`; the SwiGLU row → `deeper` when it is the deepest of several SwiGLU steps, else `swiglu`.
    An FFN kind without a paper row (gelu, geglu) is on no step of the roadmap."""
    scheme = sharing_row(variants)
    heads = _column(variants, "model/n_heads", 1)
    kv = _column(variants, "model/n_kv_heads", None).fillna(heads)
    grouped = pd.Series(
        [attention_layout(int(h), int(k)) != "mha" for h, k in zip(heads, kv, strict=True)],
        index=variants.index,
    )
    tied = _column(variants, "model/share_embeddings", False).astype(bool)
    ffn = ffn_row(variants)
    layers = _column(variants, "model/n_layers", 0)
    swiglu_plain = (ffn == "swiglu") & ~tied & ~grouped & (scheme == "none")
    deepest = layers[swiglu_plain].max() if swiglu_plain.sum() > 1 else None
    keys = pd.Series(None, index=variants.index, dtype=object)
    keys[ffn == "swiglu"] = "swiglu"
    keys[swiglu_plain & (layers == deepest)] = "deeper"
    keys[ffn == "relu"] = "baseline"
    keys[tied] = "emb_share"
    keys[grouped] = "gqa"
    keys[scheme != "none"] = "layer_share"
    explicit = _column(variants, "axes/roadmap_step", None)
    return explicit.where(explicit.notna(), keys)


def depth_row(variants: pd.DataFrame) -> pd.Series:
    """Figure 4 points: `l<n_layers>`."""
    return _column(variants, "model/n_layers", None).map(lambda n: f"l{int(n)}" if pd.notna(n) else None)


def latency_row(variants: pd.DataFrame) -> pd.Series:
    """Table 7 rows: `axes/table7_model` where given; else layer sharing → `mobilellm_ls`, an unshared model
    at the shallowest unshared depth → `mobilellm`, a deeper unshared one → `unshared_60l` (twice the
    depth in the paper; relative, so scaled sweeps map)."""
    shared = sharing_row(variants) != "none"
    layers = _column(variants, "model/n_layers", 0)
    reference_depth = layers[~shared].min() if (~shared).any() else None
    keys = pd.Series("mobilellm_ls", index=variants.index, dtype=object)
    keys[~shared & (layers == reference_depth)] = "mobilellm"
    keys[~shared & (layers != reference_depth)] = "unshared_60l"
    explicit = _column(variants, "axes/table7_model", None)
    return explicit.where(explicit.notna(), keys)


def no_row(variants: pd.DataFrame) -> pd.Series:
    return pd.Series(None, index=variants.index, dtype=object)


@dataclass(frozen=True)
class Artefact:
    """One paper table or figure and how a sweep's variants map onto it."""

    name: str
    """File stem of the outputs and the `artefact` key of the paper reference data."""
    title: str
    classify: Classifier
    """Variants of one budget → paper row key (None where the paper has no such row)."""
    baseline: str | None
    """Row key whose interval the other rows are compared with (None: no comparison)."""
    axes: tuple[str, ...]
    """Sweep axes for which the CLI selects this artefact automatically."""
    figure: bool = False
    cumulative: bool = False
    """Add step-to-step Δ columns (the roadmap)."""
    by_depth: bool = False
    """Order rows by layer count within a budget, ours and the paper's interleaved (Figure 4)."""
    latency: bool = False
    """A table of on-device measurements relative to the baseline (`analysis.latency`), not of accuracies."""


ARTEFACTS: dict[str, Artefact] = {
    a.name: a
    for a in (
        Artefact("table1", "Table 1: embedding sharing", embedding_row, "untied_30l", ("share_embeddings",)),
        Artefact(
            "table2",
            "Table 2: layer-sharing schemes",
            sharing_row,
            "none",
            ("sharing_scheme", "sharing_repeats"),
        ),
        Artefact("table3", "Table 3: zero-shot common-sense reasoning", main_row, "mobilellm", ()),
        Artefact("ffn", "FFN: vanilla (FC → ReLU → FC) vs SwiGLU", ffn_row, "relu", ("ffn_type",)),
        Artefact(
            "roadmap",
            "Roadmap: cumulative design steps",
            roadmap_step,
            "baseline",
            ("roadmap_step", "step"),
            cumulative=True,
        ),
        Artefact(
            "fig4",
            "Figure 4: average accuracy vs depth at a fixed budget",
            depth_row,
            None,
            ("n_layers", "depth"),
            figure=True,
            by_depth=True,
        ),
        Artefact(
            "fig5",
            "Figure 5: query heads × kv-heads",
            no_row,
            None,
            ("n_heads", "n_kv_heads"),
            figure=True,
        ),
        Artefact(
            "table7",
            "Table 7: on-device load, init and execute time relative to MobileLLM-125M",
            latency_row,
            "mobilellm",
            ("table7_model",),
            latency=True,
        ),
    )
}


def auto_select(axes: set[str]) -> list[str]:
    """Artefacts for a sweep that varied `axes`: those naming one of them; Table 3 when none varied."""
    chosen = [name for name, a in ARTEFACTS.items() if axes & set(a.axes)]
    return chosen or ["table3"]
