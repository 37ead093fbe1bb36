"""Training-step throughput: our MobileLLM vs transformers.LlamaForCausalLM of the same shape, same loop.

    python bench/train.py                 # CPU: tiny and 125M (short sequence); prints tokens/s and the ratio
    python bench/train.py --steps 20      # more timed steps

On a GPU it also prints MFU of mobilellm_125m at seq 2048, bf16 autocast, with and without torch.compile
(MFU = tokens/s · ablations.budget.flops_per_token / device peak; goal ≥ 45% on an H100).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ablations.job.config import compose_config, job_config
from ablations.model.architecture import MobileLLM
from ablations.model.budget import flops_per_token
from ablations.model.config import ModelConfig
from ablations.train.loss import lm_loss
from ablations.train.perf import mfu, peak_tflops


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
    our_model, their_model = MobileLLM(cfg), llama_twin(cfg)
    samples: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(rounds):
        samples["ours"].append(tokens_per_s(our_model, lm_loss, batch, steps))
        samples["theirs"].append(tokens_per_s(their_model, hf_loss, batch, steps))
    ours, theirs = max(samples["ours"]), max(samples["theirs"])
    print(f"{name:<28} batch {batch_size}×{seq_len}: ours {ours:10,.0f} tok/s   "
          f"LlamaForCausalLM {theirs:10,.0f} tok/s   ratio {ours / theirs:.2f}")  # fmt: skip


def mfu_on_gpu(cfg: ModelConfig, batch_size: int, steps: int) -> None:
    device = torch.device("cuda")
    peak = peak_tflops(torch.cuda.get_device_name(device))
    batch = torch.randint(0, cfg.vocab_size, (batch_size, cfg.max_seq_len + 1), device=device)
    flops = flops_per_token(cfg, cfg.max_seq_len)
    for compiled in (False, True):
        model = MobileLLM(cfg).to(device)
        if compiled:
            model.compile()
        speed = tokens_per_s(model, lm_loss, batch, steps, autocast=torch.bfloat16)
        utilisation = mfu(speed, flops, 1, peak)
        shown = f"{utilisation:.1%}" if utilisation is not None else "n/a (unknown peak)"
        print(f"mobilellm_125m seq {cfg.max_seq_len} bf16 compile={compiled!s:<5}: {speed:12,.0f} tok/s  "
              f"{speed * flops / 1e12:6.1f} TFLOP/s  MFU {shown}  ({torch.cuda.get_device_name(device)})")  # fmt: skip
        del model
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per measurement")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating measurements per model (best is kept)"
    )
    parser.add_argument("--gpu-batch", type=int, default=16, help="micro-batch for the GPU MFU measurement")
    args = parser.parse_args()
    tiny = job_config(compose_config(["model=tiny"])).model
    m125 = job_config(compose_config(["model=mobilellm_125m"])).model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    ls = dataclasses.replace(tiny, sharing_scheme="immediate", sharing_repeats=2)
    compare_on_cpu("tiny", tiny, 16, 256, args.steps, args.rounds)
    compare_on_cpu("tiny, immediate x2 (twin: 8 layers)", ls, 16, 256, args.steps, args.rounds)
    compare_on_cpu("mobilellm_125m (seq 128)", m125, 1, 128, args.steps, args.rounds)
    if torch.cuda.is_available():
        mfu_on_gpu(m125, args.gpu_batch, steps=max(10, args.steps))
    else:
        print("no GPU: MFU of mobilellm_125m at seq 2048 (bf16, ± torch.compile) is measured on a GPU only")


if __name__ == "__main__":
    main()
