"""One artefact's table: our variants in the paper's row order, the paper's values beside them, Δ.

`comparison_table` returns the numeric table (what the CSV holds); columns:
- `budget`, `row` (paper row key or empty), `label` (paper row name, else the variant), `variant`,
  `status` (`not run` for a paper row no variant maps to), `note`, `seeds`, `ci_source`, `params_m`
- `val bpb`, `val bpb low/high`: validation bits per byte (mean over seeds, 95% interval)
- `decode ms`, `decode tok/s`, `pte bytes`: on-device latency and program size (`analysis.latency`), only
  where the records have a `device` block
- `<TASK LABEL>` and `<TASK LABEL> low/high` (percent), `Avg`, `Avg low`, `Avg high`
- `paper Avg`, `Δ Avg` (ours − paper), `paper <TASK LABEL>` where the paper gives per-task values
- `baseline` (the row other rows are compared with), `overlaps baseline` (its 95% interval overlaps the
  baseline's: the difference is not resolved)
- roadmap only: `Δ step` and `paper Δ step` (each step minus the previous step)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from ablations.eval.tasks import PAPER_ZERO_SHOT
from analysis.artefacts import ARTEFACTS, Artefact
from analysis.bootstrap import intervals_overlap
from analysis.paper import paper_values
from analysis.records import TASK_LABELS

DEVICE_CELLS = {  # table column → variants column, where the sweep ran with device.enabled=true
    "decode ms": "device/decode_ms",
    "decode tok/s": "device/decode_tok_s",
    "pte bytes": "device/pte_bytes",
}


def variant_cells(variant: pd.Series, key: str | None, paper: pd.Series | None) -> dict[str, object]:
    """The cells naming a variant's row: budget, the paper row it maps to, label, variant, status."""
    return {
        "budget": variant["budget"],
        "row": key or "",
        "label": paper["label"] if paper is not None else variant["variant"],
        "variant": variant["variant"],
        "status": variant["status"],
    }


def _our_row(variant: pd.Series, key: str | None, paper: pd.Series | None) -> dict[str, object]:
    params = variant.get("params/total")
    row: dict[str, object] = {
        **variant_cells(variant, key, paper),
        "note": variant["error"] if isinstance(variant.get("error"), str) else "",
        "seeds": variant.get("seeds", ""),
        "ci_source": variant.get("ci_source", "none"),
        "params_m": float(params) / 1e6 if params is not None and pd.notna(params) else math.nan,
        "n_layers": variant.get("model/n_layers", math.nan),
    }
    for task in PAPER_ZERO_SHOT:
        label = TASK_LABELS[task]
        row[label] = variant[task]
        row[f"{label} low"], row[f"{label} high"] = variant.get(f"{task}_low"), variant.get(f"{task}_high")
    row["val bpb"], row["val bpb low"], row["val bpb high"] = (
        variant.get("val_bpb", math.nan),
        variant.get("val_bpb_low", math.nan),
        variant.get("val_bpb_high", math.nan),
    )
    row.update({column: variant[source] for column, source in DEVICE_CELLS.items() if source in variant})
    row["Avg"], row["Avg low"], row["Avg high"] = (
        variant["avg"],
        variant.get("avg_low"),
        variant.get("avg_high"),
    )
    return row | _paper_cells(paper)


def _paper_cells(paper: pd.Series | None) -> dict[str, object]:
    cells: dict[str, object] = {"paper Avg": math.nan, "paper source": ""}
    cells.update({f"paper {TASK_LABELS[t]}": math.nan for t in PAPER_ZERO_SHOT})
    if paper is not None:
        cells["paper Avg"] = paper["avg"]
        cells["paper source"] = paper["paper_source"]
        cells.update({f"paper {TASK_LABELS[t]}": paper[t] for t in PAPER_ZERO_SHOT})
    return cells


def _missing_row(budget: str, paper: pd.Series) -> dict[str, object]:
    row: dict[str, object] = {
        "budget": budget,
        "row": paper["row"],
        "label": paper["label"],
        "variant": "",
        "status": "not run",
        "note": "",
        "n_layers": paper["n_layers"],
    }
    return row | _paper_cells(paper)


RowOfOurs = Callable[[pd.Series, str | None, pd.Series | None], dict]
"""(a variant, the paper row key it maps to, that paper row) → its table row."""


def budget_rows(
    artefact: Artefact,
    budget: str,
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    our_row: RowOfOurs | None = None,
    missing_row: Callable[[str, pd.Series], dict] | None = None,
) -> list[dict]:
    """Rows of one budget: paper rows in order (each with the variants mapped to it, or `not run`), then
    our variants that map to no paper row. A table with other columns (Table 7) brings its own row builders."""
    our_row, missing_row = our_row or _our_row, missing_row or _missing_row
    keys = artefact.classify(ours) if len(ours) else pd.Series(dtype=object)
    rows: list[dict] = []
    for _, paper_row in paper.iterrows():
        mapped = ours[keys == paper_row["row"]]
        if mapped.empty:
            rows.append(missing_row(budget, paper_row))
        rows.extend(our_row(v, paper_row["row"], paper_row) for _, v in mapped.iterrows())
    unmatched = ours[~keys.isin(paper["row"].tolist())] if len(ours) else ours
    rows.extend(
        our_row(v, keys[i] if isinstance(keys[i], str) else None, None) for i, v in unmatched.iterrows()
    )
    return rows


def _mark_baseline(table: pd.DataFrame, baseline: str | None) -> None:
    table["baseline"] = False
    table["overlaps baseline"] = pd.Series(pd.NA, index=table.index, dtype="boolean")
    if baseline is None:
        return
    for _, group in table.groupby("budget", sort=False):
        base = group[(group["row"] == baseline) & (group["variant"] != "")]
        if base.empty:
            continue
        b = base.iloc[0]
        table.loc[b.name, "baseline"] = True
        b_ci = (float(b["Avg low"]), float(b["Avg high"]))
        for i, r in group.iterrows():
            if i != b.name and r["variant"] != "" and pd.notna(r["Avg"]):
                table.loc[i, "overlaps baseline"] = intervals_overlap(
                    (float(r["Avg low"]), float(r["Avg high"])), b_ci
                )


def _add_step_deltas(table: pd.DataFrame) -> None:
    """Roadmap: each row's Avg minus the previous row's, within a budget (ours and the paper's)."""
    table["Δ step"] = table.groupby("budget", sort=False)["Avg"].diff()
    table["paper Δ step"] = table.groupby("budget", sort=False)["paper Avg"].diff()


def comparison_table(artefact_name: str, variants: pd.DataFrame, with_paper: bool = True) -> pd.DataFrame:
    """The numeric table of one artefact (columns in the module docstring).

    Paper rows are listed for the budgets our variants belong to; a budget the paper has no panel for
    shows our variants alone.
    """
    artefact = ARTEFACTS[artefact_name]
    reference = paper_values(artefact_name) if with_paper else paper_values("none")
    budgets = list(dict.fromkeys(variants["budget"])) if len(variants) else []
    paper_order = list(dict.fromkeys(reference["panel"]))
    budgets.sort(key=lambda b: paper_order.index(b) if b in paper_order else len(paper_order))
    rows: list[dict] = []
    for budget in budgets:
        ours = variants[variants["budget"] == budget]
        rows.extend(budget_rows(artefact, budget, ours, reference[reference["panel"] == budget]))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    if artefact.by_depth:
        order = {b: i for i, b in enumerate(budgets)}
        table = table.sort_values(
            ["budget", "n_layers"], key=lambda c: c.map(order) if c.name == "budget" else c, kind="stable"
        )
    table["Δ Avg"] = table["Avg"] - table["paper Avg"] if "Avg" in table else math.nan
    _mark_baseline(table, artefact.baseline)
    if artefact.cumulative:
        _add_step_deltas(table)
    paper_task_cols = [f"paper {TASK_LABELS[t]}" for t in PAPER_ZERO_SHOT]
    if table[paper_task_cols].isna().all().all():
        table = table.drop(columns=paper_task_cols)
    if not with_paper:
        table = table.drop(columns=[c for c in table.columns if c.startswith("paper") or c == "Δ Avg"])
    return table.reset_index(drop=True)
