from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from ablations.model.architecture import MobileLLM
from ablations.model.axes import FFN_KINDS, NORMS
from ablations.model.checkpoint import load_model_dir, save_model_dir
from ablations.model.config import ModelConfig
from ablations.model.hf_interop import ConversionError, export_llama, import_llama
from tests.conftest import AXES, small_config

EXPORTABLE = {
    "gqa_tied": dict(),
    "mha_untied_theta": dict(n_kv_heads=4, share_embeddings=False, rope_theta=500000.0),
    "mqa_head_dim": dict(n_kv_heads=1, head_dim=24, vocab_size=257),
    "deep_narrow": dict(n_layers=6, dim=32, n_heads=2, n_kv_heads=1, ffn_hidden=80),
}


def randomised(model: MobileLLM) -> MobileLLM:
    """Break the ones-init of the norms too, so a swapped norm weight would show."""
    for param in model.parameters():
        torch.nn.init.normal_(param, mean=0.0 if param.dim() > 1 else 1.0, std=0.1)
    return model.eval()


def logits_agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(EXPORTABLE))
def test_export_loads_in_transformers_with_equal_logits(name: str, tmp_path: Path) -> None:
    model = randomised(MobileLLM(small_config(**EXPORTABLE[name])))
    export_llama(model, tmp_path)
    reference = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, model.config.vocab_size, (2, 24))
    with torch.no_grad():
        assert logits_agree(model(tokens), reference(tokens).logits)
    assert reference.config.tie_word_embeddings == model.config.share_embeddings


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_import_of_a_transformers_llama_gives_equal_logits(tied: bool, theta: float, tmp_path: Path) -> None:
    config = LlamaConfig(
        vocab_size=311,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        rope_theta=theta,
        tie_word_embeddings=tied,
        rms_norm_eps=1e-6,
        max_position_embeddings=128,
    )
    reference = LlamaForCausalLM(config).eval()
    for param in reference.parameters():
        torch.nn.init.normal_(param, mean=0.0 if param.dim() > 1 else 1.0, std=0.1)
    reference.save_pretrained(tmp_path)
    model = import_llama(tmp_path).eval()
    assert model.config.share_embeddings == tied and model.config.rope_theta == theta
    assert model.config.norm_eps == 1e-6 and model.config.head_dim == 8
    tokens = torch.randint(0, 311, (2, 30))
    with torch.no_grad():
        assert logits_agree(model(tokens), reference(tokens).logits)


def test_sharded_checkpoint_is_imported(tmp_path: Path) -> None:
    model = randomised(MobileLLM(small_config()))
    export_llama(model, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in halves.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    tokens = torch.randint(0, 101, (1, 9))
    with torch.no_grad():
        assert logits_agree(import_llama(tmp_path)(tokens), model(tokens))


@pytest.mark.parametrize("scheme", ["immediate", "repeat_all_over", "reverse"])
def test_shared_model_exports_materialised_and_imports_back_shared(scheme: str, tmp_path: Path) -> None:
    model = randomised(MobileLLM(small_config(sharing_scheme=scheme, sharing_repeats=2)))
    export_llama(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["ablations"]["block_schedule"] == list(
        model.block_schedule
    )
    reference = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    back = import_llama(tmp_path).eval()
    assert back.block_schedule == model.block_schedule and len(back.blocks) == 3
    tokens = torch.randint(0, 101, (2, 16))
    with torch.no_grad():
        assert logits_agree(reference(tokens).logits, model(tokens))
        assert logits_agree(back(tokens), model(tokens))


def exportable(cfg: ModelConfig) -> bool:
    """LLaMA checkpoints hold a gated MLP with a known activation, and RMSNorm (the registries say which)."""
    return FFN_KINDS[cfg.ffn_type].hf_hidden_act is not None and NORMS[cfg.norm_type].hf_exportable


@pytest.mark.parametrize("axis", sorted(AXES))
def test_every_axis_value_round_trips_through_transformers_or_is_refused(axis: str, tmp_path: Path) -> None:
    cfg = small_config(**AXES[axis])
    model = randomised(MobileLLM(cfg))
    if not exportable(cfg):
        with pytest.raises(ConversionError, match="cannot be exported"):
            export_llama(model, tmp_path)
        assert not (tmp_path / "model.safetensors").exists()
        return
    export_llama(model, tmp_path)
    assert (
        json.loads((tmp_path / "config.json").read_text())["hidden_act"]
        == FFN_KINDS[cfg.ffn_type].hf_hidden_act
    )
    reference = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    back = import_llama(tmp_path).eval()
    assert (back.config.ffn_type, back.config.norm_type) == (cfg.ffn_type, cfg.norm_type)
    assert back.block_schedule == model.block_schedule
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        assert logits_agree(reference(tokens).logits, model(tokens))
        assert logits_agree(back(tokens), model(tokens))


def test_unsupported_llama_features_are_named(tmp_path: Path) -> None:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        attention_bias=True,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(ConversionError, match="biases"):
        import_llama(tmp_path)


def test_native_model_dir_round_trips_any_variant(tmp_path: Path) -> None:
    model = randomised(MobileLLM(small_config(ffn_type="relu", sharing_scheme="reverse", sharing_repeats=3)))
    save_model_dir(model, tmp_path)
    back = load_model_dir(tmp_path)
    tokens = torch.randint(0, 101, (1, 11))
    assert back.config == model.config
    with torch.no_grad():
        assert torch.equal(back(tokens), model(tokens))
    with pytest.raises(FileNotFoundError, match=r"model_config\.json is missing"):
        load_model_dir(tmp_path / "nowhere")


def released_mobilellm_dir(out: Path, layer_sharing: bool) -> dict[str, torch.Tensor]:
    """A tiny checkpoint in the layout of the released facebook/MobileLLM-* ones (FACTS §2–3): their
    config.json keys, `share_embedding` with tie_word_embeddings false, fp16 tensors, no lm_head."""
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "attention_bias": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "vocab_size": 320,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "pretraining_tp": 1,
        "torch_dtype": "float16",
        "transformers_version": "4.34.1",
        "use_cache": True,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "share_embedding": True,
        "layer_sharing": layer_sharing,
    }
    shapes = {
        "input_layernorm.weight": (64,),
        "self_attn.q_proj.weight": (64, 64),
        "self_attn.k_proj.weight": (32, 64),
        "self_attn.v_proj.weight": (32, 64),
        "self_attn.o_proj.weight": (64, 64),
        "post_attention_layernorm.weight": (64,),
        "mlp.gate_proj.weight": (160, 64),
        "mlp.up_proj.weight": (160, 64),
        "mlp.down_proj.weight": (64, 160),
    }
    torch.manual_seed(0)

    def weight(*shape: int) -> torch.Tensor:
        mean = 1.0 if len(shape) == 1 else 0.0
        return (mean + 0.1 * torch.randn(shape)).to(torch.float16)

    tensors = {"model.embed_tokens.weight": weight(320, 64), "model.norm.weight": weight(64)}
    for layer in range(3):
        tensors |= {f"model.layers.{layer}.{name}": weight(*shape) for name, shape in shapes.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return tensors


def reference_llama(tensors: dict[str, torch.Tensor], repeats: int) -> LlamaForCausalLM:
    """transformers' LLaMA with each stored layer materialised `repeats` times in a row, logits from the
    embedding: the released model's forward without a KV cache."""
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3 * repeats,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )
    state = {"model.embed_tokens.weight": tensors["model.embed_tokens.weight"]}
    state |= {"model.norm.weight": tensors["model.norm.weight"]}
    for key, value in tensors.items():
        if key.startswith("model.layers."):
            layer, name = key.removeprefix("model.layers.").split(".", 1)
            for copy in range(repeats):
                state[f"model.layers.{int(layer) * repeats + copy}.{name}"] = value
    reference = LlamaForCausalLM(config).eval()
    missing, unexpected = reference.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected
    reference.tie_weights()
    return reference


@pytest.mark.parametrize("layer_sharing", [False, True])
def test_released_mobilellm_layout_imports_with_its_sharing_flags(
    layer_sharing: bool, tmp_path: Path
) -> None:
    tensors = released_mobilellm_dir(tmp_path, layer_sharing)
    if layer_sharing:  # the LS release is a pickled state dict, read tensors-only
        torch.save(tensors, tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    assert not any(key.startswith("lm_head") for key in tensors)
    model = import_llama(tmp_path).eval()
    assert model.config.share_embeddings and "lm_head.weight" not in model.state_dict()
    repeats = 2 if layer_sharing else 1
    assert model.config.block_schedule == tuple(i for i in range(3) for _ in range(repeats))
    reference = reference_llama(tensors, repeats)
    tokens = torch.randint(0, 320, (2, 20))
    with torch.no_grad():
        assert logits_agree(model(tokens), reference(tokens, use_cache=False).logits)


def test_tie_word_embeddings_defaults_to_untied_as_in_transformers(tmp_path: Path) -> None:
    config = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    reference = LlamaForCausalLM(config).eval()
    for param in reference.parameters():
        torch.nn.init.normal_(param, mean=0.0 if param.dim() > 1 else 1.0, std=0.1)
    reference.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.pop("tie_word_embeddings", None)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    model = import_llama(tmp_path).eval()
    assert not model.config.share_embeddings
    tokens = torch.randint(0, 97, (1, 12))
    with torch.no_grad():
        assert logits_agree(model(tokens), reference(tokens).logits)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["lm_head.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConversionError, match=r"untied .* no lm_head\.weight"):
        import_llama(tmp_path)
