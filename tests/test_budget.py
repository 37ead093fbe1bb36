from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ablations.job.config import compose_config, job_config
from ablations.model.architecture import MobileLLM
from ablations.model.config import ModelConfig
from ablations.model.counts import count_params, flops_per_token, solve_iso_params
from ablations.records.errors import ConfigError
from tests.conftest import AXES, small_config
from tests.test_model import reference_attention

# FACTS.md §7: shared embedding, no lm_head, RMSNorm weights included; the model card truncates these.
MODEL_CARD = {
    "mobilellm_125m": 124_635_456,  # 124.6M
    "mobilellm_350m": 345_355_200,  # 345.3M
    "mobilellm_600m": 603_188_352,  # 603.1M
    "mobilellm_1b": 1_005_461_760,  # 1.01B
    "mobilellm_1.5b": 1_511_188_800,  # 1.51B
}


@pytest.mark.parametrize("preset", sorted(MODEL_CARD))
def test_preset_counts_equal_the_model_card(preset: str) -> None:
    plain = count_params(job_config(compose_config([f"model={preset}"])).model)
    shared = count_params(job_config(compose_config([f"model={preset}_ls"])).model)
    assert plain.total == shared.total == MODEL_CARD[preset]
    assert plain.applied == plain.total
    assert shared.applied == plain.total + plain.n_blocks * plain.per_block  # every block applied twice
    assert plain.output == 0 and plain.non_embedding == plain.total - plain.embedding


def test_125m_by_hand() -> None:
    counts = count_params(job_config(compose_config(["model=mobilellm_125m"])).model)
    assert counts.attention_per_block == 576 * 576 * 2 + 576 * 192 * 2 == 884_736
    assert counts.ffn_per_block == 3 * 576 * 1536 == 2_654_208
    assert counts.embedding == 32000 * 576 == 18_432_000
    assert counts.non_embedding == 30 * (884_736 + 2_654_208 + 2 * 576) + 576


@pytest.mark.parametrize(
    ("n_layers", "tied", "expected_m"), [(30, False, 135.04), (30, True, 118.65), (32, True, 125.47)]
)
def test_paper_table_1_embedding_sharing_rows(n_layers: int, tied: bool, expected_m: float) -> None:
    # dim 512, MHA, FFN 1536, vocab 32000: ~135M untied, ~119M tied, ~125M tied with 32 layers (FACTS.md §8.4)
    cfg = ModelConfig(dim=512, n_layers=n_layers, n_heads=8, ffn_hidden=1536, share_embeddings=tied)
    assert round(count_params(cfg).total / 1e6, 2) == expected_m


@pytest.mark.parametrize("axis", sorted(AXES))
def test_counts_equal_the_instantiated_module(axis: str) -> None:
    cfg = small_config(**AXES[axis])
    model = MobileLLM(cfg)
    counts = count_params(cfg)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.embedding == model.embed_tokens.weight.numel()
    assert counts.output == (0 if model.lm_head is None else model.lm_head.weight.numel())
    assert counts.per_block == sum(p.numel() for p in model.blocks[0].parameters())
    assert counts.applied == counts.total + (len(model.block_schedule) - cfg.n_layers) * counts.per_block


@pytest.mark.parametrize("axis", sorted(AXES))
def test_flops_per_token_equal_torchs_flop_counter(axis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward + backward FLOPs counted by torch (matmuls, attention written as matmuls) per token."""
    cfg = small_config(**AXES[axis])
    model = MobileLLM(cfg)
    monkeypatch.setattr(F, "scaled_dot_product_attention", reference_attention)  # countable matmuls
    batch, seq = 2, 16
    with FlopCounterMode(display=False) as counter:
        model(torch.randint(0, cfg.vocab_size, (batch, seq))).sum().backward()
    # the causal mask's masked_fill and softmax are not FLOPs in this convention; matmuls are all there is
    assert counter.get_total_flops() == flops_per_token(cfg, seq_len=seq) * batch * seq


def test_flops_125m_by_hand() -> None:
    cfg = job_config(compose_config(["model=mobilellm_125m"])).model
    n_matmul = 30 * (884_736 + 2_654_208) + 32000 * 576
    assert flops_per_token(cfg) == 6 * n_matmul + 12 * 30 * 576 * 2048
    ls = job_config(compose_config(["model=mobilellm_125m_ls"])).model
    assert flops_per_token(ls) == 6 * (n_matmul + 30 * (884_736 + 2_654_208)) + 12 * 60 * 576 * 2048


def test_iso_width_solver_finds_the_closest_valid_width() -> None:
    template = ModelConfig(dim=512, n_layers=30, n_heads=8, n_kv_heads=8, head_dim=64, ffn_multiplier=3.0)
    solved = solve_iso_params(125_000_000, template, vary="dim")
    assert solved.dim % 64 == 0 and solved.n_heads == solved.dim // 64 and solved.n_kv_heads == solved.n_heads
    assert solved.ffn_hidden == 3 * solved.dim  # the template's rule, recomputed for the new width
    total = count_params(solved).total
    for neighbour in (solved.dim - 64, solved.dim + 64):
        other = count_params(
            dataclasses.replace(
                solved, dim=neighbour, n_heads=neighbour // 64, n_kv_heads=neighbour // 64, ffn_hidden=None
            )
        ).total
        assert abs(total - 125_000_000) <= abs(other - 125_000_000)


def test_iso_width_solver_recovers_the_350m_release_from_the_125m_recipe() -> None:
    template = job_config(
        compose_config(["model=mobilellm_125m", "model.n_layers=32"])
    ).model  # 9 heads / 3 kv
    solved = solve_iso_params(345_300_000, dataclasses.replace(template, ffn_hidden=None), vary="dim")
    assert (solved.dim, solved.n_heads, solved.n_kv_heads, solved.head_dim, solved.ffn_hidden) == (
        960,
        15,
        5,
        64,
        2560,
    )
    assert count_params(solved).total == MODEL_CARD["mobilellm_350m"]


def test_iso_ffn_solver_matches_relu_to_swiglu() -> None:
    swiglu = job_config(compose_config(["model=mobilellm_125m"])).model
    relu = solve_iso_params(
        count_params(swiglu).total, dataclasses.replace(swiglu, ffn_type="relu"), "ffn_hidden"
    )
    assert relu.ffn_hidden == 2304  # 2 · 576 · 2304 = 3 · 576 · 1536 exactly: 1.5× the SwiGLU hidden
    assert count_params(relu).total == count_params(swiglu).total


def test_iso_solver_rejects_a_bad_request() -> None:
    with pytest.raises(ConfigError, match="budget must be positive"):
        solve_iso_params(0, small_config())
    with pytest.raises(ConfigError, match="vary must be"):
        solve_iso_params(10, small_config(), vary="depth")  # type: ignore[arg-type]
