"""A comparison table (see `analysis.compare`) or Table 7 (`analysis.latency`) → Markdown, LaTeX (booktabs)
and CSV.

Markdown and LaTeX show the paper's layout: percentages with one decimal, the average with its 95%
interval, the paper's average and Δ, decode latency and program size where measured; Table 7 shows load,
init and execute times and their change to the baseline beside the paper's; `—` marks a missing value. A `†` on the average marks a row whose
interval overlaps the baseline's. Notes (why a variant failed, which rows the paper has and we lack)
follow the table. The CSV keeps every numeric column unformatted.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablations.eval.tasks import PAPER_ZERO_SHOT
from analysis.latency import LOAD_INIT
from analysis.records import TASK_LABELS

MISSING = "—"
OVERLAP_MARK = "†"


def _pct(value: object) -> str:
    return f"{float(value):.1f}" if value is not None and pd.notna(value) else MISSING


def _signed(value: object) -> str:
    return f"{float(value):+.1f}" if value is not None and pd.notna(value) else MISSING


def _params(millions: object) -> str:
    if millions is None or pd.isna(millions):
        return MISSING
    m = float(millions)
    return f"{m:.1f}M" if m >= 1 else f"{m * 1e3:.0f}K"


def _number(value: object, digits: int) -> str:
    return f"{float(value):.{digits}f}" if value is not None and pd.notna(value) else MISSING


def _megabytes(value: object) -> str:
    return f"{float(value) / 1e6:.2f}" if value is not None and pd.notna(value) else MISSING


def _avg_cell(row: pd.Series) -> str:
    if pd.isna(row.get("Avg")):
        return MISSING
    cell = _pct(row["Avg"])
    low, high = row.get("Avg low"), row.get("Avg high")
    if low is not None and pd.notna(low) and pd.notna(high):
        cell += f" [{float(low):.1f}, {float(high):.1f}]"
    if row.get("overlaps baseline") is True:
        cell += OVERLAP_MARK
    return cell


def _bpb_cell(row: pd.Series) -> str:
    if pd.isna(row.get("val bpb")):
        return MISSING
    low, high = row.get("val bpb low"), row.get("val bpb high")
    interval = f" [{float(low):.4f}, {float(high):.4f}]" if pd.notna(low) and pd.notna(high) else ""
    return f"{float(row['val bpb']):.4f}{interval}"


def _measured(table: pd.DataFrame, column: str) -> bool:
    return column in table and table[column].notna().any()


def _identity_cells(r: pd.Series) -> dict[str, object]:
    """The cells every formatted table starts with: budget, model (baseline marked), variant, status, params."""
    label = r["label"] + (" (baseline)" if r.get("baseline") is True else "")
    return {
        "Budget": r["budget"],
        "Model": label,
        "Variant": r["variant"] or MISSING,
        "Status": r["status"],
        "Params": _params(r.get("params_m")),
    }


def latency_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Table 7 formatted: times in ms, the program in MB, each change to the baseline beside the paper's."""
    rows = []
    has_paper = "paper execute ms" in table
    for _, r in table.iterrows():
        row = _identity_cells(r)
        row["Program MB"] = _megabytes(r.get("pte bytes"))
        row["Program Δ%"] = _signed(r.get("pte Δ%"))
        row["Load ms"], row["Init ms"] = _number(r.get("load ms"), 1), _number(r.get("init ms"), 1)
        row["Load+init Δ%"] = _signed(r.get("load+init Δ%"))
        if has_paper:
            row["Paper load+init Δ%"] = _signed(r.get("paper load+init Δ%"))
        row["Execute ms"] = _number(r.get("execute ms"), 2)
        row["Execute Δ%"] = _signed(r.get("execute Δ%"))
        if has_paper:
            row["Paper execute Δ%"] = _signed(r.get("paper execute Δ%"))
        row["Decode tok/s"] = _number(r.get("decode tok/s"), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def display_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The formatted table shown in Markdown and LaTeX (strings, paper column order); validation bits per
    byte, decode latency and program size where the records have them. Table 7 (`latency_frame`) has its own."""
    if LOAD_INIT in table:
        return latency_frame(table)
    rows = []
    has_paper = "paper Avg" in table
    has_bpb = _measured(table, "val bpb")
    has_device = _measured(table, "decode ms")
    for _, r in table.iterrows():
        row = _identity_cells(r)
        if has_bpb:
            row["Val bpb [95% CI]"] = _bpb_cell(r)
        if has_device:
            row["Decode ms"] = _number(r.get("decode ms"), 2)
            row["Decode tok/s"] = _number(r.get("decode tok/s"), 1)
            row["Program MB"] = _megabytes(r.get("pte bytes"))
        row.update({TASK_LABELS[t]: _pct(r.get(TASK_LABELS[t])) for t in PAPER_ZERO_SHOT})
        row["Avg [95% CI]"] = _avg_cell(r)
        if has_paper:
            row["Paper Avg"] = _pct(r["paper Avg"])
            row["Δ"] = _signed(r.get("Δ Avg"))
        if "Δ step" in table:
            row["Δ step"] = _signed(r["Δ step"])
            if has_paper:
                row["Paper Δ step"] = _signed(r["paper Δ step"])
        rows.append(row)
    return pd.DataFrame(rows)


def notes(table: pd.DataFrame) -> list[str]:
    """The lines under a table: the overlap mark, interval sources, missing rows, failed variants."""
    lines = []
    if table.get("overlaps baseline", pd.Series(dtype=object)).eq(True).any():
        lines.append(f"{OVERLAP_MARK} 95% interval overlaps the baseline's: the difference is not resolved.")
    sources = sorted(
        {s for s in table.get("ci_source", pd.Series(dtype=object)).dropna() if s and s != "none"}
    )
    if sources:
        lines.append(
            "Intervals: " + ", ".join(sources) + " (seeds: t over seeds; bootstrap: over documents)."
        )
    if LOAD_INIT in table:
        measured = table.dropna(subset=["quant", "threads"])
        settings = sorted(
            {
                f"quant {q}, {int(t)} thread(s)"
                for q, t in zip(measured["quant"], measured["threads"], strict=True)
            }
        )
        lines.append(
            "Δ%: change to the baseline; load+init = program load + method init, execute = one decode step. "
            f"Measured with ExecuTorch (XNNPACK) at {'; '.join(settings) or 'no device block'}: the times are "
            "this machine's, the ratios compare with the paper's (iPhone 13, MPS, fp16, mean of 50 runs)."
        )
    missing = table[table["status"] == "not run"]
    if len(missing):
        lines.append("Not run: " + "; ".join(f"{r.budget} {r.label}" for r in missing.itertuples()) + ".")
    for r in table[table["note"].astype(str) != ""].itertuples():
        lines.append(f"{r.variant}: {r.status}: {r.note}")
    return lines


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """A pipe table with a `### title` heading and the notes as a list."""
    shown = display_frame(table)
    header = "| " + " | ".join(shown.columns) + " |"
    align = (
        "|"
        + "|".join("---" if c in ("Budget", "Model", "Variant", "Status") else "---:" for c in shown.columns)
        + "|"
    )
    body = [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
        for row in shown.itertuples(index=False)
    ]
    lines = [f"### {title}", "", header, align, *body]
    if extra := notes(table):
        lines += ["", *(f"- {line}" for line in extra)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}",
                  "Δ": r"$\Delta$", "†": r"$^\dagger$", "—": "--", "→": r"$\to$", "×": r"$\times$",
                  "−": "-", "≈": r"$\approx$"}  # fmt: skip


def latex_escape(text: str) -> str:
    """Text safe for LaTeX (special characters and the few Unicode symbols the tables use)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, title: str) -> str:
    """A booktabs `table` environment (pandas `to_latex`), notes in the caption."""
    shown = display_frame(table).drop(columns=["Variant"])
    shown = shown.map(latex_escape).rename(columns=latex_escape)
    caption = latex_escape(" ".join([title + ".", *notes(table)]))
    return shown.to_latex(
        index=False, escape=False, caption=caption, column_format="lll" + "r" * (shown.shape[1] - 3)
    )


def write_table(table: pd.DataFrame, title: str, out_dir: Path, stem: str) -> list[Path]:
    """Write `<stem>.md`, `<stem>.tex` and `<stem>.csv` (numeric, unformatted)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.md", out_dir / f"{stem}.tex", out_dir / f"{stem}.csv"]
    paths[0].write_text(to_markdown(table, title))
    paths[1].write_text(to_latex(table, title))
    table.to_csv(paths[2], index=False, float_format="%.4f")
    return paths
