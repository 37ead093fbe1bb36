"""Figures 4 and 5 with matplotlib (Agg): one panel per budget, 95% intervals as error bars.

Figures have a fixed size, `PANEL_SIZE_PX` per panel at `DPI`, so a PNG of n panels is
(n·500) × 400 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from analysis.paper import paper_values

DPI = 100
PANEL_SIZE_PX = (500, 400)


def _panels(budgets: list[str]) -> tuple[Figure, list[plt.Axes]]:
    n = max(len(budgets), 1)
    width, height = PANEL_SIZE_PX
    fig, axes = plt.subplots(1, n, figsize=(n * width / DPI, height / DPI), dpi=DPI, squeeze=False)
    return fig, list(axes[0])


def _errors(frame: pd.DataFrame) -> list[pd.Series]:
    low = (frame["avg"] - frame["avg_low"]).fillna(0)
    high = (frame["avg_high"] - frame["avg"]).fillna(0)
    return [low, high]


def _ours(variants: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Variants with an average and the figure's axes; figures cannot place the rest (the tables list them)."""
    if not set(axes) <= set(variants.columns):
        return variants.iloc[0:0]
    return variants[variants["avg"].notna()].dropna(subset=axes)


def depth_figure(variants: pd.DataFrame, with_paper: bool = True) -> Figure:
    """Figure 4: average accuracy vs `model/n_layers`, one panel per budget, paper points in grey."""
    ours = _ours(variants, ["model/n_layers"])
    budgets = list(dict.fromkeys(ours["budget"]))
    fig, axes = _panels(budgets)
    paper = paper_values("fig4")
    for ax, budget in zip(axes, budgets or ["no complete variant"], strict=True):
        mine = ours[ours["budget"] == budget]
        if len(mine):
            mine = mine.sort_values("model/n_layers")
            ax.errorbar(
                mine["model/n_layers"], mine["avg"], yerr=_errors(mine), marker="o", capsize=3, label="ours"
            )
        ref = paper[paper["panel"] == budget]
        if with_paper and len(ref):
            ax.plot(ref["n_layers"], ref["avg"], "s--", color="grey", label="paper (Fig. 4)")
        _finish_panel(ax, budget, "layers")
    return _finish_figure(fig, "Average zero-shot accuracy vs depth at a fixed budget")


def heads_figure(variants: pd.DataFrame) -> Figure:
    """Figure 5: average accuracy vs `model/n_kv_heads`, one line per `model/n_heads`, one panel per budget."""
    ours = _ours(variants, ["model/n_heads", "model/n_kv_heads"])
    budgets = list(dict.fromkeys(ours["budget"]))
    fig, axes = _panels(budgets)
    for ax, budget in zip(axes, budgets or ["no complete variant"], strict=True):
        mine = ours[ours["budget"] == budget]
        for heads, line in mine.groupby("model/n_heads"):
            line = line.sort_values("model/n_kv_heads")
            ax.errorbar(
                line["model/n_kv_heads"],
                line["avg"],
                yerr=_errors(line),
                marker="o",
                capsize=3,
                label=f"{heads} heads",
            )
        _finish_panel(ax, budget, "kv-heads")
    return _finish_figure(fig, "Average zero-shot accuracy: query heads × kv-heads")


def _finish_panel(ax: Any, budget: str, xlabel: str) -> None:
    ax.set(title=f"{budget}", xlabel=xlabel, ylabel="average accuracy (%)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def _finish_figure(fig: Figure, title: str) -> Figure:
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Save `<stem>.png` and `<stem>.svg` (fixed size: no tight bounding box) and close the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return paths
