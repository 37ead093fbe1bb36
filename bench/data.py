"""Data pipeline speed: tokenisation throughput and loader cost against a training step.

    python bench/data.py                 # embedded corpus; loader vs tiny and mobilellm_125m CPU steps
    python bench/data.py --skip-125m     # leave out the 125M step (tens of seconds on 2 CPU cores)

Goals (issue 3): tokenisation >= 1M tokens/s with 2 processes; the loader < 2% of a CPU training step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablations.data.config import DataConfig, TokenizerConfig
from ablations.data.corpus import embedded_documents
from ablations.data.loader import TokenWindowLoader, WindowIndex
from ablations.data.shards import document_blocks, encode_corpus, open_split, prepare_shards, read_manifest
from ablations.data.tokenizer import load_tokenizer
from ablations.job.config import compose_config, job_config


def tokenisation(data: DataConfig, tok_cfg: TokenizerConfig, tokenizer: object, num_proc: int) -> float:
    docs = embedded_documents(data.embedded_max_bytes)
    start = time.perf_counter()
    tokens = sum(
        b.tokens["train"].size + b.tokens["val"].size
        for b in encode_corpus(
            document_blocks(docs, data.block_documents), tokenizer, tok_cfg, data.val_fraction, num_proc
        )
    )
    seconds = time.perf_counter() - start
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(
        f"tokenise  num_proc={num_proc}: {tokens:,} tokens in {seconds:.2f} s = {tokens / seconds / 1e6:.2f}M tokens/s ({mb / seconds:.1f} MB/s)"
    )
    return tokens / seconds


def loader_seconds_per_batch(shard_dir: Path, seq_len: int, micro_batch_size: int, n: int = 50) -> float:
    manifest = read_manifest(shard_dir, verify_hashes=False)
    loader = TokenWindowLoader(
        WindowIndex(open_split(shard_dir, manifest, "train"), seq_len), micro_batch_size
    )
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(n):
        next(it)
    return (time.perf_counter() - start) / n


def step_seconds(preset: str, seq_len: int, micro_batch_size: int, steps: int) -> float:
    from ablations.model.architecture import MobileLLM

    cfg = job_config(compose_config([f"model={preset}"])).model
    model = MobileLLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, cfg.vocab_size, (micro_batch_size, seq_len + 1))

    def step() -> None:
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-125m", action="store_true", help="leave out the mobilellm_125m CPU step")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as cache:
        data = DataConfig(cache_dir=cache, val_fraction=0.05, progress=False)
        tok_cfg = TokenizerConfig(vocab_size=4096, cache_dir=cache)
        start = time.perf_counter()
        tokenizer = load_tokenizer(tok_cfg, data)
        print(
            f"embedded corpus: {len(embedded_documents(data.embedded_max_bytes))} documents; tokenizer (4096) trained in {time.perf_counter() - start:.1f} s"
        )
        tokenisation(data, tok_cfg, tokenizer, 1)
        rate = tokenisation(data, tok_cfg, tokenizer, 2)
        print(
            f"  goal >= 1M tokens/s on 2 processes: {rate / 1e6:.2f}x of goal → {'MET' if rate >= 1e6 else 'NOT MET'}"
        )
        shard_dir = prepare_shards(data, tok_cfg, tokenizer)

        shapes = [("tiny", 256, 32, 3)]
        if args.skip_125m:
            print("mobilellm_125m: skipped (--skip-125m): one CPU step takes tens of seconds")
        else:
            shapes.append(("mobilellm_125m", 2048, 1, 1))
        for preset, seq_len, mbs, steps in shapes:
            load = loader_seconds_per_batch(shard_dir, seq_len, mbs)
            step = step_seconds(preset, seq_len, mbs, steps)
            tokens = mbs * seq_len
            print(
                f"{preset:15s} seq {seq_len} × batch {mbs}: loader {load * 1e3:.3f} ms/batch "
                f"({tokens / load / 1e6:.1f}M tokens/s), CPU train step {step * 1e3:.0f} ms "
                f"({tokens / step:,.0f} tokens/s) → loader = {100 * load / step:.3f}% of a step "
                f"(goal < 2%: {'MET' if load / step < 0.02 else 'NOT MET'})"
            )


if __name__ == "__main__":
    main()
