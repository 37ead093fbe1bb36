"""FSDP2 for MobileLLM: `fully_shard` per stored block and the root, mixed precision as torchtitan, and the
2-D (HSDP) mesh for multi-node runs.

A layer-shared block is stored once, so it is one FSDP unit however often the schedule applies it: FSDP2
gathers it again for each application and reduce-scatters its gradient (summed over applications) once.
"""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ablations.model.architecture import MobileLLM
from ablations.train.config import TrainerConfig


def fsdp_mesh(flat_mesh: DeviceMesh, replicate_groups: int) -> DeviceMesh:
    """The mesh to shard over: `flat_mesh` (every rank one shard group) or, for HSDP, a 2-D mesh
    (replicate × shard) whose shard groups hold world / replicate_groups consecutive ranks (one node each
    when replicate_groups = nodes), so parameter all-gathers stay inside a node."""
    if replicate_groups == 1:
        return flat_mesh
    world = flat_mesh.size()
    if world % replicate_groups:
        raise ValueError(
            f"trainer.fsdp_replicate_groups={replicate_groups} does not divide the {world} ranks"
        )
    return init_device_mesh(
        flat_mesh.device_type,
        (replicate_groups, world // replicate_groups),
        mesh_dim_names=("replicate", "shard"),
    )


def shard_model(model: MobileLLM, mesh: DeviceMesh, cfg: TrainerConfig) -> MobileLLM:
    """Apply `fully_shard` to every stored block, then to the root (embeddings, final norm, output)."""
    policy = MixedPrecisionPolicy(
        param_dtype=getattr(torch, cfg.fsdp_param_dtype), reduce_dtype=getattr(torch, cfg.fsdp_reduce_dtype)
    )
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model
