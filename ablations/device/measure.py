"""One on-device measurement, the way ExecuTorch's benchmark apps and the paper's Table 7 measure:
the model exported to `<out>/program.pte`, loaded by ExecuTorch's runtime, then timed.

- load: `Runtime.load_program` of the file; init: the method load (memory planning). Table 7's "load+init"
  is load_ms + init_ms; its "execute" is decode_ms.
- prefill: one forward of `prompt_tokens` tokens from position 0; decode: one forward of one token at
  position `prompt_tokens` (after a prefill, the cache holding the prompt). Each: `warmup` untimed runs, then
  `iterations` timed runs; `*_ms` is the trimmed mean of the middle 80%, `*_ms_mean` the plain mean, tok/s
  from the trimmed means.
- TTFT (time to first token): prefill of the prompt plus the greedy pick of the first generated token from
  its last logits, i.e. from the prompt handed to the program to the first token in hand (the program is
  already loaded); its trimmed mean over the same timed prefill runs.
- sizes: the `.pte` bytes, the planned memory of the method, the KV cache (fp32, one cache per block
  application) and the process's peak RSS (an upper bound on the program's: it includes the export and, in
  a job, training).
- quantized programs (`quant` != none), given validation tokens: the mean next-token cross-entropy of the
  fp32 eager model and of the program on the same `val_windows` windows, and their difference.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ablations.device.config import DeviceConfig
from ablations.device.export import write_program
from ablations.device.runtime import DeviceProgram
from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.records.atomic import atomic_write_text
from ablations.records.run_dir import RunDir

KV_BYTES_PER_VALUE = 4  # the program's cache is fp32 whatever the recipe (recipes quantize the linears)
TRIM_FRACTION = 0.1  # dropped from each end: the middle 80% (ExecuTorch's benchmark apps, "trimmean 0.2")


def trimmed_mean(values: Sequence[float]) -> float:
    """Mean of the middle 80% of `values`: sorted, int(n · 0.1) dropped from each end (for 50 runs the 5
    fastest and the 5 slowest, as ExecuTorch's benchmark apps do for any multiple of 10 runs)."""
    if not values:
        raise ValueError("trimmed_mean of no values")
    cut = int(len(values) * TRIM_FRACTION)
    middle = sorted(values)[cut : len(values) - cut]
    return sum(middle) / len(middle)


def kv_cache_bytes(model: ModelConfig, max_seq_len: int) -> int:
    """Bytes of the program's KV cache: keys and values, for every block application (a shared block
    applied twice caches twice), of n_kv_heads × max_seq_len × head_dim fp32 values each."""
    per_application = model.n_kv_heads * max_seq_len * model.head_dim  # type: ignore[operator]
    return 2 * model.n_applied_layers * per_application * KV_BYTES_PER_VALUE


def peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def timed_runs(run: Callable[[], dict[str, float]], warmup: int, iterations: int) -> dict[str, list[float]]:
    """`warmup` untimed calls of `run`, then the laps (ms by name) it reports over `iterations` calls."""
    for _ in range(warmup):
        run()
    laps: dict[str, list[float]] = {}
    for _ in range(iterations):
        for name, ms in run().items():
            laps.setdefault(name, []).append(ms)
    return laps


def elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def prefill_run(program: DeviceProgram, prompt: Tensor) -> Callable[[], dict[str, float]]:
    """One prefill from position 0 (ms) and the first token's greedy pick after it (TTFT, ms)."""

    def run() -> dict[str, float]:
        program.reset()
        start = time.perf_counter()
        logits = program.forward(prompt, 0)
        prefill = elapsed_ms(start)
        int(logits[0, -1].argmax())
        return {"prefill": prefill, "ttft": elapsed_ms(start)}

    return run


def decode_run(program: DeviceProgram, token: Tensor, position: int) -> Callable[[], dict[str, float]]:
    """One decode step at `position` (the same cache slot rewritten each time: the same work each run)."""

    def run() -> dict[str, float]:
        start = time.perf_counter()
        program.forward(token, position)
        return {"decode": elapsed_ms(start)}

    return run


def latency_fields(program: DeviceProgram, cfg: DeviceConfig, vocab_size: int) -> dict[str, float]:
    """Prefill, decode and TTFT timings (trimmed and plain means, ms) and tok/s, on random tokens."""
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(vocab_size, (1, cfg.prompt_tokens), generator=generator)
    laps = timed_runs(prefill_run(program, prompt), cfg.warmup, cfg.iterations)
    program.reset()
    program.forward(prompt, 0)  # the cache holds the prompt: decode attends over it
    laps |= timed_runs(
        decode_run(program, prompt[:, -1:].contiguous(), cfg.prompt_tokens), cfg.warmup, cfg.iterations
    )
    prefill, decode = trimmed_mean(laps["prefill"]), trimmed_mean(laps["decode"])
    return {
        "prefill_ms": prefill,
        "prefill_ms_mean": sum(laps["prefill"]) / cfg.iterations,
        "prefill_tok_s": cfg.prompt_tokens * 1e3 / prefill,
        "decode_ms": decode,
        "decode_ms_mean": sum(laps["decode"]) / cfg.iterations,
        "decode_tok_s": 1e3 / decode,
        "ttft_ms": trimmed_mean(laps["ttft"]),
    }


def validation_windows(tokens: Tensor, max_seq_len: int, count: int) -> Tensor:
    """Up to `count` consecutive windows [n, L] of a validation token stream, L = max_seq_len (the program's
    longest input, max_seq_len - 1 tokens, and their next-token targets); a shorter stream is one window."""
    stream = tokens.flatten().long()
    if stream.numel() < 2:
        raise ValueError(f"validation tokens: {stream.numel()} token(s), need >= 2 for one target")
    length = min(max_seq_len, stream.numel())
    n = min(count, stream.numel() // length)
    return stream[: n * length].view(n, length)


@torch.no_grad()
def eager_loss(model: MobileLLM, windows: Tensor) -> float:
    """Mean next-token cross-entropy (nats) of the fp32 eager model over `windows` [n, L]."""
    logits = model(windows[:, :-1])
    return float(F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()))


def program_loss(program: DeviceProgram, windows: Tensor) -> float:
    """Mean next-token cross-entropy (nats) of the program over `windows` [n, L], one window per prefill."""
    total = 0.0
    for window in windows:
        program.reset()
        logits = program.forward(window[None, :-1], 0)
        total += float(F.cross_entropy(logits[0].float(), window[1:], reduction="sum"))
    return total / (windows.shape[0] * (windows.shape[1] - 1))


def loss_fields(
    model: MobileLLM, program: DeviceProgram, cfg: DeviceConfig, validation_tokens: Tensor | None
) -> dict[str, float | None]:
    """The quantized program's val-loss change against the fp32 eager model (nulls for an fp32 program or
    without validation tokens)."""
    if cfg.quant == "none" or validation_tokens is None:
        return {"val_loss_fp32": None, "val_loss": None, "val_loss_change": None}
    windows = validation_windows(validation_tokens, cfg.max_seq_len, cfg.val_windows)
    fp32, quantized = eager_loss(model, windows), program_loss(program, windows)
    return {"val_loss_fp32": fp32, "val_loss": quantized, "val_loss_change": quantized - fp32}


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def measure(
    model: MobileLLM, cfg: DeviceConfig, out_dir: Path, validation_tokens: Tensor | None = None
) -> dict[str, Any]:
    """Export `model` to `<out_dir>/program.pte` (quantized per `cfg.quant`), load it, time it and write
    `<out_dir>/device.json`; returns that record (the job's `device` block). The model is moved to the CPU
    in fp32 and put in eval mode, in place (the program is exported from, and compared with, that model)."""
    out_dir = Path(out_dir)
    model = model.to("cpu", torch.float32).eval()
    path = write_program(model, out_dir / RunDir.DEVICE_PROGRAM, cfg.max_seq_len, cfg.quant)
    program = DeviceProgram.load(path, threads=cfg.threads)
    latency = latency_fields(program, cfg, model.config.vocab_size)
    losses = loss_fields(model, program, cfg, validation_tokens)
    values: dict[str, Any] = {
        "quant": cfg.quant,
        "threads": cfg.threads,
        "max_seq_len": cfg.max_seq_len,
        "prompt_tokens": cfg.prompt_tokens,
        "iterations": cfg.iterations,
        "warmup": cfg.warmup,
        "pte_bytes": path.stat().st_size,
        "planned_memory_bytes": program.planned_memory_bytes,
        "kv_cache_bytes": kv_cache_bytes(model.config, cfg.max_seq_len),
        "peak_rss_bytes": peak_rss_bytes(),  # after every run: the peak of the whole measurement
        "load_ms": program.load_ms,
        "init_ms": program.init_ms,
        **latency,
        **losses,
        "versions": {name: package_version(name) for name in ("executorch", "torchao")},
    }
    atomic_write_text(out_dir / RunDir.DEVICE_RECORD, json.dumps(values, indent=2) + "\n")
    return values
