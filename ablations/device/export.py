"""A MobileLLM variant as an ExecuTorch program (`.pte`), lowered to XNNPACK, the CPU backend of Android and iOS.

torch.export of `ExportableLM` (token dimension dynamic in 1..max_seq_len-1) → `to_edge_transform_and_lower`
with the XNNPACK partitioner → `to_executorch` with the KV-cache updates in place and memory planned for the
longest chunk. The program holds one method, `forward(tokens, input_pos)`, and the constant methods ExecuTorch's
LLM runner reads (`extension/llm/runner`, as `examples/models/llama/export_llama_lib.py` writes them).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.export import Dim, ExportedProgram

from ablations.device.program import ExportableLM
from ablations.device.quantize import quantize
from ablations.model.architecture import MobileLLM
from ablations.model.axes import attention_layout
from ablations.model.config import ModelConfig
from ablations.records.atomic import atomic_write

LLAMA_BOS_ID, LLAMA_EOS_ID = 1, 2  # the LLaMA tokenizer's, as the HF export writes them

# matrix products a lowered program must run inside the delegate: left to the portable kernels, the variant
# would run, correctly but at a fraction of its speed, and its latency would be no measurement of it
_DELEGATED_MATMULS = ("aten.mm.", "aten.addmm.", "aten.bmm.", "aten.linear.", "aten.convolution.")


class LoweringError(ValueError):
    """A variant that could not be exported or lowered to XNNPACK; the message names its axis values and op."""


def describe(cfg: ModelConfig) -> str:
    """The variant's axis values, as a lowering error names them."""
    layout = attention_layout(cfg.n_heads, cfg.n_kv_heads)  # type: ignore[arg-type]
    return (
        f"ffn_type={cfg.ffn_type} norm_type={cfg.norm_type} attention={layout} "
        f"({cfg.n_heads} heads, {cfg.n_kv_heads} kv) sharing_scheme={cfg.sharing_scheme} "
        f"sharing_repeats={cfg.sharing_repeats} "
        f"{'tied' if cfg.share_embeddings else 'untied'} embeddings"
    )


def runner_metadata(cfg: ModelConfig, max_seq_len: int, bos_id: int, eos_ids: tuple[int, ...]) -> dict:
    """The constant methods ExecuTorch's LLM runner reads (names as `_load_llama_model_metadata` writes them)."""
    return {
        "get_max_seq_len": max_seq_len,
        "get_max_context_len": max_seq_len,
        "get_n_layers": cfg.n_applied_layers,  # KV-cache slots: one per block application
        "get_vocab_size": cfg.vocab_size,
        "get_bos_id": bos_id,
        "get_eos_ids": list(eos_ids),
        "use_kv_cache": True,
        "use_sdpa_with_kv_cache": False,  # plain ops, no llama::custom_sdpa
        "enable_dynamic_shape": True,
    }


def export_exportable(module: ExportableLM) -> ExportedProgram:
    """torch.export with the token dimension dynamic in 1..max_seq_len-1 (example: two tokens at position 0)."""
    example = (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    seq = Dim("seq", min=1, max=module.max_seq_len - 1)
    with torch.no_grad():
        return torch.export.export(module.eval(), example, dynamic_shapes=({1: seq}, None), strict=False)


def undelegated_matmuls(program: ExportedProgram) -> list[str]:
    """Matrix products the partitioner left outside the XNNPACK delegate."""
    names = (str(node.target) for node in program.graph.nodes if node.op == "call_function")
    return sorted({name.split(":")[0] for name in names if any(op in name for op in _DELEGATED_MATMULS)})


def _ops_named(error: Exception) -> str:
    ops = sorted(set(re.findall(r"\b(?:aten|torchao|quantized_decomposed|llama)[.:]{1,2}\w+", str(error))))
    return f" (op: {', '.join(ops)})" if ops else ""


def export_program(
    model: MobileLLM,
    max_seq_len: int,
    quant: str = "none",
    *,
    bos_id: int = LLAMA_BOS_ID,
    eos_ids: tuple[int, ...] = (LLAMA_EOS_ID,),
) -> bytes:
    """The `.pte` buffer of `model` (quantized by `quant`, a `QUANT_RECIPES` key) with a KV cache of `max_seq_len`.

    Raises `LoweringError` naming the variant's axis values and the op when export or lowering fails, or when a
    matrix product stayed outside the delegate.
    """
    # executorch imported here: the job imports this module's callers where the device extra is absent
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    cfg = model.config
    module = ExportableLM(quantize(model, quant), max_seq_len)  # validates quant and max_seq_len first
    variant = f"{describe(cfg)}, quant={quant}"
    stage = "torch.export"
    try:
        exported = export_exportable(module)
        stage = "XNNPACK lowering"
        edge = to_edge_transform_and_lower(
            exported,
            partitioner=[XnnpackPartitioner()],
            # the edge dtype verifier re-checks every op (a fifth of the lowering time); ExecuTorch's LLM
            # export skips it too, and the parity tests check the program itself
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
            constant_methods=runner_metadata(cfg, max_seq_len, bos_id, eos_ids),
        )
        stage = "to_executorch"
        program = edge.to_executorch(
            ExecutorchBackendConfig(
                do_quant_fusion_and_const_prop=True,  # dequantize + embedding → quantized embedding_byte
                run_reinplace_pass=True,  # the KV-cache index_put updates its buffer in place, no copy
                memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
                sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass(),  # plan for the longest chunk
            )
        )
    except Exception as error:  # torch.export and executorch raise many types; all mean "not lowerable"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise LoweringError(
            f"cannot lower {variant}: {stage} failed{_ops_named(error)}: {type(error).__name__}: {first_line}"
        ) from error
    left = undelegated_matmuls(edge.exported_program())
    if left:
        raise LoweringError(f"cannot lower {variant}: XNNPACK did not take {', '.join(left)}")
    return program.buffer


def write_program(
    model: MobileLLM,
    path: Path,
    max_seq_len: int,
    quant: str = "none",
    *,
    bos_id: int = LLAMA_BOS_ID,
    eos_ids: tuple[int, ...] = (LLAMA_EOS_ID,),
) -> Path:
    """Export `model` and write its `.pte` atomically (no reader ever sees half a program)."""
    buffer = export_program(model, max_seq_len, quant, bos_id=bos_id, eos_ids=eos_ids)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer))
