"""The policy's forward as the losses use it, as one module: the decoder, then the LM head on the positions
that predict a loss token only (most tokens are prompt and observation, so memory is O(N x vocab), not
O(B x T x vocab)). One module so that a sharded model (train.fsdp, fsdp.py) gathers the head's weights (tied
to the embeddings in many models) and the decoder's in the same forward and backward.

Imports torch: import it where torch is needed only."""

from __future__ import annotations

from typing import Any

import torch

_KEY = "_swirl_position_logits"  # where the model keeps its PositionLogits (not a registered submodule)


def lm_parts(model: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(decoder returning hidden states, lm head) of a transformers causal LM, possibly wrapped by peft."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


class PositionLogits(torch.nn.Module):
    def __init__(self, decoder: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.decoder, self.head = decoder, head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, row: torch.Tensor, pos: torch.Tensor
    ) -> torch.Tensor:
        """[N, V] float32 logits of the tokens at (row, pos), from the state before each."""
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B,T,H]
        return self.head(hidden[row, pos - 1]).float()


def position_logits(model: Any) -> PositionLogits:
    """The model's PositionLogits, made on first use and kept on it (outside its submodules, so its state dict
    and parameter names stay the model's own)."""
    if _KEY not in model.__dict__:
        model.__dict__[_KEY] = PositionLogits(*lm_parts(model))
    return model.__dict__[_KEY]
