"""ExecuTorch programs of MobileLLM variants: parity with eager for every registered axis value, blocks stored
once, quantized programs run, and the limits a program refuses by name.

Exports are the cost (seconds each at these shapes), so each program is built once per module and serves
several tests; the parity programs are few covering combinations of the registries (combination i takes
value i % len(registry) of every axis), so a new registry entry is exported without new test code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("executorch")

from ablations.device.export import (
    describe,
    export_exportable,
    export_program,
    runner_metadata,
    undelegated_matmuls,
    write_program,
)
from ablations.device.program import ExportableLM
from ablations.device.quantize import QUANT_RECIPES, quantize
from ablations.device.runtime import DeviceProgram, set_threads
from ablations.model.architecture import MobileLLM
from ablations.model.axes import ATTENTION_LAYOUTS, FFN_KINDS, NORMS, SHARING_SCHEMES
from ablations.model.config import ModelConfig
from tests.conftest import small_config

MAX_SEQ_LEN = 48
PROMPT, NEW_TOKENS = 8, 32


def covering_axes() -> dict[str, dict[str, object]]:
    """The fewest configs in which every registered axis value (and tied/untied, repeats 2 and 3) appears."""
    kv_heads = {
        name: next(kv for kv in (4, 2, 1) if layout.matches(4, kv))
        for name, layout in ATTENTION_LAYOUTS.items()
    }
    axes: dict[str, list] = {
        "ffn_type": list(FFN_KINDS),
        "norm_type": list(NORMS),
        "sharing_scheme": list(SHARING_SCHEMES),
        "n_kv_heads": list(kv_heads.values()),
        "share_embeddings": [True, False],
        "sharing_repeats": [3, 2],  # this order puts 3 on one scheme, 2 on two: the fewest block applications
    }
    combos = {}
    for i in range(max(len(values) for values in axes.values())):
        values = {axis: options[i % len(options)] for axis, options in axes.items()}
        combos[describe(small_config(n_layers=2, **values))] = values
    return combos


COVERING = covering_axes()


def randomised(cfg: ModelConfig) -> MobileLLM:
    """A model whose every weight (norms too) is random, so a swapped or skipped weight shows in the logits."""
    torch.manual_seed(0)
    model = MobileLLM(cfg)
    for param in model.parameters():
        torch.nn.init.normal_(param, mean=0.0 if param.dim() > 1 else 1.0, std=0.1)
    return model.eval()


def loaded(buffer: bytes, directory: Path) -> DeviceProgram:
    path = directory / "program.pte"
    path.write_bytes(buffer)
    return DeviceProgram.load(path)


@pytest.fixture(scope="module", params=list(COVERING.values()), ids=list(COVERING))
def covering_program(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[MobileLLM, DeviceProgram]:
    model = randomised(small_config(n_layers=2, **request.param))
    return model, loaded(export_program(model, MAX_SEQ_LEN), tmp_path_factory.mktemp("covering"))


def test_the_covering_configs_hold_every_registered_axis_value() -> None:
    configs = [small_config(n_layers=2, **values) for values in COVERING.values()]
    assert {c.ffn_type for c in configs} == set(FFN_KINDS)
    assert {c.norm_type for c in configs} == set(NORMS)
    assert {c.sharing_scheme for c in configs} == set(SHARING_SCHEMES)
    assert {c.share_embeddings for c in configs} == {True, False}
    assert {c.sharing_repeats for c in configs if c.sharing_scheme != "none"} >= {2, 3}
    assert {describe(c).split("attention=")[1].split()[0] for c in configs} == set(ATTENTION_LAYOUTS)


@torch.no_grad()
def test_prefill_and_every_decode_step_match_eager(covering_program: tuple[MobileLLM, DeviceProgram]) -> None:
    model, program = covering_program
    tokens = torch.randint(0, model.config.vocab_size, (1, 24))
    eager = model(tokens)
    program.reset()
    torch.testing.assert_close(program.forward(tokens[:, :12], 0), eager[:, :12], atol=1e-4, rtol=0)
    for pos in range(12, 20):  # decode: one token at a time against the cache
        torch.testing.assert_close(
            program.forward(tokens[:, pos : pos + 1], pos), eager[:, pos : pos + 1], atol=1e-4, rtol=0
        )
    # a chunk after cached tokens (chunked prefill): the dynamic length with a cache offset
    torch.testing.assert_close(program.forward(tokens[:, 20:24], 20), eager[:, 20:24], atol=1e-4, rtol=0)


@torch.no_grad()
def test_greedy_decoding_gives_generates_tokens(covering_program: tuple[MobileLLM, DeviceProgram]) -> None:
    model, program = covering_program
    prompt = torch.randint(0, model.config.vocab_size, (1, PROMPT))
    expected = model.generate(prompt, NEW_TOKENS)
    assert torch.equal(program.generate(prompt, NEW_TOKENS), expected)


def test_the_program_carries_the_llm_runner_metadata(
    covering_program: tuple[MobileLLM, DeviceProgram],
) -> None:
    model, program = covering_program
    cfg = model.config
    assert (program.max_seq_len, program.vocab_size, program.max_prompt) == (
        MAX_SEQ_LEN,
        cfg.vocab_size,
        MAX_SEQ_LEN - 1,
    )
    expected = runner_metadata(cfg, MAX_SEQ_LEN, bos_id=1, eos_ids=(2,))
    names = set(expected) | {"forward"}
    assert program._program.method_names == names
    for name, value in expected.items():
        assert program._program.load_method(name).execute([]) == (
            value if isinstance(value, list) else [value]
        )
    # the plan holds the KV cache (keys and values of every block application) besides the activations
    kv_cache_bytes = 2 * cfg.n_applied_layers * cfg.n_kv_heads * MAX_SEQ_LEN * cfg.head_dim * 4
    assert program.planned_memory_bytes > kv_cache_bytes


def test_exportable_lm_holds_the_models_weights_once() -> None:
    model = MobileLLM(small_config(n_layers=2, sharing_scheme="immediate", sharing_repeats=2))
    wrapper = ExportableLM(model, MAX_SEQ_LEN)
    params = dict(wrapper.named_parameters())
    assert sum(p.numel() for p in params.values()) == sum(p.numel() for p in model.parameters())
    assert all(p is q for p, q in zip(wrapper.parameters(), model.parameters(), strict=True))
    assert len(wrapper.caches) == 4  # one cache per application; not part of the state dict
    assert not any("caches" in key for key in wrapper.state_dict())


# --- sizes: a block applied twice is stored once ---------------------------------------------------------

SIZE_VARIANTS = {
    "one block": dict(n_layers=1),
    "one block applied twice": dict(n_layers=1, sharing_scheme="immediate", sharing_repeats=2),
    "two blocks": dict(n_layers=2),
}


@pytest.fixture(scope="module")
def size_programs() -> dict[str, bytes]:
    """Programs whose blocks dominate their size (width 128), as the Table 7 comparison's models."""
    return {
        name: export_program(randomised(small_config(dim=128, **overrides)), MAX_SEQ_LEN)
        for name, overrides in SIZE_VARIANTS.items()
    }


def test_a_shared_block_is_stored_once(size_programs: dict[str, bytes]) -> None:
    plain, shared, double = (len(size_programs[name]) for name in SIZE_VARIANTS)
    print(f"program bytes: one block {plain}, applied twice {shared}, two blocks {double}")
    block_bytes = 4 * sum(
        p.numel() for p in randomised(small_config(dim=128, n_layers=1)).blocks.parameters()
    )
    assert abs(shared - plain) / plain < 0.02  # applied twice: per-application constants only, not a block
    assert shared - plain < 0.05 * block_bytes
    # twice the stored blocks: the program grows by one block's fp32 weights
    assert double - plain == pytest.approx(block_bytes, rel=0.05)


# --- quantized programs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantized_model() -> MobileLLM:
    """The paper's layout (SwiGLU, GQA, tied embeddings) at widths the 32-channel groups divide."""
    return randomised(small_config(n_layers=2))


def test_quant_recipes_are_the_three_named() -> None:
    assert tuple(QUANT_RECIPES) == ("none", "8da4w", "w8a8")


def test_quantize_refuses_widths_the_group_size_does_not_divide() -> None:
    model = MobileLLM(small_config(ffn_type="gelu", ffn_hidden=100))
    with pytest.raises(ValueError, match=r"blocks\.0\.ffn\.down_proj has 100 input channels.*group size 32"):
        quantize(model, "8da4w")
    with pytest.raises(ValueError, match="quant must be one of"):
        export_program(model, MAX_SEQ_LEN, quant="int2")


@pytest.mark.slow
@pytest.mark.parametrize("quant", [name for name in QUANT_RECIPES if name != "none"])
@torch.no_grad()
def test_quantized_programs_run_and_report_their_divergence(
    quant: str, quantized_model: MobileLLM, tmp_path: Path
) -> None:
    model = quantized_model
    path = write_program(model, tmp_path / "program.pte", MAX_SEQ_LEN, quant=quant)
    program = DeviceProgram.load(path)
    tokens = torch.randint(0, model.config.vocab_size, (1, 16))
    logits = program.forward(tokens, 0)
    fp32, eager_quantized = model(tokens), quantize(model, quant)(tokens)
    divergence = (logits - fp32).abs().max().item() / fp32.abs().max().item()
    kernels = (logits - eager_quantized).abs().max().item() / fp32.abs().max().item()
    agreement = (logits.argmax(-1) == fp32.argmax(-1)).float().mean().item()
    print(
        f"{quant}: {program.pte_bytes} B, max |logits - fp32| / max |fp32| = {divergence:.4f}, "
        f"vs eager {quant} {kernels:.4f}, top-1 agreement {agreement:.2f}"
    )
    assert torch.isfinite(logits).all()
    assert divergence < 0.5 and kernels < 0.1  # loose: random weights quantize worse than trained ones
    assert program.generate(tokens[:, :PROMPT], 4).shape == (1, PROMPT + 4)


def test_a_quantized_tied_model_gets_its_own_output_layer(quantized_model: MobileLLM) -> None:
    quantized = quantize(quantized_model, "w8a8")
    assert quantized is not quantized_model and quantized_model.lm_head is None  # the original is untouched
    assert quantized.lm_head is not None and quantized.lm_head.weight is not quantized.embed_tokens.weight
    assert quantize(quantized_model, "none") is quantized_model


# --- refusals --------------------------------------------------------------------------------------------


def test_refusals_name_the_limit(size_programs: dict[str, bytes], tmp_path: Path) -> None:
    program = loaded(size_programs["one block"], tmp_path)
    with pytest.raises(ValueError, match=f"exceeds max_prompt {MAX_SEQ_LEN - 1}"):
        program.generate(torch.zeros(1, MAX_SEQ_LEN, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=f"max_seq_len is {MAX_SEQ_LEN}"):
        program.generate(torch.zeros(1, 8, dtype=torch.long), MAX_SEQ_LEN)
    with pytest.raises(ValueError, match=f"exceed the KV cache: max_seq_len {MAX_SEQ_LEN}"):
        program.forward(torch.zeros(1, 1, dtype=torch.long), MAX_SEQ_LEN)
    with pytest.raises(ValueError, match=f"exceed max_prompt {MAX_SEQ_LEN - 1}"):
        program.forward(torch.zeros(1, MAX_SEQ_LEN, dtype=torch.long), 0)
    # the last position of the cache is usable: a prompt of max_prompt tokens, then one decode step
    assert program.generate(torch.zeros(1, MAX_SEQ_LEN - 1, dtype=torch.long), 2).shape == (
        1,
        MAX_SEQ_LEN + 1,
    )
    with pytest.raises(ValueError, match="max_seq_len must be >= 3"):
        ExportableLM(MobileLLM(small_config()), 2)
    (tmp_path / "text.pte").write_text("not a program")
    with pytest.raises(ValueError, match=r"text\.pte is not a loadable ExecuTorch program"):
        DeviceProgram.load(tmp_path / "text.pte")


def test_the_thread_pool_is_resized_and_reported() -> None:
    assert set_threads(2) == 2
    assert set_threads(1) == 1
    with pytest.raises(ValueError, match="threads must be >= 1"):
        set_threads(0)


def test_lowering_errors_name_the_variant_and_find_matmuls_left_outside_the_delegate() -> None:
    cfg = small_config(
        n_layers=2,
        ffn_type="geglu",
        norm_type="layernorm",
        n_kv_heads=1,
        sharing_scheme="reverse",
        sharing_repeats=3,
    )
    assert describe(cfg) == (
        "ffn_type=geglu norm_type=layernorm attention=mqa (4 heads, 1 kv) sharing_scheme=reverse "
        "sharing_repeats=3 tied embeddings"
    )
    # before lowering every matrix product is outside a delegate: the check export_program applies after it
    unlowered = export_exportable(ExportableLM(MobileLLM(cfg), MAX_SEQ_LEN))
    assert undelegated_matmuls(unlowered) == ["aten.bmm.default", "aten.linear.default"]
