"""Table 7: each variant's on-device cost relative to the baseline variant, beside the paper's.

The paper (Table 7, iPhone 13, ExecuTorch + MPS, fp16) measures load, init and execute time of MobileLLM-125M,
MobileLLM-LS-125M and a 60-layer unshared model, and states the ratios to MobileLLM-125M: LS costs +2.2%
load+init and +2.6% execute; the 60-layer model +143% and +86%. Ours come from the `device` block of each
record (`python run.py ... device.enabled=true`): load+init = `load_ms` + `init_ms`, execute = `decode_ms`
(one decode step), and the program's size `pte_bytes`. Absolute times are the machine's own; the ratios are
what carries over to a phone.

`latency_table` returns the numeric table (what the CSV holds); columns:
- `budget`, `row`, `label`, `variant`, `status`, `note`, `seeds`, `params_m`, `n_layers`, `quant`, `threads`
- `load ms`, `init ms`, `load+init ms`, `execute ms`, `decode tok/s`, `pte bytes`
- `load+init Δ%`, `execute Δ%`, `pte Δ%`: `relative_change` to the budget's baseline row (`mobilellm`)
- `paper load ms`, `paper init ms`, `paper execute ms`, `paper load+init Δ%`, `paper execute Δ%`
- `baseline`: the row the others are compared with
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.artefacts import ARTEFACTS
from analysis.compare import budget_rows, variant_cells
from analysis.paper import paper_values

ARTEFACT = "table7"
LOAD_INIT = "load+init ms"
MEASURED = {  # table column → variants column (`analysis.variants`)
    "load ms": "device/load_ms",
    "init ms": "device/init_ms",
    "execute ms": "device/decode_ms",
    "decode tok/s": "device/decode_tok_s",
    "pte bytes": "device/pte_bytes",
}
CHANGES = {"load+init Δ%": LOAD_INIT, "execute Δ%": "execute ms", "pte Δ%": "pte bytes"}
PAPER = {
    "paper load ms": "load_ms",
    "paper init ms": "init_ms",
    "paper execute ms": "execute_ms",
    "paper load+init Δ%": "load_init_change_pct",
    "paper execute Δ%": "execute_change_pct",
}


def relative_change(value: float, baseline: float) -> float:
    """How much more `value` costs than `baseline`, in percent (+2.2: 1.022 × the baseline); NaN where either
    is missing or the baseline is not positive."""
    if not (math.isfinite(value) and math.isfinite(baseline)) or baseline <= 0:
        return math.nan
    return 100.0 * (value / baseline - 1.0)


def _number(value: object) -> float:
    return float(value) if value is not None and pd.notna(value) else math.nan  # type: ignore[arg-type]


def _our_row(variant: pd.Series, key: str | None, paper: pd.Series | None) -> dict[str, object]:
    params = _number(variant.get("params/total"))
    measured = {column: _number(variant.get(source)) for column, source in MEASURED.items()}
    notes = [variant["error"]] if isinstance(variant.get("error"), str) else []
    if variant.get("n_complete", 0) and math.isnan(measured["execute ms"]):
        notes.insert(0, "no device block: run the job with device.enabled=true")
    row: dict[str, object] = {
        **variant_cells(variant, key, paper),
        "note": "; ".join(notes),
        "seeds": variant.get("seeds", ""),
        "params_m": params / 1e6,
        "n_layers": variant.get("model/n_layers", math.nan),
        "quant": variant.get("device/quant"),
        "threads": variant.get("device/threads"),
        **measured,
        LOAD_INIT: measured["load ms"] + measured["init ms"],
    }
    return row | _paper_cells(paper)


def _paper_cells(paper: pd.Series | None) -> dict[str, object]:
    return {
        column: _number(paper[source]) if paper is not None else math.nan for column, source in PAPER.items()
    }


def _missing_row(budget: str, paper: pd.Series) -> dict[str, object]:
    row = {"budget": budget, "row": paper["row"], "label": paper["label"], "variant": "", "status": "not run"}
    return row | {"note": "", "n_layers": paper["n_layers"]} | _paper_cells(paper)


def _add_changes(table: pd.DataFrame) -> None:
    """Each row's Δ% to its budget's baseline: the first measured variant of the baseline row."""
    table["baseline"] = False
    for column in CHANGES:
        table[column] = math.nan
    baseline_key = ARTEFACTS[ARTEFACT].baseline
    for _, group in table.groupby("budget", sort=False):
        base = group[(group["row"] == baseline_key) & group["execute ms"].notna()]
        if base.empty:
            continue
        table.loc[base.index[0], "baseline"] = True
        for i, r in group.iterrows():
            if r["variant"] != "":
                for column, source in CHANGES.items():
                    table.loc[i, column] = relative_change(float(r[source]), float(base.iloc[0][source]))


def latency_table(variants: pd.DataFrame, with_paper: bool = True) -> pd.DataFrame:
    """The numeric Table 7 (columns in the module docstring), budget by budget in the paper's order."""
    reference = paper_values(ARTEFACT if with_paper else "none")
    budgets = list(dict.fromkeys(variants["budget"])) if len(variants) else []
    paper_order = list(dict.fromkeys(reference["panel"]))
    budgets.sort(key=lambda b: paper_order.index(b) if b in paper_order else len(paper_order))
    rows: list[dict[str, object]] = []
    for budget in budgets:
        ours = variants[variants["budget"] == budget]
        rows.extend(
            budget_rows(
                ARTEFACTS[ARTEFACT],
                budget,
                ours,
                reference[reference["panel"] == budget],
                _our_row,
                _missing_row,
            )
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    _add_changes(table)
    if not with_paper:
        table = table.drop(columns=list(PAPER))
    return table.reset_index(drop=True)
