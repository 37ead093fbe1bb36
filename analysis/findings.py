"""Which of the paper's findings the records reproduce: `findings.md` and `findings.json`, generated.

    python -m analysis.findings docs/findings/records --out docs/findings

Each finding (FINDINGS) compares variants of the paper sweeps, found by sweep and axes among the records; its
claims are contrasts between them (`analysis.paired`), each with the paper's Δ beside ours. A claim's Δ in
validation bits per byte and in zero-shot average comes with a 95% interval paired by seed and by document;
its verdict is `reproduced` (the interval lies on the claim's side), `reversed` (on the other side) or
`unresolved` (the interval contains 0, or the margin of an "on par" claim). The zero-shot average decides
only where every variant compared scores above chance; otherwise (a CPU proxy) bits per byte decide, and
the report says which. The first claim of a finding gives its verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ablations.eval.tasks import PAPER_ZERO_SHOT
from ablations.records.run_dir import RunDir
from analysis.paired import Contrast, accuracy_contrast, bpb_contrast
from analysis.paper import paper_values
from analysis.records import load_records, task_metric

# answer choices per task (ARC has a few 3- and 5-choice rows): the zero-shot average of random guessing
CHOICES = {
    "arc_easy": 4,
    "arc_challenge": 4,
    "boolq": 2,
    "piqa": 2,
    "social_iqa": 3,
    "hellaswag": 4,
    "openbookqa": 4,
    "winogrande": 2,
}
CHANCE = 100 * float(np.mean([1 / CHOICES[t] for t in PAPER_ZERO_SHOT]))
MIN_SEEDS = 3  # a verdict needs the spread between seeds measured, not only between documents


@dataclass(frozen=True)
class Variant:
    """A variant of a paper sweep: the records whose `sweep` is one of `sources`' and whose axes hold its values."""

    label: str
    sources: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    """(sweep, ((axis, value), …)) pairs; the first that has a record for a seed gives that seed's record."""


@dataclass(frozen=True)
class Claim:
    """A contrast Σ w·metric(variant) and the sign its bits per byte take when the claim holds."""

    text: str
    weights: tuple[tuple[str, float], ...]
    bpb_sign: int
    """-1: the contrast lowers bits per byte when the claim holds (a "beats" claim); +1: raises them."""
    paper_rows: tuple[tuple[str, str, float], ...] = ()
    """(artefact, row, weight) of `analysis/paper_reference/paper_values.csv`: the paper's Δ, per budget."""
    paper_note: str = ""
    margin: float | None = None
    """An "on par" claim: it holds while the claim-side contrast stays above -margin (relative to the bpb of
    the last variant weighted; points of zero-shot average)."""


@dataclass(frozen=True)
class Finding:
    number: int
    title: str
    variants: tuple[Variant, ...]
    claims: tuple[Claim, ...]


def source(sweep: str, **axes: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A sweep and axis values (the 125M budget unless given) that pick a variant's records."""
    return sweep, tuple(sorted({"budget": "125M", **axes}.items()))


def variant(label: str, sweep: str, **axes: Any) -> Variant:
    return Variant(label, (source(sweep, **axes),))


# Variants that are one model in two sweeps, run once (tests/test_findings.py checks each pair builds the same
# model): the GQA finding's 16/4 model is the layer-sharing sweep's unshared base; at the CPU proxy, the
# 12-layer model of the depth sweep is the FFN sweep's SwiGLU model and the 30-layer one the embedding
# sweep's untied model.
UNSHARED = variant("no sharing (1×)", "layer_sharing", sharing_scheme="none", sharing_repeats=2)
GQA_16_4 = Variant("16 heads / 4 kv", (source("heads_kv", n_heads=16, n_kv_heads=4), *UNSHARED.sources))
IMMEDIATE_2 = variant("immediate ×2", "layer_sharing", sharing_scheme="immediate", sharing_repeats=2)
FFN_SWIGLU, DEPTH_12 = source("ffn_type", ffn_type="swiglu"), source("depth_width", n_layers=12)
EMB_UNTIED_30, DEPTH_30 = source("emb_share", embedding="untied_30l"), source("depth_width", n_layers=30)

FINDINGS: tuple[Finding, ...] = (
    Finding(
        1,
        "SwiGLU beats a vanilla ReLU FFN at equal parameters",
        (
            variant("ReLU FFN", "ffn_type", ffn_type="relu"),
            Variant("SwiGLU FFN", (FFN_SWIGLU, DEPTH_12)),
        ),
        (
            Claim(
                "SwiGLU beats ReLU",
                (("SwiGLU FFN", 1.0), ("ReLU FFN", -1.0)),
                -1,
                (("ffn", "swiglu", 1.0), ("ffn", "relu", -1.0)),
            ),
        ),
    ),
    Finding(
        2,
        "Deep and thin (30 layers) beats shallow and wide at a fixed budget",
        (
            variant("4 layers", "depth_width", n_layers=4),
            Variant("12 layers", (DEPTH_12, FFN_SWIGLU)),
            Variant("30 layers", (DEPTH_30, EMB_UNTIED_30)),
        ),
        (
            Claim(
                "30 layers beat 12",
                (("30 layers", 1.0), ("12 layers", -1.0)),
                -1,
                (("fig4", "l30", 1.0), ("fig4", "l12", -1.0), ("fig4", "l32", 1.0), ("fig4", "l15", -1.0)),
            ),
            Claim(
                "30 layers beat 4",
                (("30 layers", 1.0), ("4 layers", -1.0)),
                -1,
                (("fig4", "l30", 1.0), ("fig4", "l4", -1.0), ("fig4", "l32", 1.0), ("fig4", "l5", -1.0)),
            ),
        ),
    ),
    Finding(
        3,
        "Embedding sharing costs ≤ 0.2 points, and the parameters it frees buy depth",
        (
            Variant("untied, 30 layers", (EMB_UNTIED_30, DEPTH_30)),
            variant("tied, 30 layers", "emb_share", embedding="tied_30l"),
            variant("tied, 32 layers", "emb_share", embedding="tied_32l"),
        ),
        (
            Claim(
                "tied with 32 layers beats untied with 30 (fewer parameters)",
                (("tied, 32 layers", 1.0), ("untied, 30 layers", -1.0)),
                -1,
                (("table1", "tied_deeper", 1.0), ("table1", "untied_30l", -1.0)),
            ),
            Claim(
                "tying costs little: tied 30 layers on par with untied 30 (within 1% bpb / 0.2 points)",
                (("tied, 30 layers", 1.0), ("untied, 30 layers", -1.0)),
                -1,
                (("table1", "tied_30l", 1.0), ("table1", "untied_30l", -1.0)),
                margin=0.01,
            ),
            Claim(
                "the freed parameters buy depth: 32 tied layers beat 30",
                (("tied, 32 layers", 1.0), ("tied, 30 layers", -1.0)),
                -1,
                (("table1", "tied_deeper", 1.0), ("table1", "tied_30l", -1.0)),
            ),
        ),
    ),
    Finding(
        4,
        "16 query heads with 4 kv-heads are on par with 16 / 16 at ~10% fewer parameters",
        (variant("16 heads / 16 kv", "heads_kv", n_heads=16, n_kv_heads=16), GQA_16_4),
        (
            Claim(
                "16/4 GQA on par with 16/16 (within 1% bpb / 0.2 points)",
                (("16 heads / 4 kv", 1.0), ("16 heads / 16 kv", -1.0)),
                -1,
                paper_note="Figure 5: comparable at 125M, -0.2 at 350M (per-cell values not recovered)",
                margin=0.01,
            ),
        ),
    ),
    Finding(
        5,
        "Layer sharing beats none at equal stored parameters; repeat-all-over ≥ immediate",
        (
            UNSHARED,
            IMMEDIATE_2,
            variant(
                "repeat-all-over ×2", "layer_sharing", sharing_scheme="repeat_all_over", sharing_repeats=2
            ),
        ),
        (
            Claim(
                "immediate ×2 beats no sharing",
                (("immediate ×2", 1.0), ("no sharing (1×)", -1.0)),
                -1,
                (("roadmap", "layer_share", 1.0), ("roadmap", "gqa", -1.0)),
                "Table 10: MobileLLM-LS vs MobileLLM, 0.25T tokens",
            ),
            Claim(
                "repeat-all-over beats immediate",
                (("repeat-all-over ×2", 1.0), ("immediate ×2", -1.0)),
                -1,
                (("table2", "repeat_all_over", 1.0), ("table2", "immediate", -1.0)),
            ),
        ),
    ),
    Finding(
        6,
        "The repeat count: 2× beats 1×, with diminishing returns beyond",
        (
            UNSHARED,
            IMMEDIATE_2,
            variant("immediate ×3", "layer_sharing", sharing_scheme="immediate", sharing_repeats=3),
        ),
        (
            Claim(
                "diminishing returns: 3× gains less over 2× than 2× over 1×",
                (("no sharing (1×)", 1.0), ("immediate ×2", -2.0), ("immediate ×3", 1.0)),
                1,
                paper_note="Table 14: 2× gives +0.4 to +0.6; 3× and 4× give diminishing gains",
            ),
            Claim(
                "3× still beats 2×",
                (("immediate ×3", 1.0), ("immediate ×2", -1.0)),
                -1,
                paper_note="Table 14: a smaller gain than 2× over 1×",
            ),
        ),
    ),
)


# ------------------------------------------------------------------------------------------------ records


@dataclass
class Run:
    """One complete record of a variant: its per-document validation and zero-shot values."""

    record: dict[str, Any]
    nats: np.ndarray
    text_bytes: np.ndarray
    samples: dict[str, np.ndarray] | None
    """Per task, the averaged metric of each row; None when the record has no per-row outputs."""


def _matches(record: dict[str, Any], sweep: str, axes: tuple[tuple[str, Any], ...]) -> bool:
    held = record.get("axes") or {}
    return record.get("sweep") == sweep and all(str(held.get(k)) == str(v) for k, v in axes)


def load_run(record: dict[str, Any]) -> Run | None:
    """The record's per-document data, or None when its validation file is missing."""
    run_dir = RunDir(record["run_dir"])
    path = run_dir.validation
    if record.get("status") != "complete" or not path.is_file():
        return None
    per_doc = json.loads(path.read_text())["per_document"]
    samples: dict[str, np.ndarray] | None = {}
    row = {
        f"result/eval/paper_avg_metric/{t}": m
        for t, m in ((record.get("eval") or {}).get("paper_avg_metric") or {}).items()
    }
    for task in PAPER_ZERO_SHOT:
        file = run_dir.eval_samples / f"{task}.jsonl"
        if not file.is_file():
            samples = None
            break
        metric = task_metric(row, task)  # type: ignore[arg-type]
        samples[task] = np.array(
            [json.loads(line)[metric] for line in file.read_text().splitlines() if line.strip()], dtype=float
        )
    return Run(record, np.asarray(per_doc["nats"], float), np.asarray(per_doc["bytes"], float), samples)


def variant_runs(records: list[dict[str, Any]], wanted: Variant) -> dict[int, Run]:
    """Seed → run of a variant (the first source with a complete record for that seed). A variant is one
    model under several seeds: a record whose model differs from the first run's is not taken (a source
    that builds the same model at one scale may build another at the next)."""
    runs: dict[int, Run] = {}
    model: Any = None
    for sweep, axes in wanted.sources:
        for record in records:
            seed = record.get("seed")
            if seed in runs or not _matches(record, sweep, axes):
                continue
            held = (record.get("config") or {}).get("model")
            if runs and held != model:
                continue
            run = load_run(record)
            if run is not None:
                runs[int(seed)] = run
                model = held
    return dict(sorted(runs.items()))


# ------------------------------------------------------------------------------------------------- claims


@dataclass
class ClaimResult:
    claim: Claim
    seeds: list[int]
    bpb: Contrast | None = None
    zero_shot: Contrast | None = None
    decided_by: str = "bpb"
    verdict: str = "unresolved"
    reason: str = ""
    seeds_to_resolve: int | None = None
    paper: dict[str, float] = field(default_factory=dict)


def paper_delta(claim: Claim) -> dict[str, float]:
    """The paper's Δ zero-shot average (points) per budget, from its published rows (the rows a budget has;
    none where one of them is not recovered)."""
    out: dict[str, float] = {}
    for panel, rows in paper_values().groupby("panel"):
        avg = {(a, r): float(v) for a, r, v in zip(rows["artefact"], rows["row"], rows["avg"], strict=True)}
        terms = [(w, avg[(a, r)]) for a, r, w in claim.paper_rows if (a, r) in avg]
        if len(terms) >= 2 and not any(math.isnan(v) for _, v in terms):
            out[str(panel)] = round(sum(w * v for w, v in terms), 2)
    return out


def evaluate_claim(claim: Claim, runs: dict[str, dict[int, Run]], chance_ok: bool) -> ClaimResult:
    """The claim's contrasts on the seeds every variant in it has, and its verdict."""
    labels = [label for label, _ in claim.weights]
    weights = np.array([w for _, w in claim.weights])
    seeds = sorted(set.intersection(*(set(runs[label]) for label in labels))) if labels else []
    result = ClaimResult(claim, seeds, paper=paper_delta(claim))
    if not seeds:
        result.reason = "no seed has a complete record of every variant"
        return result
    chosen = [[runs[label][s] for s in seeds] for label in labels]
    text_bytes = chosen[0][0].text_bytes
    if any(not np.array_equal(r.text_bytes, text_bytes) for rs in chosen for r in rs):
        result.reason = "the variants were validated on different documents: not comparable"
        return result
    result.bpb = bpb_contrast(np.array([[r.nats for r in rs] for rs in chosen]), text_bytes, weights)
    if all(r.samples is not None for rs in chosen for r in rs):
        tasks = [np.array([[100 * r.samples[t] for r in rs] for rs in chosen]) for t in PAPER_ZERO_SHOT]  # type: ignore[index]
        result.zero_shot = accuracy_contrast(tasks, weights)
    result.decided_by = "zero_shot" if chance_ok and result.zero_shot is not None else "bpb"
    contrast = result.zero_shot if result.decided_by == "zero_shot" else result.bpb
    sign = -claim.bpb_sign if result.decided_by == "zero_shot" else claim.bpb_sign
    margin = 0.0
    if claim.margin is not None:  # relative to the reference's bpb; in points for the zero-shot average
        reference = runs[labels[-1]]
        ref_bpb = float(np.mean([r.record["train"]["val_bpb"] for r in reference.values()]))
        margin = claim.margin * ref_bpb if result.decided_by == "bpb" else 0.2
    if len(seeds) < MIN_SEEDS:
        result.reason = f"{len(seeds)} seed(s) so far: a verdict needs {MIN_SEEDS}"
        return result
    result.verdict = verdict(contrast, sign, margin)  # type: ignore[arg-type]
    if result.verdict == "unresolved":
        result.seeds_to_resolve = seeds_to_resolve(contrast, sign, margin)  # type: ignore[arg-type]
    return result


def verdict(contrast: Contrast, sign: int, margin: float) -> str:
    """`reproduced` when the interval lies on the claim's side (beyond -margin for an "on par" claim),
    `reversed` when it lies wholly on the other side, else `unresolved`."""
    low, high = sorted((sign * contrast.low, sign * contrast.high))  # in the claim's direction: > 0 holds
    if low > -margin:
        return "reproduced"
    if high < -margin:
        return "reversed"
    return "unresolved"


def seeds_to_resolve(contrast: Contrast, sign: int, margin: float) -> int | None:
    """Seeds at which an interval of this width (shrinking as 1/√seeds) would clear the claim's boundary (0,
    or -margin), were the estimate to stay where it is; None when it sits on the boundary."""
    distance = abs(sign * contrast.value + margin)
    half_width = (contrast.high - contrast.low) / 2
    if distance <= 1e-12:
        return None
    return max(contrast.seeds + 1, math.ceil(contrast.seeds * (half_width / distance) ** 2))


# ---------------------------------------------------------------------------------------------- findings


@dataclass
class FindingResult:
    finding: Finding
    runs: dict[str, dict[int, Run]]
    claims: list[ClaimResult]
    zero_shot_above_chance: bool

    @property
    def verdict(self) -> str:
        return self.claims[0].verdict


def above_chance(runs: dict[str, dict[int, Run]]) -> bool:
    """Whether every variant's zero-shot average is above chance: the lower end of its 95% interval (over
    seeds and rows, `analysis.paired`) above the average of random guessing (CHANCE)."""
    for seeds in runs.values():
        if not seeds or any(r.samples is None for r in seeds.values()):
            return False
        tasks = [np.array([[100 * r.samples[t] for r in seeds.values()]]) for t in PAPER_ZERO_SHOT]  # type: ignore[index]
        if accuracy_contrast(tasks, np.array([1.0])).low <= CHANCE:
            return False
    return True


def evaluate_finding(finding: Finding, records: list[dict[str, Any]]) -> FindingResult:
    runs = {v.label: variant_runs(records, v) for v in finding.variants}
    chance_ok = above_chance(runs)
    claims = [evaluate_claim(c, runs, chance_ok) for c in finding.claims]
    return FindingResult(finding, runs, claims, chance_ok)


def compute_spent(result: FindingResult) -> dict[str, float]:
    """The runs of a finding's variants: how many, their wall time (training and final validation) and
    training FLOPs."""
    records = [r.record for seeds in result.runs.values() for r in seeds.values()]
    return {
        "runs": len(records),
        "hours": sum((r["train"].get("fit_seconds") or 0.0) for r in records) / 3600,
        "pflop": sum((r.get("flops_per_token") or 0) * (r.get("tokens_seen") or 0) for r in records) / 1e15,
    }


# ------------------------------------------------------------------------------------------------ report


def scale_of(record: dict[str, Any]) -> str:
    return str(((record.get("config") or {}).get("scale") or {}).get("name") or "none")


def evaluate(records: list[dict[str, Any]]) -> dict[str, list[FindingResult]]:
    """Every finding per scale (records of different scales are never compared)."""
    scales = sorted({scale_of(r) for r in records if r.get("status") == "complete"})
    return {
        scale: [evaluate_finding(f, [r for r in records if scale_of(r) == scale]) for f in FINDINGS]
        for scale in scales
    }


def _ci(contrast: Contrast | None, digits: int, scale: float = 1.0) -> str:
    if contrast is None:
        return "–"
    v, lo, hi = (scale * x for x in (contrast.value, contrast.low, contrast.high))
    return f"{v:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _paper(result: ClaimResult) -> str:
    parts = [f"{v:+.1f} ({panel})" for panel, v in result.paper.items()]
    if result.claim.paper_note:
        parts.append(result.claim.paper_note)
    return "; ".join(parts) or "–"


def _verdict(result: ClaimResult) -> str:
    text = f"**{result.verdict}**" if result.verdict != "unresolved" else "unresolved"
    if result.reason:
        return f"{text} ({result.reason})"
    if result.verdict == "unresolved":
        more = (
            f"≈{result.seeds_to_resolve} seeds at this Δ and spread"
            if result.seeds_to_resolve
            else "Δ ≈ 0: no seed count"
        )
        return f"{text} (would resolve: {more})"
    return text


def _by_seed(result: ClaimResult) -> str:
    """Each shared seed's Δ bpb over the whole split: what a verdict at few seeds rests on."""
    if result.bpb is None:
        return "–"
    return ", ".join(
        f"{seed}: {value:+.3f}" for seed, value in zip(result.seeds, result.bpb.per_seed, strict=True)
    )


def _metric(result: ClaimResult) -> str:
    return "zero-shot avg" if result.decided_by == "zero_shot" else "val bpb"


def _variant_rows(result: FindingResult) -> list[str]:
    rows = [
        "| variant | params | val bpb (mean ± sd) | val loss (nats) | zero-shot avg (%) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for variant in result.finding.variants:
        runs = list(result.runs[variant.label].values())
        if not runs:
            rows.append(f"| {variant.label} | – | not run | – | – | 0 |")
            continue
        bpb = np.array([r.record["train"]["val_bpb"] for r in runs])
        loss = np.array([r.record["train"]["val_loss"] for r in runs])
        avg = [
            100 * r.record["eval"]["paper_avg"]
            for r in runs
            if (r.record.get("eval") or {}).get("paper_avg") is not None
        ]
        sd = f" ± {bpb.std(ddof=1):.4f}" if len(bpb) > 1 else ""
        params = runs[0].record["params"]["total"]
        zero = f"{np.mean(avg):.1f}" if avg else "–"
        rows.append(
            f"| {variant.label} | {params / 1e6:.2f}M | {bpb.mean():.4f}{sd} | {loss.mean():.4f} | {zero} | "
            f"{', '.join(str(s) for s in result.runs[variant.label])} |"
        )
    return rows


def render_markdown(results: dict[str, list[FindingResult]], sources: list[str], n_records: int) -> str:
    lines = [
        "# Findings: which of MobileLLM's architecture findings this platform reproduces",
        "",
        f"Generated by `python -m analysis.findings {' '.join(sources)}` from {n_records} result records; CI",
        "regenerates it from the committed records and fails if it differs. Do not edit it by hand.",
        "",
        "Each claim is a contrast between variants trained under the same seeds on the same data. Δ is the",
        "contrast's mean over seeds, in validation bits per byte (bpb, the whole held-out split, lower is better)",
        "and in zero-shot average (points, higher is better); the 95% interval comes from a bootstrap over seeds",
        "and over documents, both paired (`analysis/paired.py`). A verdict is *reproduced* when the interval",
        "lies on the claim's side, *reversed* when it lies on the other, *unresolved* when it contains 0 (or, for",
        'an "on par" claim, the margin). The zero-shot average decides where every variant compared scores above',
        f"chance ({CHANCE:.1f}%, random guessing on the 8 tasks); elsewhere bits per byte decide. The paper's Δ is",
        "its zero-shot average (points), from its published rows.",
        "",
        "With three seeds a bootstrap over seeds cannot reach past the seeds' own contrasts, so a verdict there",
        "says that every seed's Δ lay on one side, beyond the documents' sampling noise; each claim's table lists",
        "the Δ of every seed. A Student-t interval over three seeds would be several times as wide.",
    ]
    for scale, findings in results.items():
        lines += _scale_section(scale, findings)
    return "\n".join(lines) + "\n"


def _scale_section(scale: str, findings: list[FindingResult]) -> list[str]:
    records = [r.record for f in findings for seeds in f.runs.values() for r in seeds.values()]
    unique = {r["run_dir"]: r for r in records}.values()
    resolved = sum(f.verdict != "unresolved" for f in findings)
    decided = {c.decided_by for f in findings for c in f.claims if c.bpb is not None}
    lines = ["", f"## Scale `{scale}`", ""]
    if unique:
        first = next(iter(unique))
        data = first.get("data") or {}
        source = data.get("source") or {}
        digests = ", ".join(f"`{d[:16]}…`" for d in source.get("sha256") or [source.get("content_hash", "?")])
        se = max(r["train"].get("val_loss_se") or 0.0 for r in unique)
        lines += [
            f"- Corpus: {source.get('source', '?')} (sha256 {digests}); tokenizer: {data.get('tokenizer', {}).get('kind', '?')}"
            f" {data.get('tokenizer', {}).get('vocab_size', '')}; {first['train']['plan']['tokens']:,} training tokens a run "
            f"({first['train']['plan']['steps']} steps of {first['train']['plan']['global_batch_tokens']:,}).",
            f"- Validation: {first['train']['val_documents']} held-out documents, {first['train']['val_tokens']:,} tokens, "
            f"{first['train']['val_bytes']:,} bytes; a run's loss has a per-token sampling error of at most {se:.4f} nats.",
            f"- Zero-shot suite: {', '.join(PAPER_ZERO_SHOT)} ({first['config']['eval'].get('limit') or 'all'} rows each).",
            f"- Verdicts decided by: {', '.join(sorted('zero-shot average' if d == 'zero_shot' else 'bits per byte' for d in decided)) or '–'}"
            + (
                ""
                if "zero_shot" in decided
                else " (the variants' zero-shot averages are not above chance at this scale)"
            ),
            f"- **{resolved} of {len(findings)} findings resolved** (in either direction).",
            "",
        ]
    lines += [
        "| # | finding | deciding claim | paper Δ avg | Δ val bpb [95% CI] | Δ zero-shot [95% CI] | verdict | seeds | compute |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in findings:
        c = f.claims[0]
        spent = compute_spent(f)
        lines.append(
            f"| {f.finding.number} | {f.finding.title} | {c.claim.text} | {_paper(c)} | {_ci(c.bpb, 4)} | {_ci(c.zero_shot, 1)} | "
            f"{_verdict(c)}, by {_metric(c)} | {len(c.seeds)} | {spent['runs']} run{'s' if spent['runs'] != 1 else ''}, {spent['hours']:.2f} h, {spent['pflop']:.3f} PFLOP |"
        )
    for f in findings:
        lines += ["", f"### {f.finding.number}. {f.finding.title}", "", *_variant_rows(f), ""]
        lines += [
            "| claim | paper Δ avg | Δ val bpb [95% CI] | Δ val bpb by seed | Δ zero-shot [95% CI] | verdict | decided by |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in f.claims:
            lines.append(
                f"| {c.claim.text} | {_paper(c)} | {_ci(c.bpb, 4)} | {_by_seed(c)} | {_ci(c.zero_shot, 1)} | {_verdict(c)} | {_metric(c)} |"
            )
    return lines


def to_json(results: dict[str, list[FindingResult]]) -> dict[str, Any]:
    def contrast(c: Contrast | None) -> dict[str, Any] | None:
        return (
            None
            if c is None
            else {
                "value": c.value,
                "low": c.low,
                "high": c.high,
                "seeds": c.seeds,
                "per_seed": list(c.per_seed),
            }
        )

    out: dict[str, Any] = {}
    for scale, findings in results.items():
        out[scale] = [
            {
                "number": f.finding.number,
                "title": f.finding.title,
                "verdict": f.verdict,
                "zero_shot_above_chance": f.zero_shot_above_chance,
                "compute": compute_spent(f),
                "variants": {
                    label: {
                        str(s): {
                            "run": Path(r.record["run_dir"]).as_posix(),
                            "val_bpb": r.record["train"]["val_bpb"],
                        }
                        for s, r in seeds.items()
                    }
                    for label, seeds in f.runs.items()
                },
                "claims": [
                    {
                        "text": c.claim.text,
                        "weights": dict(c.claim.weights),
                        "paper_delta_avg": c.paper,
                        "paper_note": c.claim.paper_note,
                        "seeds": c.seeds,
                        "delta_bpb": contrast(c.bpb),
                        "delta_zero_shot": contrast(c.zero_shot),
                        "decided_by": c.decided_by,
                        "verdict": c.verdict,
                        "reason": c.reason,
                        "seeds_to_resolve": c.seeds_to_resolve,
                    }
                    for c in f.claims
                ],
            }
            for f in findings
        ]
    return out


def relative_runs(payload: Any, base: Path) -> Any:
    """Run dirs relative to `base` (the report must not depend on where the records were checked out)."""
    if isinstance(payload, dict):
        return {k: (_relative(v, base) if k == "run" else relative_runs(v, base)) for k, v in payload.items()}
    if isinstance(payload, list):
        return [relative_runs(v, base) for v in payload]
    return payload


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.findings", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sources", nargs="+", help="record directories (searched recursively) or result.json files"
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="where findings.md and findings.json go")
    args = parser.parse_args(argv)
    records = load_records(args.sources)
    if not records:
        print(f"error: no result.json under {' '.join(args.sources)}", file=sys.stderr)
        return 2
    results = evaluate(records)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(results, list(args.sources), len(records))
    (args.out / "findings.md").write_text(markdown)
    payload = relative_runs(to_json(results), Path(args.sources[0]))
    (args.out / "findings.json").write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out / 'findings.md'} and {args.out / 'findings.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
