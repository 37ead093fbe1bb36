from __future__ import annotations

import pytest

from ablations.job.config import compose_config, job_config
from ablations.model.axes import block_schedule
from ablations.model.config import ModelConfig, derived_ffn_hidden
from ablations.records.errors import ConfigError
from tests.conftest import small_config


@pytest.mark.parametrize(
    ("scheme", "repeats", "expected"),
    [
        ("none", 1, (0, 1, 2)),
        ("none", 3, (0, 1, 2)),
        ("immediate", 1, (0, 1, 2)),
        ("immediate", 2, (0, 0, 1, 1, 2, 2)),
        ("immediate", 3, (0, 0, 0, 1, 1, 1, 2, 2, 2)),
        ("repeat_all_over", 2, (0, 1, 2, 0, 1, 2)),
        ("repeat_all_over", 3, (0, 1, 2, 0, 1, 2, 0, 1, 2)),
        ("reverse", 2, (0, 1, 2, 2, 1, 0)),
        ("reverse", 3, (0, 1, 2, 2, 1, 0, 0, 1, 2)),
    ],
)
def test_block_schedule_matches_the_paper_figure_6(
    scheme: str, repeats: int, expected: tuple[int, ...]
) -> None:
    assert block_schedule(3, scheme, repeats) == expected


@pytest.mark.parametrize(
    ("dim", "hidden"), [(576, 1536), (960, 2560), (1152, 3072), (1280, 3584), (1600, 4352)]
)
def test_swiglu_hidden_follows_the_llama_rule_for_every_release(dim: int, hidden: int) -> None:
    assert derived_ffn_hidden(dim, "swiglu", None, 256) == hidden  # FACTS.md §2


def test_ffn_hidden_multiplier_and_rounding() -> None:
    assert derived_ffn_hidden(512, "relu", None, 256) == 2048  # 4·dim
    assert derived_ffn_hidden(512, "relu", 3.0, 256) == 1536
    assert derived_ffn_hidden(100, "gelu", 1.0, 64) == 128  # rounded up
    assert small_config(ffn_multiplier=2.0, multiple_of=16).ffn_hidden == 128


def test_optional_fields_resolve_to_the_concrete_shape() -> None:
    cfg = ModelConfig(dim=576, n_layers=2, n_heads=9)
    assert (cfg.n_kv_heads, cfg.head_dim, cfg.ffn_hidden) == (9, 64, 1536)
    assert ModelConfig(sharing_scheme="none", sharing_repeats=4).sharing_repeats == 1  # none shares nothing
    assert small_config(sharing_scheme="immediate", sharing_repeats=2).n_applied_layers == 6


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        (dict(dim=100, n_heads=3), "dim (100) must be divisible by n_heads (3)"),
        (dict(n_heads=4, n_kv_heads=3), "n_heads (4) must be divisible by n_kv_heads (3)"),
        (dict(dim=60, n_heads=4, n_kv_heads=4), "head_dim (15) must be even"),
        (dict(head_dim=15), "head_dim (15) must be even"),
        (dict(ffn_type="swish"), "ffn_type must be one of"),
        (dict(norm_type="batchnorm"), "norm_type must be one of"),
        (dict(sharing_scheme="cycle"), "sharing_scheme must be one of"),
        (
            dict(sharing_scheme="immediate", sharing_repeats=0),
            "sharing_repeats must be an integer >= 1 (got 0)",
        ),
        (dict(vocab_size=0), "vocab_size must be a positive integer (got 0)"),
        (dict(vocab_size=-5), "vocab_size must be a positive integer (got -5)"),
        (dict(n_layers=0), "n_layers must be a positive integer"),
        (dict(norm_eps=0.0), "norm_eps must be > 0"),
        (dict(ffn_hidden=0), "ffn_hidden must be a positive integer or null (got 0)"),
    ],
)
def test_invalid_architecture_names_the_rule_and_values(overrides: dict, rule: str) -> None:
    with pytest.raises(ConfigError, match="invalid model config") as excinfo:
        small_config(**overrides)
    assert rule in str(excinfo.value)


def test_all_violations_are_reported_in_one_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        small_config(ffn_type="nope", sharing_scheme="nope", vocab_size=0)
    assert len(excinfo.value.violations) == 3


def test_unknown_field_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['n_layer'\]"):
        ModelConfig.from_dict({"n_layer": 3})


PRESETS = {
    "mobilellm_125m": (30, 576, 9, 3, 1536),
    "mobilellm_350m": (32, 960, 15, 5, 2560),
    "mobilellm_600m": (40, 1152, 18, 6, 3072),
    "mobilellm_1b": (54, 1280, 20, 5, 3584),
    "mobilellm_1.5b": (54, 1600, 25, 5, 4352),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_compose_to_the_released_configs(preset: str) -> None:
    for name, sharing in ((preset, ("none", 1)), (f"{preset}_ls", ("immediate", 2))):
        cfg = job_config(compose_config([f"model={name}"])).model
        shape = (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_hidden)
        assert shape == PRESETS[preset]
        assert (cfg.vocab_size, cfg.share_embeddings, cfg.max_seq_len, cfg.head_dim) == (
            32000,
            True,
            2048,
            64,
        )
        assert (cfg.sharing_scheme, cfg.sharing_repeats) == sharing


def test_overrides_are_validated_when_composed() -> None:
    cfg = compose_config(["model=mobilellm_125m", "model.n_kv_heads=2"])
    with pytest.raises(ConfigError, match=r"n_heads \(9\) must be divisible by n_kv_heads \(2\)"):
        job_config(cfg)


def test_a_misspelt_key_in_a_preset_yaml_is_refused_at_compose_time(tmp_path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text("defaults:\n  - tiny\n  - _self_\n\nn_layrs: 3\n")
    with pytest.raises(ConfigError, match=r"In 'model/typo'.*\n.*Key 'n_layrs' not in 'ModelConfig'"):
        compose_config([f"hydra.searchpath=[file://{tmp_path}]", "model=typo"])
