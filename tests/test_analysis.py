"""analysis/: records → DataFrame, intervals, paper reference data, generated tables and figures, W&B.

Fixture sweeps (made-up scores, every job status) live in tests/fixtures/analysis/<sweep>/ (written by
make_fixtures.py); the generated tables are compared with tests/fixtures/analysis/golden/. After an
intended change of the output, regenerate the goldens with `UPDATE_GOLDEN=1 pytest tests/test_analysis.py`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from ablations.eval.tasks import PAPER_ZERO_SHOT
from analysis.artefacts import auto_select, embedding_row, roadmap_step, sharing_row
from analysis.bootstrap import bootstrap_intervals, intervals_overlap, seed_interval
from analysis.compare import comparison_table
from analysis.figures import PANEL_SIZE_PX, depth_figure, heads_figure, write_figure
from analysis.paper import paper_values
from analysis.records import load_records, records_frame
from analysis.tables import generate, main, sweep_axes
from analysis.variants import budget_label, summarize_variants

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "analysis"
GOLDEN = FIXTURES / "golden"


def task_mean(row: pd.Series) -> float:
    """Mean of a paper row's eight task columns (the paper's "Avg."); NaN unless all eight are given."""
    return float(row[list(PAPER_ZERO_SHOT)].astype(float).mean(skipna=False))


def fixture_records(sweep: str) -> pd.DataFrame:
    return records_frame(load_records([FIXTURES / sweep]))


def test_records_frame_flattens_config_and_keeps_every_status() -> None:
    records = fixture_records("layer_sharing")
    assert len(records) == 6
    assert sorted(records["status"]) == ["complete"] * 4 + ["failed", "running"]
    assert set(records["model/sharing_scheme"]) == {"none", "immediate", "repeat_all_over", "reverse"}
    assert records["model/dim"].eq(128).all()
    done = records[records["status"] == "complete"]
    assert done["result/eval/arc_easy/acc"].between(0, 1).all()
    assert records.loc[records["status"] == "failed", "result/eval/arc_easy/acc"].isna().all()


def test_variants_pool_seeds_and_explain_partial_records() -> None:
    variants = summarize_variants(fixture_records("layer_sharing"), n_resamples=200).set_index("variant")
    assert variants.loc["none", "ci_source"] == "seeds" and variants.loc["none", "seeds"] == "0,1"
    assert variants.loc["immediate", "ci_source"] == "bootstrap"
    assert variants.loc["immediate", "status"] == "partial"
    assert "running" in variants.loc["immediate", "error"]
    assert variants.loc["repeat_all_over", "ci_source"] == "stderr"
    assert variants.loc["reverse", "status"] == "failed"
    assert "diverged" in variants.loc["reverse", "error"]
    assert math.isnan(variants.loc["reverse", "avg"])
    depth = summarize_variants(fixture_records("depth"), n_resamples=200).set_index("variant")
    assert depth.loc["350M-L16", "status"] == "partial" and depth.loc["350M-L16", "n_tasks"] == 6
    assert math.isnan(depth.loc["350M-L16", "avg"])


def test_average_is_the_mean_of_the_paper_metrics() -> None:
    """Our Avg equals the record's own paper_avg (written independently by the eval job)."""
    records = fixture_records("depth")
    variants = summarize_variants(records, n_resamples=100).set_index("variant")
    for _, record in records.dropna(subset=["result/eval/paper_avg"]).iterrows():
        if record["name"] != "350M-L16":
            assert variants.loc[record["name"], "avg"] == pytest.approx(100 * record["result/eval/paper_avg"])


@pytest.mark.parametrize(
    ("sweep", "artefact"), [("layer_sharing", "table2"), ("layer_sharing", "table3"), ("depth", "fig4")]
)
def test_generated_tables_equal_golden_files(sweep: str, artefact: str, tmp_path: Path) -> None:
    generate(fixture_records(sweep), tmp_path, [artefact])
    for suffix in ("md", "csv"):
        produced = (tmp_path / f"{artefact}.{suffix}").read_text()
        golden = GOLDEN / f"{sweep}_{artefact}.{suffix}"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(produced)
        assert produced == golden.read_text(), f"{golden} differs (UPDATE_GOLDEN=1 to accept)"


def test_table_marks_missing_rows_failed_variants_and_overlaps() -> None:
    variants = summarize_variants(fixture_records("layer_sharing"), n_resamples=200)
    table3 = comparison_table("table3", variants).set_index("label", drop=False)
    assert table3.loc["OPT-125M", "status"] == "not run"
    assert table3.loc["OPT-125M", "paper Avg"] == pytest.approx(42.6)
    table2 = comparison_table("table2", variants).set_index("variant")
    assert table2.loc["reverse", "status"] == "failed"
    assert bool(table2.loc["none", "baseline"])
    assert table2.loc["repeat_all_over", "paper Avg"] == pytest.approx(45.2)
    assert table2.loc["repeat_all_over", "Δ Avg"] == pytest.approx(
        table2.loc["repeat_all_over", "Avg"] - 45.2
    )
    expected = intervals_overlap(
        (table2.loc["immediate", "Avg low"], table2.loc["immediate", "Avg high"]),
        (table2.loc["none", "Avg low"], table2.loc["none", "Avg high"]),
    )
    assert bool(table2.loc["immediate", "overlaps baseline"]) == expected
    assert "paper Avg" not in comparison_table("table2", variants, with_paper=False)


def test_figures_render_png_of_the_right_size(tmp_path: Path) -> None:
    width, height = PANEL_SIZE_PX
    depth = summarize_variants(fixture_records("depth"), n_resamples=100)
    png, svg = write_figure(depth_figure(depth), tmp_path, "fig4")
    assert matplotlib.image.imread(png).shape[:2] == (height, 2 * width)  # panels 125M and 350M
    assert svg.read_text().lstrip().startswith("<?xml")
    heads = depth.assign(**{"model/n_kv_heads": [1, 2, 4, 1, 2, 4]})
    png, _ = write_figure(heads_figure(heads), tmp_path, "fig5")
    assert matplotlib.image.imread(png).shape[:2] == (height, 2 * width)


def test_paper_reference_reproduces_the_papers_averages() -> None:
    table3 = paper_values("table3").set_index("label")
    assert round(task_mean(table3.loc["MobileLLM-125M"]), 1) == 46.3
    assert round(task_mean(table3.loc["MobileLLM-LS-125M"]), 1) == 47.0
    assert round(task_mean(table3.loc["MobileLLM-350M"]), 1) == 51.3
    for label, row in table3.iterrows():  # printed values are rounded: mean and Avg agree to 0.1
        assert abs(task_mean(row) - row["avg"]) <= 0.1, label
    roadmap = paper_values("roadmap").set_index(["panel", "row"])["avg"]
    assert roadmap["125M", "swiglu"] - roadmap["125M", "baseline"] == pytest.approx(1.3)  # §2.2.1
    assert paper_values("table1")["avg"].tolist() == [44.8, 44.6, 45.0]


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    """For n = 4000 Bernoulli outcomes the percentile bootstrap ≈ p ± 1.96·√(p(1−p)/n)."""
    rng = np.random.default_rng(1)
    a, b = (rng.random(4000) < 0.3).astype(float), (rng.random(3000) < 0.6).astype(float)
    per_task, average = bootstrap_intervals({"a": a, "b": b}, n_resamples=4000, seed=0)
    half_a = 1.96 * math.sqrt(a.mean() * (1 - a.mean()) / len(a))
    assert per_task["a"] == pytest.approx((a.mean() - half_a, a.mean() + half_a), abs=0.002)
    se_avg = math.sqrt(a.var() / len(a) + b.var() / len(b)) / 2
    mid = (a.mean() + b.mean()) / 2
    assert average == pytest.approx((mid - 1.96 * se_avg, mid + 1.96 * se_avg), abs=0.002)


def test_seed_interval_is_the_student_t_interval() -> None:
    values = np.array([0.40, 0.50, 0.45])
    half = 4.302652729911275 * values.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2} from tables
    assert seed_interval(values) == pytest.approx((0.45 - half, 0.45 + half))
    assert all(math.isnan(x) for x in seed_interval(np.array([0.4])))


def test_row_mappings_follow_the_config() -> None:
    table1 = pd.DataFrame({"model/share_embeddings": [False, True, True], "model/n_layers": [6, 6, 8]})
    assert embedding_row(table1).tolist() == ["untied_30l", "tied_30l", "tied_deeper"]
    table2 = pd.DataFrame(
        {"model/sharing_scheme": ["none", "reverse", "immediate"], "model/sharing_repeats": [1, 2, 1]}
    )
    assert sharing_row(table2).tolist() == ["none", "reverse", "none"]
    steps = pd.DataFrame(
        {
            "model/ffn_type": ["relu", "swiglu", "swiglu", "swiglu", "swiglu", "swiglu"],
            "model/n_layers": [4, 4, 8, 8, 8, 8],
            "model/share_embeddings": [False, False, False, True, True, True],
            "model/n_heads": [4, 4, 4, 4, 4, 4],
            "model/n_kv_heads": [4, 4, 4, 4, 2, 2],
            "model/sharing_scheme": ["none"] * 5 + ["immediate"],
            "model/sharing_repeats": [1] * 5 + [2],
        }
    )
    assert roadmap_step(steps).tolist() == ["baseline", "swiglu", "deeper", "emb_share", "gqa", "layer_share"]
    assert budget_label(pd.Series({"params/total": 124_635_456})) == "125M"
    assert budget_label(pd.Series({"params/total": 1_300_000})) == "1.3M"
    assert budget_label(pd.Series({"params/total": 1_300_000, "axes/budget": "350M"})) == "350M"


def test_cli_picks_artefacts_from_the_axes_and_writes_everything(tmp_path: Path) -> None:
    assert sweep_axes(fixture_records("layer_sharing")) == {"sharing_scheme"}
    assert auto_select({"sharing_scheme"}) == ["table2"] and auto_select(set()) == ["table3"]
    assert main([str(FIXTURES / "depth"), "--out", str(tmp_path), "--bootstrap", "100"]) == 0
    for name in (
        "records.csv",
        "records.parquet",
        "variants.csv",
        "fig4.md",
        "fig4.tex",
        "fig4.png",
        "fig4.svg",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "\\toprule" in (tmp_path / "fig4.tex").read_text()
    assert len(pd.read_parquet(tmp_path / "records.parquet")) == 6


def test_wandb_offline_logging_writes_a_finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from analysis.wandb_io import log_artefacts

    result = generate(fixture_records("depth"), tmp_path / "out", ["fig4"], n_resamples=100)
    run_dir = Path(log_artefacts("depth-test", result.tables, result.figures, "test-project", tmp_path))
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and run_dir.parent == offline_runs[0]
    assert list(offline_runs[0].glob("*.wandb"))
    assert list(run_dir.glob("media/table/analysis/fig4_*.table.json"))
    assert list(run_dir.glob("media/images/analysis/fig4_*.png"))
    import wandb

    assert wandb.run is None  # finished
    assert "finishing run" in (offline_runs[0] / "logs" / "debug.log").read_text()


def test_unreadable_and_metricless_records_appear_with_their_status(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "result.json").write_text("{truncated")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "result.json").write_text(
        '{"schema": 1, "status": "running", "name": "r", "eval": null}'
    )
    result = generate(
        records_frame(load_records([tmp_path])), tmp_path / "out", ["table2", "fig4"], n_resamples=10
    )
    for table in result.tables.values():
        assert sorted(table["status"]) == ["running", "unreadable"]
    assert (tmp_path / "out" / "fig4.png").is_file()


def test_the_job_configs_top_level_keys_never_mask_the_records_name() -> None:
    from analysis.records import record_row

    record = {"status": "complete", "name": "sharing_scheme=reverse", "sweep": "layer_sharing", "seed": 1,
              "config": {"name": None, "sweep": None, "seed": 0, "model": {"dim": 64}}}  # fmt: skip
    row = record_row(record)
    assert (row["name"], row["sweep"], row["seed"], row["model/dim"]) == (
        "sharing_scheme=reverse",
        "layer_sharing",
        1,
        64,
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"schema": 1, "status": "complete", "eval": "garbage"}',
        '{"schema": 1, "status": "complete", "axes": [1, 2]}',
        '{"schema": 1, "status": ["complete"]}',
        '{"schema": 1, "status": "complete", "eval": {"tasks": {"piqa": {"acc": "high"}}}}',
    ],
)
def test_a_record_of_the_wrong_structure_is_named_unreadable_and_the_table_is_built(
    body: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text(body)
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "result.json").write_text('{"schema": 1, "status": "running", "name": "ok"}')
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--table", "table2"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'bad' / 'result.json'}: `" in out
    frame = records_frame(load_records([tmp_path]))
    assert sorted(frame["status"]) == ["running", "unreadable"]
