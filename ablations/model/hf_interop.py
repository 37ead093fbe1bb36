"""Conversion to and from Hugging Face LLaMA checkpoints (config.json + safetensors), without transformers.

- `export_llama(model, out_dir)` writes a directory `transformers.LlamaForCausalLM.from_pretrained` loads
  as is. A layer-shared model is exported as its materialised block sequence (one HF layer per block
  application, weights copied); config.json then records the schedule under "ablations".
- `import_llama(src_dir)` builds our model from any LLaMA-architecture checkpoint (tied or untied
  embeddings, any rope theta, any vocab, sharded or single safetensors, or a tensors-only
  `pytorch_model.bin`); a directory we exported with
  sharing is folded back into its stored blocks. The released MobileLLM checkpoints (facebook/MobileLLM-*)
  add two flags to config.json: `share_embedding` (logits from the input embedding, no `lm_head` stored,
  while `tie_word_embeddings` says false) and `layer_sharing` (every stored layer applied twice in a row:
  our `immediate` scheme with 2 repeats).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ablations.model.architecture import MobileLLM
from ablations.model.axes import FFN_KINDS, NORMS
from ablations.model.checkpoint import read_safetensors
from ablations.model.config import ModelConfig

# our parameter name inside a block → the HF names inside `model.layers.{i}` whose rows it stacks
BLOCK_NAMES: dict[str, tuple[str, ...]] = {
    "attn_norm.weight": ("input_layernorm.weight",),
    "attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "attn.o_proj.weight": ("self_attn.o_proj.weight",),
    "ffn_norm.weight": ("post_attention_layernorm.weight",),
    "ffn.up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "ffn.down_proj.weight": ("mlp.down_proj.weight",),
}


def _row_split(cfg: ModelConfig, ours: str) -> list[int]:
    """Row counts of the HF matrices stacked in one of our fused matrices."""
    if ours == "attn.qkv_proj.weight":
        return [cfg.q_dim, cfg.kv_dim, cfg.kv_dim]
    if ours == "ffn.up_proj.weight":  # exported FFNs are gated: gate rows, then up rows
        return [cfg.ffn_hidden, cfg.ffn_hidden]  # type: ignore[list-item]
    return [-1]


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


class ConversionError(ValueError):
    """The checkpoint or model cannot be represented on the other side."""


def llama_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """config.json for the materialised model (one HF layer per block application)."""
    hidden_act = FFN_KINDS[cfg.ffn_type].hf_hidden_act
    if hidden_act is None:
        exportable = [name for name, kind in FFN_KINDS.items() if kind.hf_hidden_act]
        raise ConversionError(
            f"ffn_type={cfg.ffn_type!r} cannot be exported: LlamaForCausalLM's MLP is gated "
            f"(exportable FFN kinds: {exportable})"
        )
    if not NORMS[cfg.norm_type].hf_exportable:
        raise ConversionError(
            f"norm_type={cfg.norm_type!r} cannot be exported: LLaMA checkpoints hold RMSNorm"
        )
    out: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_applied_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": hidden_act,
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers < 5 reads this key, >= 5 reads rope_parameters
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.share_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    if cfg.sharing_scheme != "none" and cfg.sharing_repeats > 1:
        out["ablations"] = {
            "materialized_sharing": True,
            "note": "layers are the materialised block applications of a weight-shared model",
            "model_config": cfg.to_dict(),
            "block_schedule": list(cfg.block_schedule),
        }
    return out


def export_llama(
    model: MobileLLM, out_dir: str | Path, tokenizer: Any = None, dtype: torch.dtype | None = None
) -> Path:
    """Write `model` as a LLaMA checkpoint; `tokenizer` is an HF tokenizer or a directory of tokenizer files."""
    cfg = model.config
    config = llama_config_dict(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {"model.embed_tokens.weight": state["embed_tokens.weight"]}
    for layer, block in enumerate(cfg.block_schedule):
        for ours, theirs in BLOCK_NAMES.items():
            value = state[f"blocks.{block}.{ours}"]
            parts = value.split(_row_split(cfg, ours)) if len(theirs) > 1 else (value,)
            for name, part in zip(theirs, parts, strict=True):
                tensors[f"model.layers.{layer}.{name}"] = part
    tensors["model.norm.weight"] = state["norm.weight"]
    if not cfg.share_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    # safetensors refuses tensors sharing storage (materialised shared blocks): store copies
    tensors = {k: v.to(dtype or v.dtype).contiguous().clone() for k, v in tensors.items()}
    if dtype is not None:
        config["torch_dtype"] = str(dtype).removeprefix("torch.")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_tokenizer(tokenizer, out)
    return out


def _write_tokenizer(tokenizer: Any, out: Path) -> None:
    if tokenizer is None:
        return
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(out))
        return
    src = Path(tokenizer)
    copied = [name for name in TOKENIZER_FILES if (src / name).is_file()]
    if not copied:
        raise ConversionError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {src}")
    for name in copied:
        shutil.copy2(src / name, out / name)


def model_config_from_llama(config: dict[str, Any]) -> ModelConfig:
    """Our config for a LLaMA config.json (transformers 4.x or 5.x layout)."""
    problems = []
    ffn_of_act = {kind.hf_hidden_act: name for name, kind in FFN_KINDS.items() if kind.hf_hidden_act}
    hidden_act = config.get("hidden_act", "silu")
    if hidden_act not in ffn_of_act:
        problems.append(f"hidden_act={hidden_act!r} has no registered FFN kind (known: {sorted(ffn_of_act)})")
    if config.get("attention_bias") or config.get("mlp_bias"):
        problems.append("biases (attention_bias/mlp_bias) are not part of the architecture")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        problems.append(f"rope scaling {rope} is not supported (plain RoPE only)")
    if problems:
        raise ConversionError("cannot import this LLaMA checkpoint: " + "; ".join(problems))
    n_heads = config["num_attention_heads"]
    layer_sharing = bool(config.get("layer_sharing", False))
    return ModelConfig(
        dim=config["hidden_size"],
        n_layers=config["num_hidden_layers"],
        n_heads=n_heads,
        n_kv_heads=config.get("num_key_value_heads") or n_heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // n_heads,
        vocab_size=config["vocab_size"],
        ffn_type=ffn_of_act[hidden_act],
        ffn_hidden=config["intermediate_size"],
        # transformers' default is untied; MobileLLM's own flag ties whatever tie_word_embeddings says
        share_embeddings=bool(config.get("share_embedding") or config.get("tie_word_embeddings", False)),
        sharing_scheme="immediate" if layer_sharing else "none",
        sharing_repeats=2 if layer_sharing else 1,
        norm_eps=config.get("rms_norm_eps", 1e-6),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        max_seq_len=config.get("max_position_embeddings", 2048),
        init_std=config.get("initializer_range", 0.02),
    )


def _load_safetensors(src: Path) -> dict[str, torch.Tensor]:
    index = src / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(read_safetensors(src / shard))
        return tensors
    single = src / "model.safetensors"
    if single.is_file():
        return read_safetensors(single)
    pickled = src / "pytorch_model.bin"  # the released MobileLLM checkpoints (save_safetensors False)
    if pickled.is_file():
        # tensors only: weights_only refuses any pickled object that would run code
        return torch.load(str(pickled), map_location="cpu", weights_only=True, mmap=True)
    raise ConversionError(f"no model.safetensors, model.safetensors.index.json or pytorch_model.bin in {src}")


def import_llama(src_dir: str | Path) -> MobileLLM:
    """Our model with the weights of a LLaMA-architecture checkpoint directory (fp32)."""
    src = Path(src_dir)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"no config.json in {src}")
    config = json.loads(config_path.read_text())
    tensors = {k: v.float() for k, v in _load_safetensors(src).items()}
    shared = config.get("ablations", {}).get("materialized_sharing", False)
    if shared:
        cfg = ModelConfig.from_dict(config["ablations"]["model_config"])
        schedule = config["ablations"]["block_schedule"]
    else:
        cfg = model_config_from_llama(config)
        schedule = list(range(cfg.n_layers))  # the stored layers (a `layer_sharing` model applies each twice)
    state: dict[str, torch.Tensor] = {
        "embed_tokens.weight": tensors["model.embed_tokens.weight"],
        "norm.weight": tensors["model.norm.weight"],
    }
    if not cfg.share_embeddings:
        if "lm_head.weight" not in tensors:
            raise ConversionError(
                f"{config_path}: the embeddings are untied (tie_word_embeddings is false or absent, no "
                "share_embedding) but the checkpoint has no lm_head.weight"
            )
        state["lm_head.weight"] = tensors["lm_head.weight"]
    for layer, block in enumerate(schedule):
        for ours, theirs in BLOCK_NAMES.items():
            value = torch.cat([tensors[f"model.layers.{layer}.{name}"] for name in theirs])
            key = f"blocks.{block}.{ours}"
            if key in state and not torch.equal(state[key], value):
                raise ConversionError(f"layer {layer} should repeat block {block} but its {theirs} differ")
            state[key] = value
    with torch.device("meta"):
        model = MobileLLM(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    return model
