from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ablations.model.architecture import KVCache, MobileLLM
from tests.conftest import AXES, small_config


def reference_attention(q, k, v, attn_mask=None, is_causal=False, enable_gqa=False):
    """Textbook softmax(QKᵀ/√d)V with repeated K/V heads: the reference SDPA must agree with."""
    if enable_gqa:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if is_causal:
        attn_mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1), v)


@pytest.mark.parametrize("axis", sorted(AXES))
def test_forward_is_causal_and_matches_textbook_attention(axis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = MobileLLM(small_config(**AXES[axis])).eval()
    tokens = torch.randint(0, 101, (2, 12))
    logits = model(tokens)
    assert logits.shape == (2, 12, 101)
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 101
    assert torch.allclose(model(changed)[:, :8], logits[:, :8], atol=1e-6)  # the future never leaks back
    monkeypatch.setattr(F, "scaled_dot_product_attention", reference_attention)
    assert torch.allclose(model(tokens), logits, atol=1e-5)


def test_shared_blocks_are_stored_once_and_applied_along_the_schedule() -> None:
    base = MobileLLM(small_config())
    shared = MobileLLM(small_config(sharing_scheme="reverse", sharing_repeats=2))
    assert sum(p.numel() for p in shared.parameters()) == sum(p.numel() for p in base.parameters())
    assert len(shared.blocks) == 3 and shared.block_schedule == (0, 1, 2, 2, 1, 0)
    calls: list[int] = []
    for index, block in enumerate(shared.blocks):
        block.register_forward_hook(lambda *_, i=index: calls.append(i))
    shared(torch.randint(0, 101, (1, 5)))
    assert tuple(calls) == shared.block_schedule


def test_sharing_gives_a_shared_block_the_gradient_of_both_applications() -> None:
    model = MobileLLM(small_config(n_layers=1, sharing_scheme="immediate", sharing_repeats=2))
    model(torch.randint(0, 101, (1, 6))).sum().backward()
    assert model.blocks[0].attn.qkv_proj.weight.grad.abs().sum() > 0


def test_tied_model_has_no_output_matrix() -> None:
    tied = MobileLLM(small_config(share_embeddings=True))
    assert tied.lm_head is None and tied.output_weight is tied.embed_tokens.weight
    assert "lm_head.weight" not in tied.state_dict()
    untied = MobileLLM(small_config(share_embeddings=False))
    assert untied.output_weight is untied.lm_head.weight


def test_init_is_normal_0_002_and_norms_start_at_one() -> None:
    model = MobileLLM(small_config(dim=256, n_heads=4, n_kv_heads=4, vocab_size=2000, n_layers=2))
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.equal(param, torch.ones_like(param)), name
        else:
            assert abs(param.mean().item()) < 2e-3 and abs(param.std().item() - 0.02) < 1e-3, name
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("axis", sorted(AXES))
def test_greedy_generate_with_cache_equals_full_recomputation(axis: str) -> None:
    model = MobileLLM(small_config(**AXES[axis])).eval()
    for param in model.parameters():  # larger weights: greedy choices are decisive, not ties
        if param.dim() > 1:
            torch.nn.init.normal_(param, std=0.2)
    prompt = torch.randint(0, 101, (3, 7))
    cached = model.generate(prompt, max_new_tokens=20, use_cache=True)
    recomputed = model.generate(prompt, max_new_tokens=20, use_cache=False)
    assert torch.equal(cached, recomputed)
    assert len(set(cached[:, 7:].flatten().tolist())) > 3  # real decoding, not one repeated token


@pytest.mark.parametrize("axis", ["attention=gqa", "sharing=immediatex2", "reverse_x3_untied_mqa"])
def test_chunked_prefill_through_the_cache_matches_one_forward(axis: str) -> None:
    cfg = small_config(**AXES[axis])
    model = MobileLLM(cfg).eval()
    tokens = torch.randint(0, 101, (2, 15))
    cache = KVCache.empty(cfg, batch=2, capacity=15, device=torch.device("cpu"), dtype=torch.float32)
    chunks = [model(tokens[:, :6], cache), model(tokens[:, 6:7], cache), model(tokens[:, 7:], cache)]
    assert torch.allclose(torch.cat(chunks, dim=1), model(tokens), atol=1e-5)
    assert cache.length == 15 and cache.keys.shape[0] == cfg.n_applied_layers


def test_a_shared_blocks_second_pass_has_its_own_cache_slot() -> None:
    cfg = small_config(n_layers=2, sharing_scheme="immediate", sharing_repeats=2)
    model = MobileLLM(cfg).eval()
    cache = KVCache.empty(cfg, batch=1, capacity=4, device=torch.device("cpu"), dtype=torch.float32)
    model(torch.randint(0, 101, (1, 4)), cache)
    # slots 0 and 1 are the same block applied twice: same weights, different inputs → different keys
    assert not torch.allclose(cache.keys[0], cache.keys[1])


def test_cache_overflow_is_a_clear_error() -> None:
    cfg = small_config()
    model = MobileLLM(cfg)
    cache = KVCache.empty(cfg, batch=1, capacity=4, device=torch.device("cpu"), dtype=torch.float32)
    with pytest.raises(ValueError, match="KV cache holds 4 tokens"):
        model(torch.randint(0, 101, (1, 5)), cache)


def test_bf16_forward_stays_close_to_fp32() -> None:
    model = MobileLLM(small_config()).eval()
    tokens = torch.randint(0, 101, (2, 16))
    reference = model(tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(tokens).float()
    assert (mixed - reference).abs().max() < 0.05 * reference.abs().max()


def test_sampling_respects_top_k_and_generator() -> None:
    model = MobileLLM(small_config()).eval()
    prompt = torch.randint(0, 101, (1, 3))
    draws = [
        model.generate(prompt, 8, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1))
        for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1])
