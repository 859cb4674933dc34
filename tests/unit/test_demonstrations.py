"""Gold demonstrations: the datasets' own solutions as protocol actions, replayed through the generate
stage."""

import json
import os

import pytest

from swirl.data.demonstrations import GoldScript, gold_actions, math_gold_actions, search_gold_queries


def test_math_notes_become_spaced_calculator_calls():
    solution = (
        "The rugs cost 17 * 101 = <<17*101=1717>>1717 dollars.\nHalf is <<1717/17=101>>101.\n"
        "Then <<(3+4)*2=14>>14 and <<-5+20=15>>15.\n#### 15"
    )
    assert math_gold_actions(solution) == [
        "<math_exp>17 * 101</math_exp>",
        "<math_exp>1717 / 17</math_exp>",
        "<math_exp>(3 + 4) * 2</math_exp>",
        "<math_exp>-5 + 20</math_exp>",
    ]
    assert math_gold_actions("no notes here\n#### 3") == []


def test_search_queries_follow_the_hop_order():
    hotpot = {"supporting_facts": [["Acme Works", 1], ["Pemford", 0], ["Acme Works", 0]]}
    assert search_gold_queries(hotpot) == ["Acme Works", "Pemford"]
    musique = {
        "paragraphs": [{"title": "A"}, {"title": "B"}, {"title": "C"}],
        "question_decomposition": [{"paragraph_support_idx": 2}, {"paragraph_support_idx": 0}],
    }
    assert search_gold_queries(musique) == ["C", "A"]
    assert search_gold_queries({"paragraphs": [{"title": "A"}]}) == []


def test_gold_actions_end_with_the_gold_answer_and_need_a_solution():
    row = {"answers": ["Ruvania", "RU"], "metadata": json.dumps({"supporting_facts": [["X", 0], ["Y", 1]]})}
    assert gold_actions(row, "search") == [
        "<search_query>X</search_query>",
        "<search_query>Y</search_query>",
        "<answer>Ruvania</answer>",
    ]
    assert gold_actions({"answers": ["5"], "metadata": json.dumps({"solution": "#### 5"})}, "math") == []


def test_script_finds_the_latest_question_and_the_next_untaken_action():
    rows = [
        {
            "question": "What is 2 + 3 then doubled?",
            "answers": ["10"],
            "metadata": json.dumps({"solution": "<<2+3=5>> <<5*2=10>>\n#### 10"}),
        }
    ]
    script = GoldScript(rows, "math")
    # A worked example (another question) first; it contains an action of the same text, which must not count.
    prompt = (
        "user: Question: example\nassistant: <math_exp>2 + 3</math_exp>\n"
        "user: Question: What is 2 + 3 then doubled?\nassistant: "
    )
    assert script(prompt, None) == "<math_exp>2 + 3</math_exp>"
    prompt += "<math_exp>2 + 3</math_exp>\nuser: 2 + 3 -> 5\nassistant: "
    assert script(prompt, None) == "<math_exp>5 * 2</math_exp>"
    prompt += "<math_exp>5 * 2</math_exp>\nuser: 5 * 2 -> 10\nassistant: "
    assert script(prompt, 7) == "<answer>10</answer>"
    with pytest.raises(ValueError, match="no known question"):
        script("Question: something else", None)


def test_config_refuses_several_samples_of_one_solution():
    from pydantic import ValidationError

    from swirl.episodes import GenerateConfig

    with pytest.raises(ValidationError, match="samples_per_question: 1"):
        GenerateConfig(source="gold", samples_per_question=2)


def test_generate_from_gold_replays_solutions_through_the_tools(tmp_path, tiny_model_dir):
    from swirl.data.config import DatasetSpec
    from swirl.engines.config import EngineConfig
    from swirl.episodes import GenerateConfig
    from swirl.stages.base import Context, run_stage
    from swirl.stages.generate import Generate
    from swirl.stages.ingest import Ingest
    from swirl.store import Store
    from swirl.tools.calculator import calculate

    path = os.path.join(tmp_path, "train.jsonl")
    with open(path, "w") as f:
        f.write(
            json.dumps({"question": "Q one?", "answer": "a <<12*13=156>> b <<156-6=150>>\n#### 150"}) + "\n"
        )
        f.write(json.dumps({"question": "Q two?", "answer": "no notes\n#### 4"}) + "\n")
        f.write(json.dumps({"question": "Q three?", "answer": "<<100+23=123>>\n#### 123"}) + "\n")
    store = Store(os.path.join(tmp_path, "store"))
    spec = DatasetSpec(name="gsm8k", format="gsm8k", path=path)
    questions = run_stage(store, Ingest(spec)).ref
    cfg = GenerateConfig(source="gold", samples_per_question=1, max_steps_math=3, max_tokens_per_step=32)
    policy = EngineConfig(kind="vllm", model=tiny_model_dir, max_model_len=1024)

    def no_model():
        raise AssertionError("source gold must not start the policy engine")

    ctx = Context(engines=lambda engine_cfg: no_model(), tools={"math": calculate})
    ref = run_stage(store, Generate(cfg, policy, spec, questions), ctx).ref
    rows = {r["question_id"]: r for r in store.read_ref(ref).to_pylist()}
    assert ref.summary["without_gold_solution"] == 1
    assert sorted(rows) == ["gsm8k-train-00000", "gsm8k-train-00002"]
    one = rows["gsm8k-train-00000"]
    # Prompt, then action / observation pairs as the calculator answers them, then the answer.
    contents = [m["content"] for m in one["messages"][1:]]
    assert contents[:3] == ["<math_exp>12 * 13</math_exp>", "12 * 13 -> 156", "<math_exp>156 - 6</math_exp>"]
    assert contents[3].startswith("156 - 6 -> 150\n") and "last step" in contents[3]  # step 2 of 3: warned
    assert contents[4:] == ["<answer>150</answer>"]
    assert one["final_answer"] == "150" and one["stop_reason"] == "answer" and one["num_actions"] == 3
    assert one["model"].startswith("gold")
    three = rows["gsm8k-train-00002"]
    assert [m["content"] for m in three["messages"][1::2]] == [
        "<math_exp>100 + 23</math_exp>",
        "<answer>123</answer>",
    ]
    # Token ids hold exactly the actions' tokens at the action spans.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    spans = one["action_spans"]
    assert (
        tok.decode(one["token_ids"][spans[0]["start"] : spans[0]["end"]], skip_special_tokens=True)
        == "<math_exp>12 * 13</math_exp>"
    )
