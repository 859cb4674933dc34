"""Episodes of a dataset's questions under the SWiRL protocol; `swirl.rollout` is the loop that runs them.

What an episode is for a dataset: the protocol config (`GenerateConfig`: prompts, worked examples, sampling,
step limits), which tool its questions offer (`tool_kind`: the calculator or search), the episodes' starts
(`start_episodes`) and their runs (`run_episodes`). Shared by the generate stage, which samples training
trajectories, and the evaluate stage, which runs the same protocol (the paper evaluates with the tools and
limits it trains with) with its own decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from swirl import protocol
from swirl.data.config import DatasetSpec
from swirl.engines.base import Engine
from swirl.rollout import ChatSegments, RolloutSettings, Tool, Trajectory, rollout, start_trajectories
from swirl.sections import Section

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MATH_FORMATS = {"gsm8k"}


class ChatTurn(Section):
    role: Literal["user", "assistant"] = Field(
        description="Who speaks: user (prompt or tool result) or assistant."
    )
    content: str = Field(description="The turn's text.")


def _check_example(turns: tuple[ChatTurn, ...], name: str) -> None:
    """A worked example: user/assistant turns alternating from a user prompt; every assistant turn one valid
    action; the last an answer (so the example shows a whole episode)."""
    if not turns:
        return
    for i, t in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if t.role != want:
            raise ValueError(
                f"generate.{name}[{i}]: role must be {want} (turns alternate, starting with the user)"
            )
        action = protocol.parse_action(t.content)
        if t.role == "assistant" and action.kind == "invalid":
            raise ValueError(
                f"generate.{name}[{i}]: not a valid action ({action.content}); write "
                "exactly one <math_exp>, <search_query> or <answer> tag"
            )
    if turns[-1].role != "assistant" or protocol.parse_action(turns[-1].content).kind != "answer":
        raise ValueError(f"generate.{name}: the last turn must be the assistant's <answer>...</answer>")


class GenerateConfig(Section):
    datasets: tuple[str, ...] = Field(
        (),
        description="Ingested dataset names to generate trajectories for; empty = every dataset with split "
        "train.",
    )
    source: Literal["policy", "gold"] = Field(
        "policy",
        description="Who acts: the policy model (sampled), or `gold`: each question's own solution from the "
        "dataset (GSM8K calculator notes, HotpotQA/CofCA supporting facts, MuSiQue decomposition) replayed "
        "as protocol actions through the same loop and tools, as demonstrations for an SFT warm-up. "
        "Questions without a solution get no trajectory; no model runs (the policy's tokenizer is used).",
    )
    samples_per_question: int = Field(5, ge=1, description="Trajectories per question (the paper: 5).")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (the paper does not report one).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_tokens_per_step: int = Field(256, ge=1, description="Most tokens the model may write in one step.")
    max_steps_search: int = Field(
        5,
        ge=1,
        description="Step limit of multi-hop QA (search) tasks, the final answer included (the paper: 5).",
    )
    max_steps_math: int = Field(
        10,
        ge=1,
        description="Step limit of math (calculator) tasks, the final answer included (the paper: 10).",
    )
    seed: int = Field(0, description="Base seed; each (question, sample, step) gets its own derived seed.")
    shard_questions: int = Field(
        16, ge=1, description="Questions per shard: a crash loses at most one shard of work."
    )
    tool_workers: int = Field(8, ge=1, description="Threads running tool calls concurrently.")
    search_prompt: str = Field(
        default=protocol.SEARCH_PROMPT,
        description="Prompt of search tasks; {question}, {max_steps} (the step limit, the answer included) "
        "and {max_queries} (max_steps - 1: searches possible before answering) are filled in.",
    )
    math_prompt: str = Field(
        default=protocol.MATH_PROMPT,
        description="Prompt of math tasks; the same placeholders as search_prompt.",
    )
    math_example: tuple[ChatTurn, ...] = Field(
        (),
        description="A worked example shown before every math prompt as real chat turns (user prompt, "
        "assistant action, user tool result, ..., assistant answer). A small model copies the protocol from "
        "turns far better than from an example written inside the prompt. Seen by the model, not stored in "
        "the episode.",
    )
    search_example: tuple[ChatTurn, ...] = Field((), description="The same for search tasks.")
    sample_markdown: int = Field(
        8, ge=0, description="Trajectories written to the stage's Markdown sample artifact."
    )

    @model_validator(mode="after")
    def _templates(self) -> GenerateConfig:
        for name in ("search_prompt", "math_prompt"):
            text = getattr(self, name)
            if "{question}" not in text:
                raise ValueError(f"{name} must contain the placeholder {{question}}")
            try:
                text.format(question="q", max_steps=1, max_queries=0)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(
                    f"{name}: only {{question}}, {{max_steps}} and {{max_queries}} may appear in braces; "
                    f"write literal braces as {{{{ and }}}} ({e})"
                ) from None
        _check_example(self.math_example, "math_example")
        _check_example(self.search_example, "search_example")
        if self.source == "gold" and self.samples_per_question != 1:
            raise ValueError(
                "source gold replays the one solution each question has: set samples_per_question: 1"
            )
        return self


def tool_kind(spec: DatasetSpec) -> str:
    """The tool a dataset's episodes offer, "math" or "search" (also the action that calls it): GSM8K-style
    datasets are calculator tasks, the multi-hop QA datasets search tasks."""
    return "math" if spec.format in MATH_FORMATS else "search"


def protocol_template(cfg: GenerateConfig, kind: str) -> str:
    """The prompt template of episodes offering the tool `kind`."""
    return cfg.math_prompt if kind == "math" else cfg.search_prompt


def protocol_examples(cfg: GenerateConfig, kind: str) -> list[dict[str, str]]:
    """The worked example shown as chat turns before every prompt of the tool `kind` ([] when none is
    configured)."""
    return [m.model_dump() for m in (cfg.math_example if kind == "math" else cfg.search_example)]


def rollout_settings(cfg: GenerateConfig, kind: str, max_context: int) -> RolloutSettings:
    """The rollout settings of episodes offering the tool `kind` under the generate protocol (the step limit
    by tool); evaluation replaces the decoding fields."""
    return RolloutSettings(
        max_steps=cfg.max_steps_math if kind == "math" else cfg.max_steps_search,
        max_tokens_per_step=cfg.max_tokens_per_step,
        max_context=max_context,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
        tool_workers=cfg.tool_workers,
    )


def run_episodes(
    engine: Engine,
    questions: list[dict[str, Any]],
    cfg: GenerateConfig,
    kind: str,
    samples: int,
    tools: Mapping[str, Tool],
    settings: RolloutSettings,
    adapter: str | None,
) -> list[Trajectory]:
    """`samples` episodes per question (dicts with question_id and question) under the protocol of the tool
    `kind` (its prompt, and its worked example as chat turns before it), run to their ends."""
    trajs = start_episodes(engine.tokenizer, questions, cfg, kind, samples, settings)
    return rollout(engine, trajs, tools, settings, adapter=adapter)


def start_episodes(
    tokenizer: PreTrainedTokenizerBase,
    questions: list[dict[str, Any]],
    cfg: GenerateConfig,
    kind: str,
    samples: int,
    settings: RolloutSettings,
) -> list[Trajectory]:
    """The episodes' starts (the prompt's token ids) under the protocol of the tool `kind`, before any
    action."""
    template = protocol_template(cfg, kind)
    return start_trajectories(
        [dict(q, task=kind) for q in questions],
        samples,
        lambda q: [
            {"role": "user", "content": protocol.render_prompt(template, q["question"], settings.max_steps)}
        ],
        ChatSegments(tokenizer),
        context=protocol_examples(cfg, kind),
    )
