"""A trained LoRA adapter as an MLflow model (pyfunc, "models from code"): what the registry versions.

MLflow loads this file, not a pickle: `mlflow.pyfunc.load_model("models:/<experiment>@champion")` gives a
model whose `predict` takes prompts (a list of strings) and returns the policy's greedy completions. The
model's artifacts are the peft adapter folder; its config names the base model (a hub id or a local folder,
as the run config's `policy.model`) and the decoding limit.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class LoraAdapterModel(PythonModel):
    """Base model + LoRA adapter (peft), greedy decoding with the tokenizer's chat template."""

    def load_context(self, context: Any) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = context.model_config or {}
        base = cfg["base_model"]
        self.max_new_tokens = int(cfg.get("max_new_tokens", 256))
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
        self.model = PeftModel.from_pretrained(model, context.artifacts["adapter"]).eval()

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[str]:
        import torch

        out = []
        for prompt in model_input:
            enc = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": str(prompt)}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
            out.append(self.tokenizer.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        return out


mlflow.models.set_model(LoraAdapterModel())
