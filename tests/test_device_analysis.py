"""The device block in the analysis: Table 7's ratios (hand-calculated on synthetic records), the latency and
size columns of every ablation table that has them, the NSGA-II latency search's two objectives, and the
table7 sweep run end to end at smoke scale with the device stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ablations.job.config import compose_config, job_config
from analysis.artefacts import auto_select, latency_row
from analysis.compare import comparison_table
from analysis.latency import latency_table, relative_change
from analysis.records import load_records, records_frame
from analysis.render import to_markdown
from analysis.tables import generate
from analysis.variants import summarize_variants
from hydra_plugins.ablations_optuna_sweeper.optuna_sweeper import AblationsOptunaSweeper, _objectives
from tests.test_sweeps import run_multirun

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "analysis"
MODEL = {"dim": 48, "n_layers": 2, "n_heads": 3, "n_kv_heads": 1, "share_embeddings": True}
TABLE7 = {  # table7_model → (model fields, device blocks of its seeds)
    "mobilellm": (
        {"sharing_scheme": "none", "sharing_repeats": 1},
        [
            {"load_ms": 10.0, "init_ms": 90.0, "decode_ms": 4.0, "decode_tok_s": 250.0, "pte_bytes": 1000},
            {"load_ms": 10.0, "init_ms": 90.0, "decode_ms": 6.0, "decode_tok_s": 166.0, "pte_bytes": 1000},
        ],
    ),
    "mobilellm_ls": (
        {"sharing_scheme": "immediate", "sharing_repeats": 2},
        [{"load_ms": 11.0, "init_ms": 91.0, "decode_ms": 5.5, "decode_tok_s": 181.8, "pte_bytes": 1010}],
    ),
    "unshared_60l": (
        {"sharing_scheme": "none", "sharing_repeats": 1, "n_layers": 4},
        [{"load_ms": 20.0, "init_ms": 230.0, "decode_ms": 9.0, "decode_tok_s": 111.1, "pte_bytes": 2000}],
    ),
}


def write_record(run_dir: Path, name: str, axes: dict, model: dict, seed: int, device: dict | None) -> None:
    """A job's result.json as the job writes it (the device block as the device stage writes it)."""
    run_dir.mkdir(parents=True)
    record = {
        "schema": 1, "status": "complete", "name": name, "sweep": "table7", "axes": axes, "seed": seed,
        "config": {"model": MODEL | model}, "params": {"total": 250_000},
        "train": {"val_loss": 7.5, "val_bpb": 2.0},
        "device": None if device is None else {"quant": "none", "threads": 1, **device},
    }  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(record))


def table7_records(root: Path) -> pd.DataFrame:
    for key, (model, devices) in TABLE7.items():
        for seed, device in enumerate(devices):
            axes = {"budget": "125M", "table7_model": key}
            write_record(root / key / f"seed={seed}", f"table7_model={key}", axes, model, seed, device)
    return records_frame(load_records([root]))


def test_relative_change_gives_the_papers_percentages_from_its_times() -> None:
    # Table 7: (43.6 + 1388.2) / (39.2 + 1361.7) = 1.022; 16.0 / 15.6 = 1.026; 3416.3 / 1400.9; 29.0 / 15.6
    assert relative_change(43.6 + 1388.2, 39.2 + 1361.7) == pytest.approx(2.2, abs=0.05)
    assert relative_change(16.0, 15.6) == pytest.approx(2.6, abs=0.05)
    assert relative_change(68.6 + 3347.7, 39.2 + 1361.7) == pytest.approx(143.9, abs=0.05)
    assert relative_change(29.0, 15.6) == pytest.approx(85.9, abs=0.05)
    assert math.isnan(relative_change(1.0, 0.0)) and math.isnan(relative_change(math.nan, 1.0))


def test_table7_gives_each_models_change_to_mobilellm_beside_the_papers(tmp_path: Path) -> None:
    records = table7_records(tmp_path / "sweep")
    assert auto_select({"table7_model"}) == ["table7"]
    result = generate(records, tmp_path / "out", n_resamples=10)  # the artefact picked from the axes
    table = result.tables["table7"].set_index("row")
    base = table.loc["mobilellm"]
    assert bool(base["baseline"]) and base["execute ms"] == pytest.approx(5.0)  # seeds 4.0 and 6.0 pooled
    assert base["load+init ms"] == pytest.approx(100.0) and base["execute Δ%"] == pytest.approx(0.0)
    ls, deep = table.loc["mobilellm_ls"], table.loc["unshared_60l"]
    assert ls["load+init Δ%"] == pytest.approx(2.0)  # (11 + 91) / (10 + 90) = 1.02
    assert ls["execute Δ%"] == pytest.approx(10.0)  # 5.5 / 5.0
    assert ls["pte Δ%"] == pytest.approx(1.0)  # 1010 / 1000
    assert deep["load+init Δ%"] == pytest.approx(150.0)  # 250 / 100
    assert deep["execute Δ%"] == pytest.approx(80.0)  # 9.0 / 5.0
    assert deep["pte Δ%"] == pytest.approx(100.0)
    assert (ls["paper load+init Δ%"], ls["paper execute Δ%"]) == (2.2, 2.6)
    assert (deep["paper load+init Δ%"], deep["paper execute Δ%"]) == (143.0, 86.0)
    markdown = (tmp_path / "out" / "table7.md").read_text()
    assert "| +2.0 | +2.2 |" in markdown and "| +80.0 | +86.0 |" in markdown
    assert "quant none, 1 thread(s)" in markdown
    assert (tmp_path / "out" / "table7.tex").read_text().count("\\midrule") == 1


def test_table7_maps_models_from_their_config_without_the_axis() -> None:
    variants = pd.DataFrame(
        {
            "model/n_layers": [30, 30, 60, 30],
            "model/sharing_scheme": ["none", "immediate", "none", "none"],
            "model/sharing_repeats": [1, 2, 1, 2],
        }
    )
    assert latency_row(variants).tolist() == ["mobilellm", "mobilellm_ls", "unshared_60l", "mobilellm"]


def test_a_variant_without_a_device_block_is_listed_with_a_note(tmp_path: Path) -> None:
    table7_records(tmp_path / "sweep")
    write_record(tmp_path / "sweep" / "x", "untimed", {"budget": "125M"}, {"n_layers": 8}, 0, None)
    variants = summarize_variants(records_frame(load_records([tmp_path / "sweep"])), n_resamples=10)
    table = latency_table(variants).set_index("variant")
    assert math.isnan(table.loc["untimed", "execute Δ%"])
    assert "device.enabled=true" in table.loc["untimed", "note"]


def test_latency_and_size_columns_appear_where_records_have_a_device_block(tmp_path: Path) -> None:
    without = summarize_variants(records_frame(load_records([FIXTURES / "layer_sharing"])), n_resamples=10)
    assert not {"decode ms", "pte bytes"} & set(comparison_table("table2", without).columns)
    variants = summarize_variants(table7_records(tmp_path), n_resamples=10)
    table = comparison_table("table2", variants).set_index("variant")
    assert table.loc["table7_model=mobilellm", "decode ms"] == pytest.approx(5.0)
    assert table.loc["table7_model=mobilellm", "decode tok/s"] == pytest.approx(208.0)
    assert table.loc["table7_model=unshared_60l", "pte bytes"] == 2000
    markdown = to_markdown(comparison_table("table2", variants), "Table 2")
    assert "| Decode ms | Decode tok/s | Program MB |" in markdown and "| 5.00 | 208.0 | 0.00 |" in markdown


def test_a_device_measurement_that_is_not_a_number_makes_the_record_unreadable(tmp_path: Path) -> None:
    write_record(tmp_path / "a", "a", {}, {}, 0, {"decode_ms": "fast"})
    (row,) = load_records([tmp_path])
    assert row["status"] == "unreadable" and "`device.decode_ms` must be a number" in row["error"]


def test_the_latency_search_composes_and_reads_both_objectives_from_a_record() -> None:
    for scale in ("paper", "smoke"):
        cfg = compose_config(["+search=latency_125m", f"scale={scale}"])
        job = job_config(cfg)
        assert job.device.enabled and job.device.max_seq_len <= job.model.max_seq_len
        sweeper = cfg.hydra.sweeper
        assert list(sweeper.objectives) == ["val_loss", "device.decode_ms"] and sweeper.sampler == "nsga2"
        assert sweeper.max_params == (125_000_000 if scale == "paper" else 1_000_000)
    AblationsOptunaSweeper(objectives=["val_loss", "device.decode_ms"])  # accepted
    with pytest.raises(ValueError, match="dotted path"):
        AblationsOptunaSweeper(objectives=["decode ms"])
    record = {"train": {"val_loss": 6.25}, "params": {"total": 9}, "device": {"decode_ms": 3.5}}
    assert _objectives(record, ["val_loss", "device.decode_ms"]) == [6.25, 3.5]
    assert _objectives(record, ["params"]) == [9.0]
    assert _objectives({"train": {"val_loss": 6.25}}, ["val_loss", "device.decode_ms"]) is None
    assert _objectives(record | {"device": {"decode_ms": math.nan}}, ["device.decode_ms"]) is None


@pytest.mark.slow
def test_the_table7_sweep_with_the_device_stage_produces_the_table7_artefact(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["+sweep=table7", "scale=smoke", "eval=none", "device.warmup=1", "device.iterations=5"]
    ran = run_multirun([*args, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    records = records_frame(load_records([sweep_dir]))
    assert sorted(records["status"]) == ["complete"] * 3
    assert (records["result/device/iterations"] == 5).all() and (records["result/device/pte_bytes"] > 0).all()
    table = generate(records, tmp_path / "out", n_resamples=10).tables["table7"].set_index("row")
    assert bool(table.loc["mobilellm", "baseline"]) and table.loc["mobilellm", "execute Δ%"] == 0
    # the LS program stores its blocks once: about the baseline's size; 4 unshared layers store twice the blocks
    assert abs(table.loc["mobilellm_ls", "pte Δ%"]) < 2.0
    assert table.loc["unshared_60l", "pte Δ%"] > 10.0
    assert table[["load+init Δ%", "execute Δ%"]].notna().all().all()
    assert "Table 7" in (tmp_path / "out" / "table7.md").read_text()
