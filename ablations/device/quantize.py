"""Post-training quantization recipes for device programs (torchao), applied to a copy of the model.

- `8da4w`: block linears at 8-bit dynamic per-token activations × 4-bit weights in groups of 32; the output
  layer at 8-bit dynamic activations × 8-bit per-channel weights; the embedding at 8-bit per-channel weights
  (ExecuTorch's Llama 3.2 recipe).
- `w8a8`: every linear (blocks and output) at 8-bit dynamic per-token activations × 8-bit per-channel
  weights (min-max), as the paper's §8.9; the embedding at 8-bit per-channel weights (it has no activation).

A tied model (no output matrix: logits = h·Eᵀ) gets its own output linear, a copy of the embedding, before
quantizing: the gather and the matmul quantize differently (weight-only rows vs dynamic-activation GEMM), so
the quantized program stores the embedding twice, each at 8 bits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ablations.model.architecture import MobileLLM


@dataclass(frozen=True)
class QuantRecipe:
    """How the linears of the blocks, the output layer and the embedding are quantized."""

    name: str
    block_weight_bits: int | None
    """Weight bits of the blocks' linears (dynamic int8 activations); None: nothing is quantized."""
    block_group_size: int | None
    """Weights quantized in groups of this many input channels; None: one scale per output channel."""
    description: str


QUANT_RECIPES: dict[str, QuantRecipe] = {
    recipe.name: recipe
    for recipe in (
        QuantRecipe("none", None, None, "fp32, as trained"),
        QuantRecipe(
            "8da4w", 4, 32, "int8 dynamic activations, int4 grouped weights (g=32); output/embedding int8"
        ),
        QuantRecipe("w8a8", 8, None, "int8 dynamic per-token activations, int8 per-channel weights"),
    )
}


def _check_group_size(model: MobileLLM, group_size: int) -> None:
    """Grouped weights need every block linear's input width to be a multiple of the group size."""
    for name, module in model.blocks.named_modules():
        if isinstance(module, nn.Linear) and module.in_features % group_size:
            raise ValueError(
                f"blocks.{name} has {module.in_features} input channels, not a multiple of the quantization "
                f"group size {group_size}"
            )


@torch.no_grad()
def quantize(model: MobileLLM, recipe: str) -> nn.Module:
    """A quantized copy of `model` under `recipe` (a `QUANT_RECIPES` key); `none` returns the model itself.

    The copy is still a `MobileLLM` (its forward and generate run eagerly, for the val-loss change); a tied
    model's copy has an `lm_head` holding the quantized embedding copy.
    """
    if recipe not in QUANT_RECIPES:
        raise ValueError(f"quant must be one of {tuple(QUANT_RECIPES)} (got {recipe!r})")
    spec = QUANT_RECIPES[recipe]
    if spec.block_weight_bits is None:
        return model
    if spec.block_group_size is not None:
        _check_group_size(model, spec.block_group_size)
    quantized = copy.deepcopy(model)
    if quantized.lm_head is None:
        cfg = quantized.config
        quantized.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        quantized.lm_head.weight = nn.Parameter(quantized.embed_tokens.weight.detach().clone())
    _apply(quantized, spec)
    return quantized


def _apply(model: MobileLLM, recipe: QuantRecipe) -> None:
    """Quantize the blocks' linears, the output linear and the embedding of `model` in place (torchao)."""
    # torchao imported here: the recipe names are read (config validation) where the device extra is absent
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    int8_per_channel = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int8, weight_granularity=PerAxis(0)
    )
    block_config = int8_per_channel
    if recipe.block_group_size is not None:
        block_config = Int8DynamicActivationIntxWeightConfig(
            weight_dtype=getattr(torch, f"int{recipe.block_weight_bits}"),
            weight_granularity=PerGroup(recipe.block_group_size),
        )
    quantize_(model.blocks, block_config)
    quantize_(model.lm_head, int8_per_channel)
    embedding_config = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    quantize_(
        model.embed_tokens, embedding_config, filter_fn=lambda module, _: isinstance(module, nn.Embedding)
    )
