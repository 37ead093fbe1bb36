"""analysis/findings.py and analysis/paired.py: paired contrasts pinned to hand computations and analytic
intervals, verdicts, the paper's Δs, a report that regenerates byte for byte, and the committed report
(docs/findings.md) regenerated from the committed records as CI does."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from ablations.job.config import compose_config, job_config
from analysis.findings import (
    FINDINGS,
    Contrast,
    evaluate,
    main,
    paper_delta,
    seeds_to_resolve,
    variant_runs,
    verdict,
)
from analysis.paired import accuracy_contrast, bpb_contrast

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "docs" / "findings" / "records"


def test_a_paired_bpb_contrast_is_the_seed_mean_and_its_interval_the_analytic_one() -> None:
    rng = np.random.default_rng(1)
    seeds, docs = 5, 400
    text_bytes = rng.integers(3000, 5000, docs).astype(float)
    base = text_bytes * rng.normal(1.5, 0.2, docs) + rng.normal(0, 30, (seeds, docs))
    better = base * 0.98 + rng.normal(0, 20, (seeds, docs))
    contrast = bpb_contrast(np.stack([better, base]), text_bytes, np.array([1.0, -1.0]))
    diff = better - base
    per_seed = diff.sum(axis=1) / (math.log(2) * text_bytes.sum())
    assert contrast.value == pytest.approx(per_seed.mean()) and contrast.per_seed == pytest.approx(per_seed)
    # the interval of a ratio over documents (delta method) and of a mean over seeds, combined
    doc_mean = diff.mean(axis=0)
    ratio = doc_mean.sum() / text_bytes.sum()
    se_docs = (
        math.sqrt(docs / (docs - 1) * ((doc_mean - ratio * text_bytes) ** 2).sum())
        / text_bytes.sum()
        / math.log(2)
    )
    se_seeds = per_seed.std() / math.sqrt(seeds)
    half_width = (contrast.high - contrast.low) / 2
    assert half_width == pytest.approx(1.96 * math.hypot(se_docs, se_seeds), rel=0.15)


def test_a_constant_per_document_difference_has_no_spread() -> None:
    text_bytes = np.array([100.0, 300.0, 50.0])
    base = np.ones((2, 3)) * text_bytes
    contrast = bpb_contrast(np.stack([base + 0.01 * text_bytes, base]), text_bytes, np.array([1.0, -1.0]))
    expected = pytest.approx(0.01 / math.log(2), rel=1e-12)
    assert (contrast.value, contrast.low, contrast.high) == (expected, expected, expected)


def test_an_accuracy_contrast_averages_tasks_then_seeds() -> None:
    a = [
        np.array([[[100, 0, 100, 100]], [[0, 0, 100, 0]]], dtype=float),
        np.array([[[0, 100]], [[0, 0]]], dtype=float),
    ]
    contrast = accuracy_contrast(a, np.array([1.0, -1.0]))
    assert contrast.value == pytest.approx(((75 - 25) + (50 - 0)) / 2)


@pytest.mark.parametrize(
    ("low", "high", "sign", "margin", "expected"),
    [
        (-0.02, -0.01, -1, 0.0, "reproduced"),  # a "beats" claim: bpb lower
        (0.01, 0.02, -1, 0.0, "reversed"),
        (-0.01, 0.01, -1, 0.0, "unresolved"),
        (0.002, 0.008, -1, 0.01, "reproduced"),  # "on par": worse by less than the margin
        (0.012, 0.02, -1, 0.01, "reversed"),
        (0.005, 0.015, -1, 0.01, "unresolved"),
        (0.01, 0.02, 1, 0.0, "reproduced"),  # diminishing returns: the second difference is positive
    ],
)
def test_verdicts(low: float, high: float, sign: int, margin: float, expected: str) -> None:
    assert verdict(Contrast((low + high) / 2, low, high, 3, ()), sign, margin) == expected


def test_seeds_to_resolve_scales_the_interval_as_one_over_root_seeds() -> None:
    # half-width 0.02 at 3 seeds, estimate 0.01 from the boundary: (0.02 / 0.01)² · 3 = 12 seeds
    assert seeds_to_resolve(Contrast(-0.01, -0.03, 0.01, 3, ()), -1, 0.0) == 12
    assert seeds_to_resolve(Contrast(0.0, -0.01, 0.01, 3, ()), -1, 0.0) is None


def test_the_papers_deltas_come_from_its_published_rows() -> None:
    deltas = {(f.number, i): paper_delta(c) for f in FINDINGS for i, c in enumerate(f.claims)}
    assert deltas[(1, 0)] == {"125M": 1.3, "350M": 1.3}  # 43.9 - 42.6, 48.7 - 47.4
    assert deltas[(2, 0)] == {"125M": 0.9, "350M": 1.1}  # L30 - L12 (44.8 - 43.9); L32 - L15 (49.8 - 48.7)
    assert deltas[(3, 0)] == {"125M": 0.2} and deltas[(3, 1)] == {"125M": -0.2}  # Table 1
    assert deltas[(5, 1)] == {"125M": 0.2, "350M": 0.5}  # Table 2: repeat-all-over - immediate
    assert deltas[(4, 0)] == {}  # Figure 5's cells are not recovered: a note instead


@pytest.mark.parametrize("scale", ["paper", "proxy_cpu"])
def test_the_gqa_finding_reuses_the_layer_sharing_base_because_it_is_the_same_model(scale: str) -> None:
    def model(*overrides: str):
        return job_config(compose_config([f"scale={scale}", *overrides])).model

    heads_kv = model("+sweep=heads_kv", "axes.n_heads=16", "axes.n_kv_heads=4")
    unshared = model("+sweep=layer_sharing", "axes.sharing_scheme=none", "axes.sharing_repeats=2")
    assert heads_kv == unshared


def test_at_the_cpu_proxy_the_depth_findings_models_are_the_ffn_and_embedding_sweeps_models() -> None:
    def model(*overrides: str):
        return job_config(compose_config(["scale=proxy_cpu", "axes.budget=125M", *overrides])).model

    assert model("+sweep=depth_width", "axes.n_layers=12") == model("+sweep=ffn_type", "axes.ffn_type=swiglu")
    assert model("+sweep=depth_width", "axes.n_layers=30") == model(
        "+sweep=emb_share", "axes.embedding=untied_30l"
    )


def test_a_variant_takes_a_second_sweeps_record_only_when_it_is_the_same_model(tmp_path: Path) -> None:
    from analysis.records import load_records

    rng = np.random.default_rng(0)
    write_run(tmp_path, "depth_width", {"budget": "125M", "n_layers": 12}, 0, 1.0, rng, {"dim": 96})
    write_run(tmp_path, "ffn_type", {"budget": "125M", "ffn_type": "swiglu"}, 1, 1.0, rng, {"dim": 96})
    write_run(tmp_path, "ffn_type", {"budget": "125M", "ffn_type": "swiglu"}, 2, 1.0, rng, {"dim": 128})
    twelve = next(v for v in FINDINGS[1].variants if v.label == "12 layers")
    assert sorted(variant_runs(load_records([tmp_path]), twelve)) == [0, 1]  # seed 2 is another model


# ---------------------------------------------------------------------------------- synthetic records

EFFECTS = {  # relative bpb of each variant (per finding's sweep/axes): the verdicts the report must give
    ("ffn_type", "ffn_type=relu"): 1.03,
    ("ffn_type", "ffn_type=swiglu"): 1.00,  # finding 1: reproduced
    ("depth_width", "n_layers=4"): 0.98,
    ("depth_width", "n_layers=12"): 0.99,
    ("depth_width", "n_layers=30"): 1.01,  # finding 2: reversed
}


def write_run(
    root: Path,
    sweep: str,
    axes: dict,
    seed: int,
    factor: float,
    rng: np.random.Generator,
    model: dict | None = None,
) -> None:
    name = ",".join(f"{k}={v}" for k, v in sorted(axes.items()))
    run = root / sweep / name / f"seed={seed}"
    (run / "eval_samples").mkdir(parents=True)
    docs = 60
    text_bytes = np.full(docs, 2000.0)
    nats = text_bytes * math.log(2) * 2.0 * factor * (1 + rng.normal(0, 0.002, docs))
    bpb = float(nats.sum() / (math.log(2) * text_bytes.sum()))
    (run / "validation.json").write_text(
        json.dumps(
            {"per_document": {"nats": nats.tolist(), "bytes": text_bytes.tolist(), "tokens": [500] * docs}}
        )
    )
    for task in (
        "arc_easy",
        "arc_challenge",
        "boolq",
        "piqa",
        "social_iqa",
        "hellaswag",
        "openbookqa",
        "winogrande",
    ):
        rows = [
            {"doc_id": i, "acc": float(rng.random() < 0.4), "acc_norm": float(rng.random() < 0.4)}
            for i in range(20)
        ]
        (run / "eval_samples" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = {
        "status": "complete",
        "name": name,
        "sweep": sweep,
        "axes": axes,
        "seed": seed,
        "config": {"scale": {"name": "proxy_cpu"}, "eval": {"limit": 20}, "model": model or {}},
        "params": {"total": 2_000_000},
        "flops_per_token": 1_000_000,
        "tokens_seen": 1_228_800,
        "train": {
            "val_bpb": bpb,
            "val_loss": bpb * 2.5,
            "val_loss_se": 0.003,
            "val_documents": docs,
            "val_tokens": 500 * docs,
            "val_bytes": int(text_bytes.sum()),
            "fit_seconds": 300.0,
            "plan": {"tokens": 1_228_800, "steps": 300, "global_batch_tokens": 4096},
        },
        "data": {
            "source": {"source": "local_files", "sha256": ["ab" * 32]},
            "tokenizer": {"kind": "trained", "vocab_size": 4096},
        },
        "eval": {"paper_avg": 0.4, "paper_avg_metric": {}},
    }
    (run / "result.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    for (sweep, axis), factor in EFFECTS.items():
        key, value = axis.split("=")
        for seed in range(3):
            write_run(
                root,
                sweep,
                {"budget": "125M", key: int(value) if value.isdigit() else value},
                seed,
                factor,
                rng,
            )
    return root


def test_the_report_gives_each_findings_verdict_from_bits_per_byte_at_chance(
    synthetic: Path, tmp_path: Path
) -> None:
    from analysis.records import load_records

    results = evaluate(load_records([synthetic]))
    findings = results["proxy_cpu"]
    by_number = {f.finding.number: f for f in findings}
    assert by_number[1].verdict == "reproduced" and by_number[2].verdict == "reversed"
    assert by_number[1].claims[0].decided_by == "bpb" and not by_number[1].zero_shot_above_chance
    assert by_number[1].claims[0].bpb.value == pytest.approx(-0.06, rel=0.05)  # SwiGLU 2.00 vs ReLU 2.06 bpb
    assert by_number[3].verdict == "unresolved" and by_number[3].claims[0].reason  # no records: said so
    assert main([str(synthetic), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "findings.md").read_text()
    assert "**2 of 6 findings resolved**" in report and "| 1 | SwiGLU beats" in report


def test_each_claim_lists_every_seeds_delta_as_the_records_bpb_difference(
    synthetic: Path, tmp_path: Path
) -> None:
    """The per-seed column is each seed's SwiGLU − ReLU val_bpb, read from the two records themselves."""

    def bpb(axis: str, seed: int) -> float:
        record = synthetic / "ffn_type" / f"budget=125M,{axis}" / f"seed={seed}" / "result.json"
        return json.loads(record.read_text())["train"]["val_bpb"]

    expected = ", ".join(f"{s}: {bpb('ffn_type=swiglu', s) - bpb('ffn_type=relu', s):+.3f}" for s in range(3))
    assert main([str(synthetic), "--out", str(tmp_path)]) == 0
    row = next(
        line
        for line in (tmp_path / "findings.md").read_text().splitlines()
        if line.startswith("| SwiGLU beats ReLU")
    )
    assert f"| {expected} |" in row


def test_a_verdict_needs_three_seeds(tmp_path: Path) -> None:
    from analysis.records import load_records

    rng = np.random.default_rng(0)
    for (sweep, axis), factor in list(EFFECTS.items())[:2]:  # the FFN pair, a clear effect, 2 seeds only
        key, value = axis.split("=")
        for seed in range(2):
            write_run(tmp_path, sweep, {"budget": "125M", key: value}, seed, factor, rng)
    claim = evaluate(load_records([tmp_path]))["proxy_cpu"][0].claims[0]
    assert claim.bpb is not None and claim.bpb.high < 0  # the Δ is shown …
    assert (
        claim.verdict == "unresolved" and "2 seed(s) so far: a verdict needs 3" in claim.reason
    )  # … not judged


def test_the_report_regenerates_byte_for_byte(synthetic: Path, tmp_path: Path) -> None:
    main([str(synthetic), "--out", str(tmp_path / "a")])
    copy = tmp_path / "copy"
    shutil.copytree(synthetic, copy)  # elsewhere on disk: run paths are written relative to the records
    main([str(synthetic), "--out", str(tmp_path / "b")])
    for name in ("findings.md", "findings.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed findings records")
def test_the_committed_findings_report_is_what_its_records_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["docs/findings/records", "--out", str(tmp_path)]) == 0
    for name in ("findings.md", "findings.json"):
        committed = REPO / "docs" / name
        assert (tmp_path / name).read_text() == committed.read_text(), f"docs/{name} is stale: regenerate it"
