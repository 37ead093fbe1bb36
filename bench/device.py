"""The paper's Table 7 measured here: MobileLLM-125M, MobileLLM-LS-125M (immediate ×2) and a 60-layer unshared
model at 125M width, at full shapes with random weights (latency does not depend on training), each exported to
an ExecuTorch program (XNNPACK) and measured by `ablations.device.measure` the way Table 7 and ExecuTorch's
benchmark apps measure: load, init, then `--warmup` untimed and `--iterations` timed prefill and decode runs.

    python bench/device.py [--iterations 50] [--warmup 10] [--threads 1] [--quantized mobilellm] [--out bench_device]

Prints, from one run: each model's load+init and execute (one decode step) time relative to MobileLLM-125M
beside the paper's +2.2% / +2.6% (LS) and +143% / +86% (60 layers), timed in turns once all three programs
are exported (`--load-rounds` loads of each, then `--iterations` decode steps of each, model after model in
every round), so a machine whose load drifts slows all three alike; the program sizes, and fp32 against
`8da4w` decode tok/s for the `--quantized` models. Writes `summary.json`, `summary.md` and each program's
`device.json` into `--out` (programs are deleted once measured: hundreds of MB each). The times are this
machine's; the ratios are what carry over to a phone. Exporting dominates the time: on 2 cores, about 3
minutes for the 125M program and 9 for LS-125M or 60 layers (27 minutes in all with the 8da4w program, twice
that while training runs share the cores; `--quantized` with no model skips it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from ablations.device.config import DeviceConfig, missing_dependency
from ablations.device.measure import decode_run, measure, trimmed_mean
from ablations.device.runtime import DeviceProgram
from ablations.job.config import compose_config, job_config
from ablations.model.architecture import MobileLLM
from ablations.records.errors import ConfigError
from ablations.records.run_dir import RunDir
from analysis.latency import relative_change
from analysis.paper import paper_values

MODELS: dict[str, list[str]] = {  # Table 7's row key → the model's overrides
    "mobilellm": ["model=mobilellm_125m"],
    "mobilellm_ls": ["model=mobilellm_125m_ls"],
    "unshared_60l": ["model=mobilellm_125m", "model.n_layers=60"],
}
BASELINE = "mobilellm"
QUANTIZED = "8da4w"


def measure_model(name: str, quant: str, device: DeviceConfig, out_dir: Path) -> dict[str, Any]:
    """One model's program exported and measured on its own (`out_dir/<name>_<quant>/`: `device.json` and
    the program), with the export-and-measure wall time."""
    torch.manual_seed(0)
    model = MobileLLM(job_config(compose_config(MODELS[name])).model).eval()
    run_dir = out_dir / f"{name}_{quant}"
    start = time.perf_counter()
    record = measure(model, dataclasses.replace(device, quant=quant), run_dir)
    params = sum(p.numel() for p in model.parameters())
    return record | {"model": name, "params": params, "wall_s": time.perf_counter() - start}


def in_turns(
    programs: dict[str, Path], device: DeviceConfig, load_rounds: int
) -> dict[str, dict[str, float]]:
    """Load, init and one decode step of every program, timed model after model in each round (trimmed means,
    ms): `load_rounds` fresh loads each, then `device.warmup` untimed and `device.iterations` timed decode
    steps each, at position `prompt_tokens` after a prefill of the prompt."""
    laps: dict[str, dict[str, list[float]]] = {
        name: {"load": [], "init": [], "decode": []} for name in programs
    }
    for _ in range(load_rounds):
        for name, path in programs.items():
            loaded = DeviceProgram.load(path, threads=device.threads)
            laps[name]["load"].append(loaded.load_ms)
            laps[name]["init"].append(loaded.init_ms)
            del loaded  # one program's packed weights in memory at a time
    steps = {}
    for name, path in programs.items():
        loaded = DeviceProgram.load(path, threads=device.threads)
        generator = torch.Generator().manual_seed(0)
        prompt = torch.randint(loaded.vocab_size, (1, device.prompt_tokens), generator=generator)
        loaded.forward(prompt, 0)  # the cache holds the prompt: decode attends over it
        steps[name] = decode_run(loaded, prompt[:, -1:].contiguous(), device.prompt_tokens)
    for round_number in range(device.warmup + device.iterations):
        for name, step in steps.items():
            ms = step()["decode"]
            if round_number >= device.warmup:
                laps[name]["decode"].append(ms)
    return {name: {f"{k}_ms": trimmed_mean(v) for k, v in timed.items()} for name, timed in laps.items()}


def table7_rows(fp32: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model's times (timed in turns), program size and change to MobileLLM-125M, beside the paper's."""
    paper = paper_values("table7").set_index("row")
    base = fp32[BASELINE]["turns"]
    rows = []
    for name, record in fp32.items():
        turns = record["turns"]
        load_init = turns["load_ms"] + turns["init_ms"]
        rows.append(
            {
                "model": name,
                "label": paper.loc[name, "label"],
                "params": record["params"],
                "pte_bytes": record["pte_bytes"],
                "pte_change_pct": relative_change(record["pte_bytes"], fp32[BASELINE]["pte_bytes"]),
                "load_init_ms": load_init,
                "load_init_change_pct": relative_change(load_init, base["load_ms"] + base["init_ms"]),
                "paper_load_init_change_pct": float(paper.loc[name, "load_init_change_pct"]),
                "execute_ms": turns["decode_ms"],
                "execute_change_pct": relative_change(turns["decode_ms"], base["decode_ms"]),
                "paper_execute_change_pct": float(paper.loc[name, "execute_change_pct"]),
            }
        )
    return rows


def quant_rows(fp32: dict[str, dict[str, Any]], quantized: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """fp32 against 8da4w, per quantized model: program size, decode and prefill speed."""
    rows = []
    for name, record in quantized.items():
        for quant, r in (("none", fp32[name]), (QUANTIZED, record)):
            rows.append(
                {
                    "model": name,
                    "quant": quant,
                    "pte_bytes": r["pte_bytes"],
                    "decode_ms": r["decode_ms"],
                    "decode_tok_s": r["decode_tok_s"],
                    "prefill_tok_s": r["prefill_tok_s"],
                    "decode_speedup": r["decode_tok_s"] / fp32[name]["decode_tok_s"],
                }
            )
    return rows


def markdown(summary: dict[str, Any]) -> str:
    """The summary as two pipe tables and the setting they were measured at."""
    setting = summary["setting"]
    lines = [
        f"Table 7 at full shapes, random weights, fp32, {setting['threads']} thread(s), timed in turns: "
        f"{setting['load_rounds']} loads of each program, then trimmed mean of {setting['iterations']} decode "
        f"steps after {setting['warmup']} warm-up at position {setting['prompt_tokens']}; "
        f"{setting['machine']}, load average {setting['load_before']:.1f} → {setting['load_after']:.1f} "
        f"({setting['wall_s']:.0f} s).",
        "",
        "| model | params | program MB | Δ% | load+init ms | Δ% | paper Δ% | execute ms | Δ% | paper Δ% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["table7"]:
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.1f}M | {r['pte_bytes'] / 1e6:.1f} | {r['pte_change_pct']:+.1f} "
            f"| {r['load_init_ms']:.1f} | {r['load_init_change_pct']:+.1f} | {r['paper_load_init_change_pct']:+.1f} "
            f"| {r['execute_ms']:.2f} | {r['execute_change_pct']:+.1f} | {r['paper_execute_change_pct']:+.1f} |"
        )
    if summary["quantized"]:
        lines += [
            "",
            "| model | quant | program MB | decode ms | decode tok/s | prefill tok/s | decode × fp32 |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in summary["quantized"]:
            lines.append(
                f"| {r['model']} | {r['quant']} | {r['pte_bytes'] / 1e6:.1f} | {r['decode_ms']:.2f} "
                f"| {r['decode_tok_s']:.1f} | {r['prefill_tok_s']:.1f} | {r['decode_speedup']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, DeviceConfig]:
    parser = argparse.ArgumentParser(prog="python bench/device.py", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50, help="timed runs of prefill and decode each")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before them")
    parser.add_argument("--threads", type=int, default=1, help="XNNPACK threads")
    parser.add_argument("--load-rounds", type=int, default=5, help="loads of each program timed in turns")
    parser.add_argument("--max-seq-len", type=int, default=256, help="the program's KV-cache length")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="tokens of the timed prefill")
    parser.add_argument(
        "--quantized",
        nargs="*",
        default=[BASELINE],
        choices=sorted(MODELS),
        help=f"models also measured as {QUANTIZED} programs (none: fp32 only)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench_device"), help="output dir")
    args = parser.parse_args(argv)
    if (missing := missing_dependency()) is not None:
        parser.error(missing)
    if args.load_rounds < 1:
        parser.error(f"--load-rounds={args.load_rounds}: must be a positive integer")
    try:
        device = DeviceConfig(
            threads=args.threads,
            max_seq_len=args.max_seq_len,
            prompt_tokens=args.prompt_tokens,
            warmup=args.warmup,
            iterations=args.iterations,
        )
    except ConfigError as error:
        parser.error(str(error))
    return args, device


def main(argv: list[str] | None = None) -> int:
    args, device = parse_args(argv)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    fp32, quantized = {}, {}
    for name in MODELS:
        fp32[name] = measure_model(name, "none", device, args.out)
        print(
            f"{name} fp32: decode {fp32[name]['decode_ms']:.2f} ms ({fp32[name]['wall_s']:.0f} s)", flush=True
        )
    programs = {name: args.out / f"{name}_none" / RunDir.DEVICE_PROGRAM for name in MODELS}
    for name, turns in in_turns(programs, device, args.load_rounds).items():
        fp32[name]["turns"] = turns
        print(f"{name} fp32 in turns: " + ", ".join(f"{k} {v:.2f}" for k, v in turns.items()), flush=True)
    for path in programs.values():
        path.unlink()  # hundreds of MB each
    for name in args.quantized:
        quantized[name] = measure_model(name, QUANTIZED, device, args.out)
        (args.out / f"{name}_{QUANTIZED}" / RunDir.DEVICE_PROGRAM).unlink()
        print(f"{name} {QUANTIZED}: decode {quantized[name]['decode_ms']:.2f} ms", flush=True)
    summary = {
        "setting": {
            **{
                k: getattr(device, k)
                for k in ("threads", "max_seq_len", "prompt_tokens", "warmup", "iterations")
            },
            "load_rounds": args.load_rounds,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "wall_s": time.perf_counter() - start,
            "versions": fp32[BASELINE]["versions"],
        },
        "table7": table7_rows(fp32),
        "quantized": quant_rows(fp32, quantized),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
