"""Paper ablation sweeps: every variant composes at paper and smoke scale with the paper's shapes; a smoke
multirun runs end to end as a subprocess, records a failing variant without stopping, and a re-run skips."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablations.job.config import compose_config, job_config
from ablations.model.counts import count_params
from ablations.search.sweep import skip_reason

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (REPO / "sweeps" / "sweep").glob("*.yaml"))


def variants(sweep: str, scale: str, *fixed: str) -> list[list[str]]:
    """Every variant's overrides: the cartesian product of the sweep's `hydra.sweeper.params` (without the
    seed sweep: seeds train the same model), the axes given in `fixed` held at their value."""
    cfg = compose_config([f"+sweep={sweep}", f"scale={scale}"])
    held = {o.split("=")[0] for o in fixed}
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items() if k not in {"seed", *held}}
    return [
        [
            f"+sweep={sweep}",
            f"scale={scale}",
            *fixed,
            *(f"{k}={v}" for k, v in zip(params, values, strict=True)),
        ]
        for values in itertools.product(*params.values())
    ]


def model_of(overrides: list[str]):
    cfg = compose_config(overrides)
    return cfg, job_config(cfg).model


def test_the_paper_tables_and_figures_each_have_a_sweep() -> None:
    assert set(SWEEPS) == {
        "depth_width",
        "emb_share",
        "lr",
        "heads_kv",
        "ffn_type",
        "final",
        "layer_sharing",
        "roadmap",
        "table7",
    }


@pytest.mark.parametrize("sweep", SWEEPS)
@pytest.mark.parametrize("scale", ["paper", "smoke", "proxy_cpu", "proxy_gpu"])
def test_every_variant_composes_to_a_valid_model_or_a_logged_skip(sweep: str, scale: str) -> None:
    seen = 0
    every = variants(sweep, scale)
    for overrides in every if scale == "paper" else every[:: max(1, len(every) // 6)]:
        cfg = compose_config(overrides)
        if skip_reason(cfg) is not None:
            continue
        model = job_config(cfg).model
        seen += 1
        assert cfg.sweep == sweep and cfg.axes.budget
        if scale == "smoke":
            assert cfg.trainer.accelerator == "cpu" and cfg.train.tokens <= 4096 and model.vocab_size == 4096
            assert count_params(model).total < 10_000_000
        elif scale == "proxy_cpu":  # the paper's depths at widths ÷ 8 (head_dim 8): ~2M parameters at 125M
            assert cfg.trainer.accelerator == "cpu" and model.vocab_size == 4096 and model.max_seq_len == 256
            assert model.head_dim % 2 == 0 and model.head_dim <= 16 and cfg.train.tokens == 1_228_800
            stored = 2 if cfg.axes.get("table7_model") == "unshared_60l" else 1  # Table 7: twice the blocks
            assert cfg.axes.budget != "125M" or 1_000_000 < count_params(model).total < 3_000_000 * stored
        elif scale == "proxy_gpu":  # widths ÷ 2, bf16 on one GPU: ~30M parameters at 125M
            assert (
                cfg.trainer.accelerator == "gpu"
                and model.vocab_size == 16000
                and cfg.train.tokens == 500_170_752
            )
            assert cfg.axes.budget != "125M" or 20_000_000 < count_params(model).total < 60_000_000
        else:
            assert (
                cfg.train.tokens >= 251_658_240_000
                and model.vocab_size == 32000
                and model.max_seq_len == 2048
            )
    assert seen >= 2


@pytest.mark.parametrize(
    ("budget", "reference", "points"),
    [
        ("125M", 30, {12: 768, 30: 512, 62: 384}),
        ("350M", 32, {5: 2048, 15: 1280, 32: 896, 66: 640}),
    ],
)
def test_depth_width_solves_the_papers_widths_within_the_budget(
    budget: str, reference: int, points: dict
) -> None:
    totals, reference_total, depths = [], None, []
    for overrides in variants("depth_width", "paper", f"axes.budget={budget}"):
        cfg, model = model_of(overrides)
        if skip_reason(cfg) is not None:  # the other budget's depths
            continue
        totals.append(count_params(model).total)
        depths.append(model.n_layers)
        if model.n_layers == reference:
            reference_total = totals[-1]
        if model.n_layers in points:
            assert model.dim == points[model.n_layers], (model.n_layers, model.dim)
        assert model.head_dim == 64 and model.n_heads == model.n_kv_heads  # MHA, head_dim kept
    assert all(abs(t - reference_total) / reference_total < 0.06 for t in totals), totals  # within 6%
    assert len(depths) == (9 if budget == "125M" else 10)  # the paper's points of Figure 4


@pytest.mark.parametrize("scale", ["smoke", "proxy_cpu"])
def test_depth_width_keeps_the_depth_axis_at_every_scale(scale: str) -> None:
    def depths(scale: str) -> list[int]:
        found = []
        for overrides in variants("depth_width", scale, "axes.budget=125M"):
            cfg, model = model_of(overrides)
            if skip_reason(cfg) is None:
                found.append(model.n_layers)
        return found

    paper = depths("paper")
    assert paper == depths(scale) and 4 in paper and 62 in paper


def test_proxy_cpu_keeps_the_papers_parameter_ratios() -> None:
    """Embedding sharing frees ~12% (Table 1), GQA 16/4 ~10% (Figure 5), at the proxy as in the paper."""

    def total(*overrides: str) -> int:
        return count_params(model_of(["scale=proxy_cpu", *overrides])[1]).total

    for scale in ("paper", "proxy_cpu"):
        untied, tied = (
            total(f"scale={scale}", "+sweep=emb_share", f"axes.embedding={e}")
            for e in ("untied_30l", "tied_30l")
        )
        assert 0.11 < 1 - tied / untied < 0.135, (scale, tied, untied)
        mha, gqa = (total(f"scale={scale}", "+sweep=heads_kv", f"axes.n_kv_heads={k}") for k in (16, 4))
        assert 0.05 < 1 - gqa / mha < 0.15, (scale, gqa, mha)


def test_ffn_sweep_matches_every_ffn_to_swiglu_parameters() -> None:
    relu = model_of(["+sweep=ffn_type", "axes.ffn_type=relu"])[1]
    swiglu = model_of(["+sweep=ffn_type", "axes.ffn_type=swiglu"])[1]
    geglu = model_of(["+sweep=ffn_type", "axes.ffn_type=geglu"])[1]
    assert (relu.ffn_type, relu.ffn_hidden, swiglu.ffn_hidden) == (
        "relu",
        3072,
        2048,
    )  # 2·768·3072 = 3·768·2048
    assert (geglu.ffn_type, geglu.ffn_hidden) == ("geglu", 2048)  # gated: three matrices, like SwiGLU
    assert count_params(relu).total == count_params(swiglu).total == count_params(geglu).total


def test_emb_share_gives_table_1s_three_sizes() -> None:
    totals = {
        variant: count_params(model_of(["+sweep=emb_share", f"axes.embedding={variant}"])[1]).total
        for variant in ("untied_30l", "tied_30l", "tied_32l")
    }
    assert {k: round(v / 1e6, 2) for k, v in totals.items()} == {
        "untied_30l": 135.04,
        "tied_30l": 118.65,
        "tied_32l": 125.47,
    }


def test_roadmap_steps_end_at_mobilellm_125m() -> None:
    steps = {
        step: model_of(["+sweep=roadmap", f"axes.roadmap_step={step}"])[1]
        for step in ("baseline", "swiglu", "deeper", "emb_share", "gqa", "layer_share")
    }
    assert (steps["deeper"].n_layers, steps["deeper"].dim) == (30, 512)
    assert steps["emb_share"].dim == 512 and steps["emb_share"].share_embeddings
    mobilellm = job_config(compose_config(["model=mobilellm_125m"])).model
    assert count_params(steps["gqa"]).total == count_params(mobilellm).total == 124_635_456
    assert steps["layer_share"].block_schedule[:4] == (0, 0, 1, 1)


@pytest.mark.parametrize("size", ["125m", "350m", "600m", "1b", "1.5b"])
def test_final_sweep_is_the_model_presets(size: str) -> None:
    budget = size.upper()
    preset = job_config(compose_config([f"model=mobilellm_{size}"])).model
    for family, preset_name in (("mobilellm", f"mobilellm_{size}"), ("mobilellm_ls", f"mobilellm_{size}_ls")):
        cfg, model = model_of(["+sweep=final", f"axes.budget={budget}", f"axes.family={family}"])
        expected = job_config(compose_config([f"model={preset_name}"])).model
        assert model == expected and cfg.train.tokens == 1_006_632_960_000
    assert count_params(preset).total > 0


def test_heads_kv_skips_impossible_combinations_with_a_reason() -> None:
    cfg = compose_config(["+sweep=heads_kv", "axes.n_heads=8", "axes.n_kv_heads=16"])
    assert "n_heads (8) must be divisible by n_kv_heads (16)" in skip_reason(cfg)
    model = model_of(["+sweep=heads_kv", "axes.budget=350M", "axes.n_heads=16", "axes.n_kv_heads=4"])[1]
    assert (model.n_layers, model.dim, model.n_heads, model.n_kv_heads) == (15, 1280, 16, 4)


def test_slurm_launcher_composes_one_task_per_gpu() -> None:
    cfg = compose_config(["+sweep=final", "hydra/launcher=slurm", "trainer=slurm_multinode"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (4, 8, 8)


def run_multirun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_smoke_sweep_runs_records_a_failure_and_a_rerun_skips_complete_variants(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [
        "+sweep=layer_sharing",
        "scale=smoke",
        "eval=none",
        "axes.budget=125M",
        "axes.sharing_scheme=immediate",
        "axes.sharing_repeats=0,2,3",  # 0 is not a valid repeat count: that variant fails, the others run
        f"hydra.sweep.dir={sweep_dir}",
    ]
    first = run_multirun(args, tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]  # one variant failed: the sweep says so
    assert "3 jobs run (2 complete, 1 failed)" in first.stdout
    records = {
        p.parent.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/seed=0/result.json")
    }
    statuses = {name.split("sharing_repeats=")[1].split(",")[0]: r["status"] for name, r in records.items()}
    assert statuses == {"0": "failed", "2": "complete", "3": "complete"}
    done = records["budget=125M,sharing_repeats=2,sharing_scheme=immediate"]
    assert done["sweep"] == "layer_sharing" and done["axes"] == {
        "budget": "125M",
        "sharing_scheme": "immediate",
        "sharing_repeats": 2,
    }
    assert done["name"] == "budget=125M,sharing_repeats=2,sharing_scheme=immediate"  # one variant per name
    assert done["config"]["model"]["sharing_repeats"] == 2 and done["train"]["val_loss"] > 0
    stamps = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/seed=0/result.json")}

    second = run_multirun(args, tmp_path)
    assert second.returncode == 1, second.stderr[-3000:]  # the invalid variant fails again
    assert second.stdout.count("results:") == 0  # nothing trained again
    assert (second.stderr + second.stdout).count("its result record is complete") == 2
    for path, stamp in stamps.items():
        if "sharing_repeats=0" not in str(path):
            assert path.stat().st_mtime_ns == stamp  # complete records untouched
