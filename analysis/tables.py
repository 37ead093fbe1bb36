"""Generate the paper's tables and figures from a sweep's result records.

    python -m analysis.tables multirun/2025-01-01/12-00-00            # a sweep dir (searched recursively)
    python -m analysis.tables 'outputs/**/result.json' --table table2 fig4 --out paper_tables
    python -m analysis.tables SWEEP --wandb-group layer_sharing          # also log to W&B

Writes to `--out` (default `<first source dir>/analysis`, else `./analysis_out`):
`records.csv/.parquet` (one row per record), `variants.csv/.parquet` (one row per variant, with scores
and intervals), `<artefact>.md/.tex/.csv` per table (`table7`: on-device times relative to the baseline,
from records with a `device` block) and `<artefact>.png/.svg` per figure (the figures'
data also as a table). Without `--table`, artefacts are picked from the sweep's axes
(`analysis.artefacts.auto_select`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.artefacts import ARTEFACTS, auto_select
from analysis.bootstrap import N_RESAMPLES
from analysis.compare import comparison_table
from analysis.figures import depth_figure, heads_figure, write_figure
from analysis.latency import latency_table
from analysis.records import load_records, records_frame, save_frame
from analysis.render import to_markdown, write_table
from analysis.variants import summarize_variants
from analysis.wandb_io import log_artefacts, records_from_wandb


@dataclass
class Generated:
    """What one call of `generate` produced."""

    records: pd.DataFrame
    variants: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def sweep_axes(records: pd.DataFrame) -> set[str]:
    """Axes (without the `axes/` prefix) that take more than one value across the records."""
    return {
        c.removeprefix("axes/")
        for c in records.columns
        if c.startswith("axes/") and records[c].astype(str).nunique() > 1
    }


def generate(
    records: pd.DataFrame,
    out_dir: Path,
    artefacts: list[str] | None = None,
    with_paper: bool = True,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Generated:
    """Summarise `records` into variants and write every requested artefact under `out_dir`."""
    variants = summarize_variants(records, n_resamples, seed)
    result = Generated(records, variants)
    result.files += save_frame(records, out_dir, "records") + save_frame(variants, out_dir, "variants")
    for name in artefacts or auto_select(sweep_axes(records)):
        artefact = ARTEFACTS[name]
        if artefact.latency:
            table = latency_table(variants, with_paper)
        else:
            table = comparison_table(name, variants, with_paper)
        result.tables[name] = table
        if not table.empty:
            result.files += write_table(table, artefact.title, out_dir, name)
        if artefact.figure:
            fig = depth_figure(variants, with_paper) if name == "fig4" else heads_figure(variants)
            paths = write_figure(fig, out_dir, name)
            result.figures[name] = paths[0]
            result.files += paths
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="*", help="sweep dirs, result.json files or globs")
    parser.add_argument("--out", type=Path, help="output dir (default <first source dir>/analysis)")
    parser.add_argument(
        "--table", nargs="+", choices=sorted(ARTEFACTS), help="artefacts (default: from the axes)"
    )
    parser.add_argument("--no-paper", action="store_true", help="omit the paper's values and Δ")
    parser.add_argument("--bootstrap", type=int, default=N_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--wandb-group", help="log tables and figures to this W&B group")
    parser.add_argument("--wandb-project", help="W&B project (default mobilellm-ablations)")
    parser.add_argument("--from-wandb", metavar="ENTITY/PROJECT", help="also read runs from the W&B API")
    args = parser.parse_args(argv)

    records = load_records(args.sources)
    if args.from_wandb:
        records += records_from_wandb(args.from_wandb, args.wandb_group)
    if not records:
        parser.error(f"no result.json found under {args.sources}")
    first_dir = next((Path(s) for s in args.sources if Path(s).is_dir()), None)
    out_dir = args.out or (first_dir / "analysis" if first_dir else Path("analysis_out"))
    result = generate(
        records_frame(records), out_dir, args.table, not args.no_paper, args.bootstrap, args.seed
    )
    for name, table in result.tables.items():
        if not table.empty:
            print(to_markdown(table, ARTEFACTS[name].title))
    if args.wandb_group:
        log_artefacts(args.wandb_group, result.tables, result.figures, args.wandb_project, out_dir)
    counts = result.variants["status"].value_counts().to_dict()
    print(
        f"{len(records)} records, {len(result.variants)} variants {counts}; wrote {len(result.files)} files to {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
