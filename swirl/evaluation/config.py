"""Configuration of the evaluate stage (`evaluate:` in a run config).

Evaluation uses the generate stage's protocol (its prompts and step limits: the paper evaluates with the same
tools and limits it trains with); what is its own is which questions, which policies and how to decode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from swirl.sections import Section


class ExtraPolicy(Section):
    name: str = Field(description="Label of this policy in tables, metrics and reports (e.g. round1).")
    adapter: str = Field(description="LoRA adapter folder (peft format) applied to the run's policy model.")
    trained_on: str = Field(
        "",
        description="What the adapter was trained on (the cross-task table's row label). Empty: read from "
        "the train output the adapter comes from, when it is one.",
    )


class EvaluateConfig(Section):
    datasets: tuple[str, ...] = Field(
        (),
        description="Ingested dataset names to evaluate on; empty = every ingested dataset whose split is "
        "not train.",
    )
    questions: int = Field(
        300,
        ge=1,
        description="Seeded random sample of questions per dataset (the paper: 300); all when fewer.",
    )
    seed: int = Field(0, description="Seed of the question sample (the same seed gives the same questions).")
    temperature: float = Field(0.0, ge=0, description="Decoding temperature; 0 = greedy (the default).")
    top_p: float = Field(
        1.0, gt=0, le=1, description="Nucleus sampling threshold (only when temperature > 0)."
    )
    max_tokens_per_step: int | None = Field(
        None,
        ge=1,
        description="Most tokens per step. Empty: generate.max_tokens_per_step (the same protocol).",
    )
    decoding: Literal["greedy", "beam", "best_of_logprob", "beam_random"] = Field(
        "greedy",
        description="greedy = one action per step, decoded at evaluate.temperature (0, the default, is "
        "greedy); beam = OREO's value-guided beam search: keep beam_width partial episodes, sample "
        "beam_width next steps for each (at evaluate.temperature), keep the beam_width best unfinished ones "
        "by the value model (value_model), set answered ones aside, answer with the best-valued answer. "
        "Controls that attribute beam's gain to the value model, at equal samples (the same search, width "
        "and sampling; only the ranking differs): best_of_logprob ranks candidates by the policy's "
        "cumulative log-prob of the episode (what likelihood reranking alone gives); beam_random by a "
        "seeded random number (evaluate.seed; what sampling beam_width candidates gives without ranking).",
    )
    beam_width: int = Field(
        7,
        ge=1,
        description="B of beam decoding and of its controls (the paper: 7); 1 = the plain rollout at "
        "evaluate.temperature.",
    )
    value_model: str | None = Field(
        None,
        description="Value model of beam decoding (decoding beam only; the controls use none): the `value` "
        "folder of a train output with train.objective oreo (<root>/train/<version>/files/value), trained on "
        "the policy's base model; `trained` = the value model this round trains (train.objective oreo).",
    )
    base: bool = Field(True, description="Evaluate the policy as configured (policy.model + policy.adapter).")
    trained: bool = Field(
        True, description="Evaluate the policy with the adapter this round trains (when train runs)."
    )
    policies: tuple[ExtraPolicy, ...] = Field(
        (),
        description="More policies to evaluate: adapters of earlier rounds or other runs, each with a name.",
    )
    llm_judge: bool = Field(
        False,
        description="Also grade every answer with the judge model (judge.engine, else the policy) using the "
        "paper's YES/NO prompt (judge.outcome templates). Rule verdicts are always computed.",
    )
    shard_questions: int = Field(
        50, ge=1, description="Questions per shard: a crash loses at most one shard."
    )
    bootstrap_resamples: int = Field(
        10_000, ge=100, description="Resamples of the paired bootstrap interval."
    )
    tool_workers: int = Field(8, ge=1, description="Threads running tool calls concurrently.")

    @model_validator(mode="after")
    def _names(self) -> EvaluateConfig:
        names = [p.name for p in self.policies]
        reserved = {"base", "trained"}.intersection(names)
        if reserved:
            raise ValueError(
                f"evaluate.policies: the names {sorted(reserved)} are reserved; choose another name"
            )
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"evaluate.policies: names must be unique; repeated: {dup}")
        if self.decoding == "beam" and not self.value_model:
            raise ValueError(
                "evaluate.value_model: beam decoding ranks steps with a value model; set it to the value "
                "folder of an oreo train output (<root>/train/<version>/files/value) or use decoding greedy"
            )
        if self.ranker and self.beam_width > 1 and self.temperature == 0:
            raise ValueError(
                "evaluate.temperature: beam decoding samples beam_width next steps per beam, all the same at "
                "temperature 0; set temperature > 0 (e.g. 0.7) or beam_width 1"
            )
        return self

    @property
    def ranker(self) -> Literal["value", "logprob", "random"] | None:
        """How a beam-search decoding ranks candidates (swirl/evaluation/beam.py); None for greedy."""
        return RANKERS.get(self.decoding)

    @property
    def decoding_label(self) -> str:
        """How actions are decoded, as recorded in the eval_results table and the summary."""
        single = "greedy" if self.temperature == 0 else f"sample(t={self.temperature:g},p={self.top_p:g})"
        return single if self.decoding == "greedy" else f"{self.decoding}(B={self.beam_width},{single})"


RANKERS: dict[str, Literal["value", "logprob", "random"]] = {
    "beam": "value",
    "best_of_logprob": "logprob",
    "beam_random": "random",
}
