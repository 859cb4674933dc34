"""One process, or one rank of several under `torchrun` / `accelerate launch` / Ray Train (`launcher: ray`,
which sets up the process group and the same environment) (WORLD_SIZE > 1).

Every rank builds the same step plan, samples its share of the states (swirl), gathers the step's
sequences, runs its share of the micro-batches, and the LoRA gradients are summed across ranks (the
coefficients are normalised over the whole step, so the sum is the step's gradient): here, or by FSDP's
reduction when the model is sharded (train.fsdp, fsdp.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from swirl.training.batches import Seq


@dataclass
class Dist:
    """torch.distributed when launched by torchrun/accelerate/Ray Train (WORLD_SIZE > 1), else a single
    process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        return cls(td.get_rank(), world, local)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def sum_grads_and(self, params: list[torch.nn.Parameter], sums: np.ndarray) -> np.ndarray:
        """Sum the LoRA gradients and the step's metric sums over ranks."""
        if self.world == 1:
            return sums
        import torch
        import torch.distributed as td

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            td.all_reduce(p.grad)
        return self.sum_numbers(sums)

    def sum_numbers(self, sums: np.ndarray) -> np.ndarray:
        """Sum the step's metric sums over ranks (train.fsdp: FSDP sums the gradients itself)."""
        if self.world == 1:
            return sums
        import torch
        import torch.distributed as td

        device = torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        t = torch.tensor(sums, dtype=torch.float64, device=device)
        td.all_reduce(t)
        return t.cpu().numpy()

    def gather_seqs(self, seqs: list[Seq], stats: list[float]) -> tuple[list[Seq], list[float]]:
        """Every rank gets every rank's sampled sequences (in rank order) and the summed stats."""
        if self.world == 1:
            return seqs, stats
        import torch.distributed as td

        parts: list[tuple[list[Seq], list[float]]] = [([], [])] * self.world
        td.all_gather_object(parts, (seqs, stats))
        return [s for p in parts for s in p[0]], np.sum([p[1] for p in parts], axis=0).tolist()
