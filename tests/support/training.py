"""Training fixtures: a store holding questions, trajectories (token ids laid out exactly as the rollout lays
them out, with the tiny model's tokenizer and chat template), judgments, and the decompose and filter
outputs; and the check that a run changed the weights it trains."""

from __future__ import annotations

import os
import random

from swirl.protocol import MATH_PROMPT, render_prompt
from swirl.rollout import ChatSegments
from swirl.stages.base import run_stage
from swirl.stages.decompose import Decompose
from swirl.stages.filter import Filter
from swirl.store import Store
from swirl.subtrajectories import DecomposeConfig, FilterConfig
from swirl.tables import to_table
from swirl.training.data import TrainInput


def _trajectory(
    seg: ChatSegments, tid: str, qid: str, question: str, actions: list[str], observations: list[str]
) -> dict:
    messages = [{"role": "user", "content": render_prompt(MATH_PROMPT, question, 4)}]
    ids = seg.prompt_ids(messages)
    spans = []
    for i, a in enumerate(actions):
        a_ids = seg.tok.encode(a, add_special_tokens=False)
        spans.append({"start": len(ids), "end": len(ids) + len(a_ids)})
        ids += a_ids
        messages.append({"role": "assistant", "content": a})
        if i < len(observations):
            ids += seg.between_ids(observations[i], action_ended_with_eos=False)
            messages.append({"role": "user", "content": observations[i]})
    return {
        "trajectory_id": tid,
        "question_id": qid,
        "sample_idx": int(tid.split("#")[1]),
        "messages": messages,
        "token_ids": ids,
        "action_spans": spans,
        "action_logprobs": [[0.0] * (s["end"] - s["start"]) for s in spans],
        "final_answer": actions[-1].split("<answer>")[-1].split("</answer>")[0]
        if "<answer>" in actions[-1]
        else "",
        "stop_reason": "answer",
        "num_actions": len(actions),
        "model": "tiny",
        "adapter": "",
    }


def build_train_store(
    root: str,
    model_dir: str,
    n_questions: int = 24,
    samples: int = 2,
    seed: int = 0,
    dataset: str = "gsm8k",
    wrong_every: int = 0,
) -> tuple[Store, TrainInput]:
    """Addition problems answered in two steps (calculate, then answer). One in four trajectories has a BAD
    first step, so the process filter drops it. `wrong_every` = n > 0: every n-th trajectory answers one too
    many and its outcome is incorrect (all are correct by default)."""
    from transformers import AutoTokenizer

    rng = random.Random(seed)
    seg = ChatSegments(AutoTokenizer.from_pretrained(model_dir))
    questions, trajs, judged = [], [], []
    for q in range(n_questions):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        qid = f"{dataset}-{q}"
        text = f"Tom has {a} apples and buys {b} more. How many apples does he have?"
        questions.append(
            {
                "question_id": qid,
                "dataset": dataset,
                "split": "train",
                "question": text,
                "answers": [str(a + b)],
                "level": "",
                "hops": None,
                "metadata": "{}",
            }
        )
        for k in range(samples):
            tid = f"{qid}#{k}"
            wrong = wrong_every > 0 and (q * samples + k) % wrong_every == 0
            acts = [
                f"I add them. <math_exp>{a} + {b}</math_exp>",
                f"So the total is <answer>{a + b + int(wrong)}</answer>",
            ]
            trajs.append(_trajectory(seg, tid, qid, text, acts, [f"{a} + {b} -> {a + b}"]))
            bad = (q * samples + k) % 4 == 3
            for step, label in enumerate(["BAD" if bad else "GOOD", "GOOD"]):
                judged.append(
                    {
                        "trajectory_id": tid,
                        "step": step,
                        "process_label": label,
                        "judge_text": label,
                        "outcome_correct": not wrong,
                        "outcome_llm": None,
                        "outcome_llm_text": "",
                        "judge_model": "j",
                    }
                )
    store = Store(root)
    qref = store.write_table("ingest", f"q{seed}", to_table("questions", questions), "questions", {})
    tref = store.write_table("generate", f"g{seed}", to_table("trajectories", trajs), "trajectories", {})
    jref = store.write_table("judge", f"j{seed}", to_table("judgments", judged), "judgments", {})
    steps = run_stage(store, Decompose(tref, jref, qref, DecomposeConfig())).ref
    kept = run_stage(store, Filter(steps, FilterConfig(strategy="process"))).ref
    return store, TrainInput(tref, kept, qref)


def start_weights(cfg, model_dir: str) -> dict[str, dict]:
    """The trainable weights a run of `cfg` starts from, built as the trainer builds them (seeded), by the
    file of the train output that saves them: {"adapter/adapter_model.safetensors": {key: tensor}, and for
    oreo "value/adapter_model.safetensors", "value/value_head.safetensors"}."""
    from swirl.models.value import VALUE_ADAPTER
    from swirl.training.loop import Dist, build_policy
    from swirl.training.objectives import objective_for

    model, _, _ = build_policy(cfg, model_dir, Dist())
    objective_for(cfg).build(model, cfg)
    files: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("value_head."):
            file, key = "value/value_head.safetensors", name.removeprefix("value_head.")
        elif f".{VALUE_ADAPTER}." in name:
            file, key = "value/adapter_model.safetensors", name.replace(f".{VALUE_ADAPTER}.", ".")
        else:
            file, key = "adapter/adapter_model.safetensors", name.replace(".default.", ".")
        files.setdefault(file, {})[key] = p.detach().cpu().clone()
    return files


def assert_trained(out_dir: str, start: dict[str, dict], steps: int) -> None:
    """Every weight a run of `steps` steps trains differs, in the files under `out_dir`, from where it started
    (TRL's check), except those that cannot have moved yet: a LoRA B matrix starts at 0, so its A gets a
    gradient from the second step on; oreo's value head starts at 0, so the value adapter's B gets one from
    the second step on, its A from the third."""
    import torch
    from safetensors.torch import load_file

    def first_step(file: str, key: str) -> int:  # the first step that gives the weight a gradient
        return 1 + ("lora_A" in key) + file.startswith("value/adapter")

    checked = 0
    for file, weights in start.items():
        saved = load_file(os.path.join(out_dir, file))
        assert set(saved) == set(weights), (file, sorted(set(saved) ^ set(weights))[:4])
        moving = [k for k in weights if steps >= first_step(file, k)]
        same = [k for k in moving if torch.equal(saved[k], weights[k])]
        assert not same, f"{file}: {len(same)} of {len(moving)} weights did not move: {same[:3]}"
        checked += len(moving)
    assert checked, "no trained weight to check"


def assert_same_adapter(one: dict, two: dict, start: dict, tol: float) -> float:
    """Two trainings of one adapter (e.g. one process and two ranks) ended within `tol` of each other, and the
    comparison is not vacuous: the weights moved far more than `tol` from `start`. Returns the largest
    difference."""
    assert one.keys() == two.keys()
    worst = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert worst <= tol, worst
    moved = max(float((two[k] - start[k]).abs().max()) for k in two)
    assert moved > 100 * tol, moved
    return worst
