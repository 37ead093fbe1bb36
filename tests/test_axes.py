"""The axis registries: every registered value is consistent with the model, the schedules and the analysis.

Counts, FLOPs, causality, the KV cache and the HF round trip are checked for every registered value by the
tests parametrised over `tests.conftest.AXES` (generated from the registries); these check the rest.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ablations.model.architecture import MobileLLM, Norm
from ablations.model.axes import (
    ATTENTION_LAYOUTS,
    FFN_KINDS,
    NORMS,
    SHARING_SCHEMES,
    attention_layout,
    block_schedule,
)
from ablations.model.config import ModelConfig
from analysis.artefacts import ffn_row, roadmap_step, sharing_row
from analysis.paper import paper_values


def paper_rows(artefact: str) -> set[str]:
    values = paper_values()
    return set(values.loc[values["artefact"] == artefact, "row"])


@pytest.mark.parametrize("name", sorted(SHARING_SCHEMES))
@pytest.mark.parametrize("repeats", [2, 3, 4])
def test_every_sharing_scheme_applies_each_stored_block_k_times(name: str, repeats: int) -> None:
    schedule = block_schedule(5, name, repeats)
    k = 1 if name == "none" else repeats
    assert sorted(schedule) == sorted(list(range(5)) * k)
    assert block_schedule(5, name, 1) == (0, 1, 2, 3, 4)  # one pass shares nothing, whatever the scheme


@pytest.mark.parametrize("name", sorted(FFN_KINDS))
def test_every_ffn_kind_builds_and_maps_to_its_paper_row(name: str) -> None:
    kind = FFN_KINDS[name]
    model = MobileLLM(
        ModelConfig(dim=64, n_layers=1, n_heads=4, vocab_size=50, ffn_type=name, multiple_of=32)
    )
    assert model.blocks[0].ffn.up_proj.out_features == (2 if kind.gated else 1) * model.config.ffn_hidden
    variants = pd.DataFrame({"model/ffn_type": [name]})
    assert ffn_row(variants).tolist() == [kind.paper_row]
    if kind.paper_row is not None:
        assert kind.paper_row in paper_rows("ffn")
    else:  # no paper row: never filed on the roadmap under another FFN's step
        assert roadmap_step(variants.assign(**{"model/share_embeddings": False})).isna().all()


@pytest.mark.parametrize("name", sorted(SHARING_SCHEMES))
def test_every_sharing_scheme_maps_to_its_table_2_row(name: str) -> None:
    scheme = SHARING_SCHEMES[name]
    variants = pd.DataFrame({"model/sharing_scheme": [name], "model/sharing_repeats": [2]})
    assert sharing_row(variants).tolist() == [scheme.paper_row]
    if scheme.paper_row is not None:
        assert scheme.paper_row in paper_rows("table2") | {"none"}


@pytest.mark.parametrize("name", sorted(ATTENTION_LAYOUTS))
def test_every_attention_layout_is_recognised_and_buildable(name: str) -> None:
    layout = ATTENTION_LAYOUTS[name]
    heads = 8
    kvs = [kv for kv in (8, 4, 2, 1) if layout.matches(heads, kv)]
    assert kvs, f"no head configuration of 8 query heads has layout {name}"
    for kv in kvs:
        assert attention_layout(heads, kv) == name
        ModelConfig(dim=128, n_layers=1, n_heads=heads, n_kv_heads=kv, vocab_size=50)
    assert sum(layout.matches(heads, kv) for layout in ATTENTION_LAYOUTS.values() for kv in (8, 4, 2, 1)) == 4


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_kind_builds_with_its_parameter_count(name: str) -> None:
    cfg = ModelConfig(dim=64, n_layers=1, n_heads=4, vocab_size=50, norm_type=name)
    assert sum(p.numel() for p in Norm(cfg).parameters()) == NORMS[name].params_per_channel * 64
