"""Training-step throughput and memory: our MobileLLM vs transformers.LlamaForCausalLM of the same shape.

    python bench/train.py                 # CPU: tokens/s ratio (tiny, 125M at a short sequence) and the
                                          # chunked loss's peak memory against the plain loss
    python bench/train.py --steps 20      # more timed steps
    python bench/train.py --gpu           # the GPU mode alone (it also runs after the CPU part whenever
                                          # CUDA is visible); fails without a CUDA device
    python bench/train.py --gpu --gpu-models mobilellm_125m   # one model (each takes a few minutes)
    bash bench/gpu.sh wheels|run          # the GPU mode on a machine without this project's dependencies

GPU mode: MFU of mobilellm_125m and mobilellm_350m at seq 2048, bf16 autocast, the chunked loss, with and
without torch.compile and activation checkpointing, and each run's peak memory beside the memory plan's
(MFU = tokens/s · ablations.model.counts.flops_per_token / device peak; goal ≥ 45% on an H100 for 125M,
ahead of litgpt). The litgpt reference is litgpt's own GPT of the same shape, compiled, with litgpt's
chunked cross-entropy, as `litgpt pretrain` runs it; it is measured when litgpt is importable. Install it
with `pip install --no-deps litgpt` (its pins, e.g. huggingface-hub<1.4, conflict with transformers 5; the
model itself needs only torch and lightning).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ablations.job.config import compose_config, job_config
from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.model.counts import flops_per_token
from ablations.train.loss import lm_loss
from ablations.train.memory_plan import GIB, largest_micro_batch, memory_plan
from ablations.train.perf import mfu, peak_tflops

LOSS_CHUNK_TOKENS = 4096  # the training default (train.loss_chunk_tokens)


def llama_twin(cfg: ModelConfig) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_applied_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta, max_position_embeddings=cfg.max_seq_len,
        tie_word_embeddings=cfg.share_embeddings, attn_implementation="sdpa", use_cache=False,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def litgpt_twin(cfg: ModelConfig) -> torch.nn.Module | None:
    """litgpt's GPT of the same shape (what `litgpt pretrain` trains), or None when litgpt is not installed."""
    try:
        from litgpt.config import Config
        from litgpt.model import GPT
    except ImportError:
        return None
    config = Config(
        name="mobilellm-twin", block_size=cfg.max_seq_len, vocab_size=cfg.vocab_size,
        padded_vocab_size=cfg.vocab_size, n_layer=cfg.n_applied_layers, n_head=cfg.n_heads,
        n_query_groups=cfg.n_kv_heads, n_embd=cfg.dim, head_size=cfg.head_dim, rotary_percentage=1.0,
        parallel_residual=False, bias=False, norm_class_name="RMSNorm", norm_eps=cfg.norm_eps,
        mlp_class_name="LLaMAMLP", intermediate_size=cfg.ffn_hidden, rope_base=int(cfg.rope_theta),
    )  # fmt: skip
    model = GPT(config)
    if cfg.share_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    for weight in model.parameters():  # our initialisation, so both start from a sensible loss
        if weight.dim() == 2:
            torch.nn.init.normal_(weight, std=cfg.init_std)
    return model


def litgpt_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    from litgpt.utils import chunked_cross_entropy

    return chunked_cross_entropy(model(batch[:, :-1]), batch[:, 1:])


def hf_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


def tokens_per_s(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    steps: int,
    autocast: torch.dtype | None = None,
) -> float:
    """Mean tokens/s of full optimizer steps (forward, backward, clip, AdamW) after two warm-up steps (the warm-up also runs before every round)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=batch.is_cuda or None)
    device_type = batch.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if batch.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if batch.is_cuda:
        torch.cuda.synchronize()
    return steps * batch[:, 1:].numel() / (time.perf_counter() - start)


def compare_on_cpu(
    name: str, cfg: ModelConfig, batch_size: int, seq_len: int, steps: int, rounds: int
) -> None:
    """Best of `rounds` alternating measurements (as timeit): other processes only ever slow a round down."""
    torch.manual_seed(0)
    batch = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1))
    runs = {"ours": (MobileLLM(cfg), lm_loss), "LlamaForCausalLM": (llama_twin(cfg), hf_loss)}
    litgpt_model = litgpt_twin(cfg)
    if litgpt_model is not None:
        runs["litgpt GPT"] = (litgpt_model, litgpt_loss)
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, (model, loss_fn) in runs.items():
            samples[label].append(tokens_per_s(model, loss_fn, batch, steps))
    ours = max(samples["ours"])
    references = "   ".join(
        f"{label} {max(speeds):10,.0f} tok/s (ratio {ours / max(speeds):.2f})"
        for label, speeds in samples.items() if label != "ours"
    )  # fmt: skip
    print(f"{name:<28} batch {batch_size}×{seq_len}: ours {ours:10,.0f} tok/s   {references}")


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux's VmHWM: unlike ru_maxrss it is not inherited
    from the parent across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def peak_step_rss(cfg: ModelConfig, batch_size: int, seq_len: int, chunk_tokens: int | None) -> int:
    """Bytes by which one forward + backward raises this (fresh) process's peak resident memory."""
    torch.manual_seed(0)
    model = MobileLLM(cfg)
    batch = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1))
    before = peak_rss()
    lm_loss(model, batch, chunk_tokens).backward()
    return peak_rss() - before


def compare_loss_memory_on_cpu(cfg: ModelConfig, batch_size: int, seq_len: int, chunk_tokens: int) -> None:
    """Peak memory of a forward + backward with the chunked loss against the plain loss, each measured in
    a fresh process (a process's peak only grows, and freed memory may stay with the allocator)."""
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for chunk in (None, chunk_tokens):
        with context.Pool(1) as pool:
            peaks[chunk] = pool.apply(peak_step_rss, (cfg, batch_size, seq_len, chunk))
    plain, chunked = peaks[None], peaks[chunk_tokens]
    print(f"loss memory, vocab {cfg.vocab_size}, batch {batch_size}×{seq_len}: plain {plain / 2**20:,.0f} MiB   "
          f"chunked ({chunk_tokens} tokens) {chunked / 2**20:,.0f} MiB   ratio {chunked / plain:.2f}")  # fmt: skip


def gpu_step_figures(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    steps: int,
    flops: int,
    peak: float | None,
) -> str:
    """Tokens/s, TFLOP/s, MFU and peak memory of full bf16-autocast optimizer steps on the GPU."""
    torch.cuda.reset_peak_memory_stats(batch.device)
    speed = tokens_per_s(model, loss_fn, batch, steps, autocast=torch.bfloat16)
    used = torch.cuda.max_memory_allocated(batch.device)
    utilisation = mfu(speed, flops, 1, peak)
    shown = f"{utilisation:.1%}" if utilisation is not None else "n/a (unknown peak)"
    return (
        f"{speed:10,.0f} tok/s {speed * flops / 1e12:6.1f} TFLOP/s  MFU {shown}  peak {used / GIB:5.1f} GiB"
    )


def mfu_on_gpu(name: str, cfg: ModelConfig, batch_size: int, steps: int) -> None:
    """MFU and peak memory of full optimizer steps, ± torch.compile, ± activation checkpointing, then the
    litgpt reference at the micro-batch of our uncheckpointed runs (the same FLOPs per token)."""
    device = torch.device("cuda")
    device_name = torch.cuda.get_device_name(device)
    peak = peak_tflops(device_name)
    seq_len = cfg.max_seq_len
    flops = flops_per_token(cfg, seq_len)
    capacity = torch.cuda.get_device_properties(device).total_memory
    loss_fn = functools.partial(lm_loss, chunk_tokens=LOSS_CHUNK_TOKENS)
    print(f"{name} seq {seq_len} bf16 on {device_name}:")
    batches: dict[str, torch.Tensor] = {}
    for checkpointing in ("none", "full"):
        layout = dict(checkpointing=checkpointing, loss_chunk_tokens=LOSS_CHUNK_TOKENS)
        fitting = largest_micro_batch(cfg, seq_len, capacity, strategy="auto", **layout)
        micro_batch = min(batch_size, fitting)
        planned = memory_plan(cfg, seq_len, micro_batch, strategy="auto", **layout).total
        batch = batches[checkpointing] = torch.randint(
            0, cfg.vocab_size, (micro_batch, seq_len + 1), device=device
        )
        for compiled in (False, True):
            torch.manual_seed(0)
            model = MobileLLM(cfg).to(device)
            model.set_activation_checkpointing(checkpointing)
            if compiled:
                model.compile()
            figures = gpu_step_figures(model, loss_fn, batch, steps, flops, peak)
            print(f"  ours   batch {micro_batch:>3} checkpointing={checkpointing:<4} compile={compiled!s:<5}: "
                  f"{figures} (plan {planned / GIB:5.1f})")  # fmt: skip
            del model
            torch.cuda.empty_cache()
    reference = litgpt_twin(cfg)
    if reference is None:
        print("  litgpt is not installed (pip install --no-deps litgpt), so no litgpt reference")
        return
    torch.manual_seed(0)
    reference = reference.to(device)
    reference.compile()  # as `litgpt pretrain` runs it: compiled, no activation checkpointing
    batch = batches["none"]
    figures = gpu_step_figures(reference, litgpt_loss, batch, steps, flops, peak)
    print(f"  litgpt batch {batch.shape[0]:>3} checkpointing=none compile=True : {figures}")
    del reference
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per measurement")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating measurements per model (best is kept)"
    )
    parser.add_argument(
        "--gpu-batch",
        type=int,
        default=16,
        help="micro-batch for the GPU MFU measurement (capped to what fits)",
    )
    parser.add_argument(
        "--gpu-models",
        default="mobilellm_125m,mobilellm_350m",
        help="comma-separated model presets the GPU mode measures",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="the GPU mode only; fail if no CUDA device is visible"
    )
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device is visible")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if not args.gpu:
        tiny = job_config(compose_config(["model=tiny"])).model
        m125 = job_config(compose_config(["model=mobilellm_125m"])).model
        ls = dataclasses.replace(tiny, sharing_scheme="immediate", sharing_repeats=2)
        compare_on_cpu("tiny", tiny, 16, 256, args.steps, args.rounds)
        compare_on_cpu("tiny, immediate x2 (twin: 8 layers)", ls, 16, 256, args.steps, args.rounds)
        compare_on_cpu("mobilellm_125m (seq 128)", m125, 1, 128, args.steps, args.rounds)
        compare_loss_memory_on_cpu(dataclasses.replace(tiny, vocab_size=32000), 4, 512, chunk_tokens=512)
    if not torch.cuda.is_available():
        print("no GPU: MFU at seq 2048 (bf16, ± compile, ± checkpointing) needs one")
        return
    for name in args.gpu_models.split(","):
        cfg = job_config(compose_config([f"model={name}"])).model
        mfu_on_gpu(name, cfg, args.gpu_batch, steps=max(10, args.steps))


if __name__ == "__main__":
    main()
