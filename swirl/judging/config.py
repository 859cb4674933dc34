"""Configuration of the judge stage.

Every field of `JudgeConfig` except the engine's serving details goes into the judge stage's version
(`JudgeConfig.version_config`): a changed prompt re-judges; a changed URL, concurrency or timeout does not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from swirl.engines.config import EngineSpec, engine_identity
from swirl.judging import prompts
from swirl.sections import Section


class ProcessJudgeConfig(Section):
    kind: Literal["llm", "rule"] = Field(
        "llm",
        description="llm = the judge model rates each step with the paper's prompt; "
        "rule = swirl.judging.rules rates it by program checks (a calculation is new, valid and grounded in "
        "the question's numbers; a search is new and on topic; an answer follows from earlier results), no "
        "judge model and no gold answers: for machines without a judge model and tool worlds where the "
        "checks are meaningful.",
    )
    search_template: str = Field(
        prompts.PROCESS_SEARCH,
        description="Process-judge prompt for search (multi-hop QA) trajectories. Placeholders: "
        "{conversation}, {last_message} (required), {question}. Write literal braces as {{ }}. The reply "
        "must end in GOOD or BAD.",
    )
    math_template: str = Field(
        prompts.PROCESS_MATH,
        description="Process-judge prompt for calculator (math) trajectories; same placeholders as "
        "search_template.",
    )
    show_system: bool = Field(
        False,
        description="Show the policy's system message in {conversation} (the judge prompt explains the "
        "task).",
    )

    @model_validator(mode="after")
    def _templates(self) -> ProcessJudgeConfig:
        prompts.check_template(self.search_template, prompts.PROCESS_FIELDS, "judge.process.search_template")
        prompts.check_template(self.math_template, prompts.PROCESS_FIELDS, "judge.process.math_template")
        return self


class OutcomeJudgeConfig(Section):
    qa_rule: Literal["em", "f1"] = Field(
        "em",
        description="Rule for multi-hop QA answers: em = SQuAD exact match with any alias; f1 = SQuAD token "
        "F1 (max over aliases) at least f1_threshold. GSM8K-style math datasets always use numeric equality.",
    )
    f1_threshold: float = Field(
        0.8, gt=0, le=1, description="Token F1 that counts as correct when qa_rule is f1."
    )
    math_datasets: tuple[str, ...] = Field(
        ("gsm8k",),
        description="Dataset labels (questions.dataset) graded as math (numeric equality, calculator judge "
        "prompt). A label matches an entry when equal to it or starting with it followed by _ "
        "or - (gsm8k_test).",
    )
    llm: bool = Field(
        False,
        description="Also grade final answers with the judge model (the paper's YES/NO prompt) into "
        "outcome_llm. The decompose stage chooses which outcome (rule or llm) filtering uses.",
    )
    qa_template: str = Field(
        prompts.OUTCOME_QA,
        description="LLM grading prompt for QA. Placeholders: {answer_key}, {prediction} (required), "
        "{question}. The reply must end in YES or NO.",
    )
    math_template: str = Field(
        prompts.OUTCOME_MATH,
        description="LLM grading prompt for math (says 10, 10.00, $10, $10.00 are the same); same "
        "placeholders.",
    )

    @model_validator(mode="after")
    def _templates(self) -> OutcomeJudgeConfig:
        prompts.check_template(self.qa_template, prompts.OUTCOME_FIELDS, "judge.outcome.qa_template")
        prompts.check_template(self.math_template, prompts.OUTCOME_FIELDS, "judge.outcome.math_template")
        return self

    def is_math(self, dataset: str) -> bool:
        return any(dataset == m or dataset.startswith((m + "_", m + "-")) for m in self.math_datasets)


class JudgeConfig(Section):
    engine: EngineSpec | None = Field(
        None,
        description="The judge model: a local engine (kind vllm/hf, possibly bigger than the policy) or an "
        "OpenAI-compatible endpoint (kind openai). Empty: the policy judges itself (cheap, not the paper's "
        "setup).",
    )
    process: ProcessJudgeConfig = Field(
        default_factory=ProcessJudgeConfig, description="Per-step GOOD/BAD judge."
    )
    outcome: OutcomeJudgeConfig = Field(
        default_factory=OutcomeJudgeConfig, description="Final-answer correctness."
    )
    reask_template: str = Field(
        prompts.REASK,
        description="Follow-up sent after a reply with no verdict (the reply stays in the conversation). "
        "Placeholder: {choices} (e.g. 'GOOD or BAD').",
    )
    max_reasks: int = Field(
        2,
        ge=0,
        le=10,
        description="Follow-ups after an unparseable reply; then the label is UNKNOWN (never GOOD).",
    )
    max_tokens: int = Field(512, ge=1, description="Tokens per judge reply (reasoning + verdict).")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0 = greedy).")
    seed: int = Field(0, description="Judge sampling seed (request i uses seed + i).")
    shard_size: int = Field(
        64,
        ge=1,
        description="Trajectories per shard: all their steps go to the engine in one batch, and the shard is "
        "committed when done, so a crash loses at most one shard and a re-run judges only the rest.",
    )

    @model_validator(mode="after")
    def _reask(self) -> JudgeConfig:
        prompts.check_template(self.reask_template, prompts.REASK_FIELDS, "judge.reask_template")
        return self

    @property
    def needs_model(self) -> bool:
        """Whether judging asks a model (an LLM process judge, or LLM grading of final answers)."""
        return self.process.kind == "llm" or self.outcome.llm

    def version_config(self) -> dict[str, Any]:
        """The config that determines the judgments: everything but engine serving details and shard size (and
        the engine itself when no model is asked)."""
        if self.needs_model and self.engine is None:
            raise ValueError("judge.engine is empty: set it, or give the run a policy to judge with")
        data = self.model_dump(mode="json", exclude={"engine", "shard_size"})
        identity = engine_identity(self.engine) if self.needs_model else {"kind": "rule"}
        return {**data, "engine": identity}
