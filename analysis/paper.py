"""The paper's published values (shipped as `analysis/paper_reference/paper_values.csv`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

PAPER_VALUES = Path(__file__).with_name("paper_reference") / "paper_values.csv"


@cache
def _paper_values() -> pd.DataFrame:
    return pd.read_csv(PAPER_VALUES, dtype={"panel": str, "row": str})


def paper_values(artefact: str | None = None) -> pd.DataFrame:
    """Rows of one artefact (`table1`, `table2`, `table3`, `ffn`, `fig4`, `roadmap`, `table7`), or all, in paper order.

    Accuracies are percentages as printed; NaN where the paper's value is not recovered.
    """
    frame = _paper_values()
    if artefact is not None:
        frame = frame[frame["artefact"] == artefact]
    return frame.reset_index(drop=True).copy()
