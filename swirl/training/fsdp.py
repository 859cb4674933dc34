"""`train.fsdp`: the base model sharded over the ranks with torch FSDP2 (`fully_shard`), for a model that
does not fit one GPU.

Every rank reads the weights into CPU memory; `shard` wraps each decoder layer, then the forward the losses
run (lm_forward.py: decoder and LM head, so the rest of the weights, a tied head included), and moves only
this rank's shard of every parameter (base and LoRA) to its device. In each forward and backward
pass FSDP gathers a layer's weights, and after the backward it reduce-scatters the gradients: summed, not
averaged (the loop's loss coefficients are normalised over the whole step, so the sum is the step's
gradient, as `Dist.sum_grads_and` gives without FSDP). Every rank must then run the same number of passes
(loop.backward pads). `trainable_state` gathers the full LoRA weights for the adapter and checkpoints.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from swirl.training.dist import Dist

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

    from swirl.training.objectives.base import ParamGroup


def wanted(fsdp: bool, dist: Dist) -> bool:
    """Whether to shard: train.fsdp on and more than one rank (one process: nothing to shard over)."""
    if fsdp and dist.world == 1:
        warnings.warn("train.fsdp: one process, nothing to shard over; training unsharded", stacklevel=2)
    return fsdp and dist.world > 1


def decoder_layer_class(model: PeftModel) -> str:
    """The class name of the model's decoder layers: its `_no_split_modules` entry that is one of its
    modules, else the modules named *DecoderLayer."""
    present = {type(m).__name__ for m in model.modules()}
    declared = set(getattr(model.get_base_model(), "_no_split_modules", None) or ())
    found = sorted(declared & present) or sorted(n for n in present if n.endswith("DecoderLayer"))
    if len(found) != 1:
        raise ValueError(
            f"train.fsdp: cannot tell this model's decoder layer class (candidates: {found or 'none'}); "
            "set fsdp: false"
        )
    return found[0]


def shard(model: PeftModel, groups: list[ParamGroup], device: torch.device) -> list[ParamGroup]:
    """Shard `model` in place over all ranks (each decoder layer, then the rest); returns `groups` with the
    sharded parameters that replaced the originals (the optimiser must hold those)."""
    import torch.distributed as td
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from swirl.training.lm_forward import position_logits

    names = {id(p): n for n, p in model.named_parameters()}
    layer = decoder_layer_class(model)
    mesh = init_device_mesh(device.type, (td.get_world_size(),))
    root = position_logits(model)  # the forward the losses run: its own weights (embeddings, head) the root's
    for m in list(root.modules()):
        if type(m).__name__ == layer:
            fully_shard(m, mesh=mesh)
    fully_shard(root, mesh=mesh)
    for m in root.modules():
        if isinstance(m, FSDPModule):  # sum the ranks' gradients (FSDP's default averages them), with a
            m.set_gradient_divide_factor(1.0)  # plain SUM reduction (gloo has no pre-multiplied sum)
            m.set_force_sum_reduction_for_comms(True)
    params = dict(model.named_parameters())
    return [(name, [params[names[id(p)]] for p in ps], lr) for name, ps, lr in groups]


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def trainable_state(model: PeftModel) -> dict[str, torch.Tensor] | None:
    """The full trainable weights on rank 0 (CPU tensors; {} on the other ranks), gathered from every rank:
    all ranks must call it. None when the model is not sharded (read its parameters directly)."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    state = get_model_state_dict(model, options=options)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n: t for n, t in state.items() if n in trainable}  # not a frozen head tied to the embeddings


def optimizer_state(model: PeftModel, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's full state (keyed by parameter name) on rank 0; all ranks must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, opt, options=options)


def load_state(
    model: PeftModel, opt: torch.optim.Optimizer, trainable: dict[str, Any], optim: dict[str, Any]
) -> None:
    """Load full trainable weights and a full optimiser state (as `trainable_state` and `optimizer_state`
    give them) into the sharded model and its optimiser: every rank takes its shard."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, trainable, options=StateDictOptions(full_state_dict=True, strict=False))
    set_optimizer_state_dict(model, opt, optim, options=StateDictOptions(full_state_dict=True))
