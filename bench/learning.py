"""Does a SWiRL round make a real model better? The paper's comparisons at this machine's scale.

    python bench/learning.py [--config configs/learn-cpu.yaml] [--variants base,warmup,...]
                             [--seeds 0,1,2] [--shared-warmup] [--fixed-count N|min]
                             [--train-worlds arith|twohop|both] [--compare sft_process_outcome,base]
                             [--swirl-states-per-step S] [--swirl-samples-per-state M] [--kl-beta B]
                             [--online-learning-rate LR] [--no-warmup] [--warmup-steps N]
                             [--gsm8k-train PATH [--gsm8k-train-questions N]]
                             [--gsm8k-test PATH [--gsm8k-test-questions N]] [--hotpotqa PATH]
                             [--train-templates K] [--datasets PREFIX,...]
                             [--beam-width 3] [--beam-temperature 0.7] [--beam-questions N]
                             [--oreo-learning-rate LR] [--smoke] [--out bench/results/learning.json]

Every variant is one `swirl_round` on the same config with one change, so everything they share (the converted
model, the toy worlds, the trajectories, their judgments and the base model's evaluation) is computed once and
is a store hit afterwards; all are evaluated on the same held-out questions (evaluate.questions per dataset,
the same seed), so each comparison is paired. A row is named by what it trains; FILTER is the filter.strategy
of its data (none, process, outcome or process_outcome: docs/method.md §1.3):

    base                      the policy as configured (no training)
    warmup                    SFT on the training split's gold demonstrations (generate.source: gold: the
                              datasets' own solutions replayed as protocol actions through the real tools), to
                              teach the protocol; with --warmup (the default) every variant below starts from
                              this adapter: it generates with it, trains it further, and is compared with it
    sft_FILTER                SFT (next-token loss on the kept actions); sft_process_outcome is the paper's
                              SFT baseline (called `sft` before)
    swirl_offline_FILTER      offline SWiRL (train.objective swirl_offline): the logged actions weighted by
                              the process judge's reward (GOOD 1, BAD 0) with no baseline (called
                              `swirl_FILTER` before). On process or process_outcome data every kept step is
                              GOOD and weighs 1: that is SFT's loss (docs/method.md §1.4)
    swirl_offline_mean_FILTER the same with train.offline.baseline mean: a BAD step weighs less than nothing
                              (negative); FILTER none or outcome (the other filters keep GOOD steps only)
    swirl_online_FILTER       the paper's SWiRL (train.objective swirl): each step samples
                              train.swirl.samples_per_state actions from the current adapter at each of
                              train.swirl.states_per_step states of the kept trajectories, rewards them with
                              the process judge (the config's strict rule judge: GOOD 1, else 0) and trains
                              REINFORCE with the state's mean reward as baseline; actions are sampled at the
                              data's temperature and step length (generate.temperature, max_tokens_per_step)
    oreo                      OREO (train.objective oreo, docs/method.md §2) on the unfiltered trajectories
                              (it learns from the failures too: R = the outcome, 1 or 0); evaluated greedily
    oreo_beam                 the oreo variant's policy evaluated with value-guided beam search
                              (evaluate.decoding beam, --beam-width, sampled at --beam-temperature) ranked by
                              the value model it trained; an evaluation-only round, a row of its own
                              ("... (beam B)"); needs oreo, which runs first. --beam-questions N evaluates
                              a seeded N of the held-out questions per world instead of all (a subset of the
                              others'); its row is then left out of the main tables and a table of its own
                              compares every variant with greedy OREO on those N questions

The default --variants are the issue's rows: base, warmup, sft_process_outcome, swirl_online_process_outcome,
swirl_online_process, swirl_online_none and swirl_offline_mean_none.

Online SWiRL and the engines. The swirl objective samples from the adapter it is training, which a merged
engine cannot serve (the config refuses policy.merge_adapter with train.objective swirl), so a swirl_online_*
round serves the policy as a LoRA (vLLM's LoRA path decodes 3.9x slower than merged weights on this CPU:
docs/results.md, bench/cpu_engine.py). Two consequences: its trajectories are generated again through the LoRA
engine (a generate version of its own, once per seed for every online variant: the same questions, seeds and
adapter as the merged samples the other variants train on, not bit-for-bit the same samples, so the kept pools
and `--fixed-count min` can differ a little; the budget table shows what each trained on), and the round does
not evaluate: a second, evaluation-only round evaluates its adapter merged, as every other adapter is. The
engines are closed whenever the serving changes (merged <-> LoRA), so two vLLM engines never share the cores.
With LoRA serving the sampler always serves the adapter as it is at the step (each step publishes it; the
train log's logprob_drift, shown in the budget table, measures any mismatch): nothing is stale, and there is
no re-merge to tune. What a step costs: it samples S x M actions (S = --swirl-states-per-step, default the
config's train.swirl.states_per_step, 16; M = --swirl-samples-per-state, default 4) and trains on at most
S x M sequences, each its state's whole prefix (~250-450 tokens here) plus the action (with kl_beta 0 a state
whose samples all get the same reward has advantage 0 and is skipped). From the measured rates
(docs/results.md: ~28 s per SFT step of 8 trajectories of ~400 tokens, ~115 forwarded tokens/s for forward +
backward; LoRA decoding ~93 tokens/s), a step is at most ~S x M x 370 / 115 s of training plus S x M x ~20 /
93 s of sampling: ~3.5 min at S 16, M 4 (~75 min for 20 steps), ~55 s at S 4, M 4 (~18 min). Measured so
far only by --smoke (hf engine, 4 states x 2 samples, a loaded machine): 108 s per step, 80 of them sampling
on the hf engine; its first step trained on nothing (each state's samples were rewarded alike), its second
on 23 action tokens. The budget table records the seconds per step, the sampling seconds per step and the
tokens of every run. (Letting the train stage's sampler alone serve the LoRA while generation and evaluation
stay merged would remove both consequences above; that is a change to swirl/config.py and the sampler's
engine config, not made here.)

Equal budgets (--fixed-count N|min): filter.fixed_count for every trained variant (the warm-up excepted: its
data are the gold demonstrations), so each trains on the same number of trajectories per dataset (a seeded
sample; `min` = the smallest of the four filters' pools, i.e. process_outcome's), with the config's steps and
batch size. The budget table gives per variant and seed the fixed count, the trajectories and actions it kept,
the states (online), the optimizer steps, the trained (loss) and forwarded tokens and the seconds.

Seeds (--seeds 0,1,2): every variant runs once per seed s with run.seed, generate.seed, filter.seed (the
fixed-count sample) and train.seed (LoRA init, data order, online sampling) set to s (the config's run.seed
alone derives nothing: each stage seed is set explicitly). The held-out questions (evaluate.seed) and the
toy worlds stay the same, so every seed's evaluation is paired with every other's; the base model's greedy
evaluation is seed-independent and runs once, and --shared-warmup trains the warm-up once (the first seed's)
for every seed. The seed table gives per variant and dataset the mean accuracy over the seeds with its
min-max and sd, and each comparison (--compare: by default the variant against sft_process_outcome and
against base): the mean paired difference over questions x seeds with a 95% paired bootstrap interval over
questions (a question's seeds stay together), each seed's exact McNemar p, and one p for the pooled
difference: the exact sign-flip (permutation) test over questions of each question's mean difference across
seeds, which is McNemar's exact test whenever every such difference is -1, 0 or 1 (one seed). A variant is
compared with the baselines that ran before it (--variants order: the warm-up with base, not with SFT); Holm's
correction runs over every comparison of the table on the held-out tests (the `*_dev` datasets, for choosing
settings, are shown with their uncorrected p only). A smaller family (--compare sft_process_outcome) costs
the SWiRL-vs-SFT comparisons less.

Cross-task transfer (--train-worlds arith|twohop|both, the paper's Table 3): generate (and the warm-up's gold
demonstrations) only on the training datasets of one world, calculator tasks (the arithmetic world and real
GSM8K) or search tasks (the two-hop world), and evaluate on both worlds and the real data as usual.

Each held-out dataset says which test it is: the toy worlds' `*_unseen` (templates never trained on), `*_seen`
(the training templates with other numbers and names) and `*_dev` (for choosing settings); with the real-data
options, `gsm8k_test` (real GSM8K test problems; `--gsm8k-train` also adds real GSM8K training problems to the
warm-up's demonstrations and the round's questions) and `hotpotqa` (real HotpotQA dev questions, their own
paragraphs as the search corpus). The real files are the benchmarks' own formats (e.g. ../shared/data/).

The output, Markdown and JSON (bench/results/learning.{md,json}): the seed table; the budget table; per seed,
each variant's accuracy per dataset (rule-graded) with its 95% Wilson interval, the gain over base (and, with
the warm-up, over the warm-up adapter) with its paired bootstrap interval and McNemar's exact p and Holm's
adjusted p over the comparisons of that table; the process judge's agreement with the outcome on each round's
own samples (precision: correct among process-GOOD trajectories; recall: process-GOOD among correct ones).
The same seed gives the same tables: generation and training are seeded, evaluation is greedy (vLLM on CPU
reproduces greedy decoding exactly in tests/unit/test_evaluate.py).

`--smoke` checks the script's paths end to end in minutes, not what they measure: the config's model served
by the hf engine (no vLLM), 8 training and 4 held-out questions per world, a 10-step warm-up, 2 training
steps per variant (online: 4 states x 2 samples per step), its own store (runs/learn-smoke) and output
(bench/results/learning-smoke.{md,json}); by default one variant of each kind (base, warmup,
sft_process_outcome, swirl_offline_mean_none, swirl_online_none, oreo, oreo_beam); its accuracies mean
nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result

if TYPE_CHECKING:
    from swirl.stages.evaluate import ReportEntry

FILTERS = ("none", "process", "outcome", "process_outcome")
# offline SWiRL's reward, explicit: the process judge's label (GOOD 1, BAD 0), with no baseline or the mean
_OFFLINE = {"objective": "swirl_offline", "offline": {"reward": "process", "baseline": "none"}}
_OFFLINE_MEAN = {"objective": "swirl_offline", "offline": {"reward": "process", "baseline": "mean"}}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    # the pipeline's warm-up step (`warmup:`, swirl.config.warmup_config): SFT on gold demonstrations
    "warmup": {"warmup": {"enabled": True, "steps": 30}},
    **{
        f"sft_{f}": {"train": {"objective": "sft", "kl_beta": 0.0}, "filter": {"strategy": f}}
        for f in FILTERS
    },
    **{f"swirl_offline_{f}": {"train": _OFFLINE, "filter": {"strategy": f}} for f in FILTERS},
    # with a mean baseline the filter must keep BAD steps too (process filters keep GOOD ones only)
    **{
        f"swirl_offline_mean_{f}": {"train": _OFFLINE_MEAN, "filter": {"strategy": f}}
        for f in ("none", "outcome")
    },
    # the sampler serves the adapter being trained: no merged engine (see the docstring); + variant_config's
    **{f"swirl_online_{f}": {"train": {"objective": "swirl"}, "filter": {"strategy": f}} for f in FILTERS},
    # micro-batches of 1024 tokens (2-3 trajectories; gradient accumulation is exact for oreo): OREO keeps two
    # forward graphs (policy, value), and bench/oreo.py measured a peak RSS of 7.6 GB for 1328-token
    # micro-batches on this model, ~14 GB for the 4096-token default with 8 trajectories of ~400 tokens
    "oreo": {
        "filter": {"strategy": "none"},
        "train": {"objective": "oreo", "kl_beta": 0.0, "micro_batch_tokens": 1024},
    },
    "oreo_beam": {"evaluate": {"decoding": "beam"}},  # + the oreo variant's adapter and value model
}
EVAL_ONLY = ("base", "oreo_beam")  # variants that train nothing: their round evaluates the configured policy
NEEDS = {"oreo_beam": "oreo"}  # a variant that evaluates what another one trained
ONLINE = tuple(n for n in VARIANTS if n.startswith("swirl_online_"))  # trained, then evaluated merged
# the issue's rows (issue 24): SWiRL against SFT on the same data
DEFAULT_VARIANTS = (
    "base",
    "warmup",
    "sft_process_outcome",
    "swirl_online_process_outcome",
    "swirl_online_process",
    "swirl_online_none",
    "swirl_offline_mean_none",
)
DEFAULT_COMPARE = "sft_process_outcome,base"
# a world's training datasets, by their format: calculator tasks or search tasks
WORLDS = {"arith": ("gsm8k",), "twohop": ("hotpotqa", "musique", "beerqa", "cofca")}

# --smoke: the config's model on the hf engine, a few questions and steps, its own store (see the docstring)
SMOKE_ROOT = "runs/learn-smoke"
SMOKE = {
    "run": {"name": "learn-smoke", "root": SMOKE_ROOT, "experiment": "swirl-learn-smoke"},
    "prepare": {
        "toy_worlds": {
            "dir": f"{SMOKE_ROOT}/data",
            **{f"{w}_{s}": 4 for w in ("arithmetic", "twohop") for s in ("dev", "test", "test_seen")},
            "arithmetic_train": 8,
            "twohop_train": 8,
            "seed": 0,
        },
    },
    "generate": {"shard_questions": 8},
    "train": {
        "max_steps": 2,
        "batch_size": 4,
        "checkpoint_every": 10,
        "swirl": {"states_per_step": 4, "samples_per_state": 2},
    },
    "evaluate": {"questions": 4, "shard_questions": 4, "bootstrap_resamples": 100},
    "policy": {"kind": "hf", "merge_adapter": False},
}
# a short warm-up, long enough for some right answers among its samples (OREO needs both outcomes)
SMOKE_VARIANTS = {"warmup": {"warmup": {"steps": 10, "learning_rate": 1e-3}}}
SMOKE_DEFAULT_VARIANTS = (
    "base",
    "warmup",
    "sft_process_outcome",
    "swirl_offline_mean_none",
    "swirl_online_none",
    "oreo",
    "oreo_beam",
)


@dataclass(frozen=True)
class Options:
    """What a variant's config takes from the command line and from the variants run before it."""

    seed: int | None = None  # run/generate/filter/train seeds (None: the config's)
    fixed_count: int | str | None = None  # filter.fixed_count of every trained variant but the warm-up
    states_per_step: int | None = None  # online: train.swirl.states_per_step
    samples_per_state: int | None = None  # online: train.swirl.samples_per_state
    kl_beta: float | None = None  # the swirl_* variants' train.kl_beta
    online_learning_rate: float | None = None  # the swirl_online_* variants' train.learning_rate
    oreo_learning_rate: float | None = None  # oreo's policy rate (its value model keeps the config's)
    warmup_steps: int | None = None
    start_adapter: str | None = None  # the warm-up adapter the trained variants start from
    beam: dict[str, Any] | None = None  # oreo_beam: the oreo adapter, its value model, width, temperature
    smoke: bool = False


def only_datasets(data: dict[str, Any], prefixes: str | None, train_templates: int | None) -> dict[str, Any]:
    """The config with only the datasets whose names start with one of `prefixes` (comma-separated; all when
    None) and the toy worlds' training files limited to their first `train_templates` templates."""
    out = _merge(data, {})
    if prefixes:
        keep = tuple(p.strip() for p in prefixes.split(",") if p.strip())
        out["ingest"] = {
            **out["ingest"],
            "datasets": [d for d in out["ingest"]["datasets"] if d["name"].startswith(keep)],
        }
        if not out["ingest"]["datasets"]:
            names = [d["name"] for d in data["ingest"]["datasets"]]
            raise SystemExit(f"--datasets {prefixes}: no dataset name starts so (the config has {names})")
    if train_templates is not None:
        if not out["prepare"].get("toy_worlds"):
            raise SystemExit("--train-templates: the config writes no toy worlds (prepare.toy_worlds)")
        out["prepare"] = _merge(out["prepare"], {"toy_worlds": {"train_templates": train_templates}})
    return out


def with_train_worlds(data: dict[str, Any], worlds: str | None) -> dict[str, Any]:
    """The config generating (and warming up) on one world's training datasets only (`arith`: calculator
    tasks, `twohop`: search tasks; None or `both`: every training dataset); evaluation is unchanged."""
    if worlds in (None, "both"):
        return data
    if worlds not in WORLDS:
        raise SystemExit(f"--train-worlds {worlds}: arith, twohop or both")
    listed = set(data["generate"].get("datasets") or ())
    names = [
        d["name"]
        for d in data["ingest"]["datasets"]
        if d["split"] == "train" and d["format"] in WORLDS[worlds] and (not listed or d["name"] in listed)
    ]
    if not names:
        raise SystemExit(f"--train-worlds {worlds}: the config has no training dataset of that world")
    return _merge(data, {"generate": {"datasets": names}})


def with_real_data(
    data: dict[str, Any],
    gsm8k_train: str | None = None,
    gsm8k_train_questions: int | None = None,
    gsm8k_test: str | None = None,
    gsm8k_test_questions: int | None = None,
    hotpotqa: str | None = None,
    hotpotqa_questions: int | None = None,
) -> dict[str, Any]:
    """The config with real benchmark files added: `gsm8k` (training problems: gold demonstrations for the
    warm-up, questions for the round), `gsm8k_test` and `hotpotqa` (held out; HotpotQA's own paragraphs are
    its search corpus). `*_questions`: a seeded sample of that many (all when None)."""
    added = [
        {"name": name, "format": fmt, "split": split, "path": path, "limit": n}
        for name, fmt, split, path, n in (
            ("gsm8k", "gsm8k", "train", gsm8k_train, gsm8k_train_questions),
            ("gsm8k_test", "gsm8k", "test", gsm8k_test, gsm8k_test_questions),
            ("hotpotqa", "hotpotqa", "dev", hotpotqa, hotpotqa_questions),
        )
        if path
    ]
    for d in added:
        if not os.path.exists(d["path"]):
            flag = "--" + d["name"].replace("_", "-")
            raise SystemExit(f"{flag}: no file {d['path']!r}; give the path of the benchmark's file")
    out = _merge(data, {})
    out["ingest"] = {**out["ingest"], "datasets": [*out["ingest"]["datasets"], *added]}
    math = list(out["judge"]["outcome"]["math_datasets"])
    if any(d["format"] == "gsm8k" for d in added) and "gsm8k" not in math:
        out["judge"] = _merge(out["judge"], {"outcome": {"math_datasets": [*math, "gsm8k"]}})
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _seed_over(seed: int | None) -> dict[str, Any]:
    """Every seed the config's stages take (run.seed alone derives nothing): generation, the fixed-count
    sample, training. Not evaluate.seed (the held-out questions) nor the toy worlds' seed (the data)."""
    if seed is None:
        return {}
    return {
        "run": {"seed": seed},
        "generate": {"seed": seed},
        "filter": {"seed": seed},
        "train": {"seed": seed},
    }


def _online_over(data: dict[str, Any], opts: Options) -> dict[str, Any]:
    """An online variant's sampling (the data's temperature and step length; the states and samples per step
    asked for), its learning rate, and LoRA serving: the sampler serves the adapter being trained."""
    gen = data["generate"]
    swirl: dict[str, Any] = {
        "temperature": gen["temperature"] or 1.0,
        "max_tokens": gen["max_tokens_per_step"],
    }
    if opts.states_per_step:
        swirl["states_per_step"] = opts.states_per_step
    if opts.samples_per_state:
        swirl["samples_per_state"] = opts.samples_per_state
    train: dict[str, Any] = {"swirl": swirl}
    if opts.online_learning_rate:
        train["learning_rate"] = opts.online_learning_rate
    return {"train": train, "policy": {"merge_adapter": False}}


def _trained_over(data: dict[str, Any], name: str, opts: Options) -> dict[str, Any]:
    """What the command line changes in a trained variant (the warm-up excepted): the fixed count, the
    swirl variants' KL weight, the online sampling, OREO's rate."""
    over: dict[str, Any] = {}
    if opts.fixed_count is not None:
        over = _merge(over, {"filter": {"fixed_count": opts.fixed_count}})
    if name.startswith("swirl_") and opts.kl_beta is not None:
        over = _merge(over, {"train": {"kl_beta": opts.kl_beta}})
    if name in ONLINE:
        over = _merge(over, _online_over(data, opts))
    if name == "oreo" and opts.oreo_learning_rate:  # the policy's rate; the value model keeps the config's
        lr = data["train"]["learning_rate"]
        rates = {"learning_rate": opts.oreo_learning_rate, "oreo": {"value_learning_rate": lr}}
        over = _merge(over, {"train": rates})
    return over


def _beam_over(beam: dict[str, Any] | None) -> dict[str, Any]:
    if not beam:
        raise ValueError("oreo_beam evaluates the oreo variant's policy: run oreo first")
    return {
        "policy": {"adapter": beam["adapter"]},
        "evaluate": {
            "value_model": beam["value_model"],
            "beam_width": beam["width"],
            "temperature": beam["temperature"],
            **({"questions": beam["questions"]} if beam.get("questions") else {}),
        },
    }


def variant_config(data: dict[str, Any], name: str, opts: Options | None = None) -> Any:
    """The config of one variant. `opts.start_adapter`: the warm-up adapter the trained variants generate with
    and continue training (train.lora.init_adapter defaults to the policy's adapter); `opts.beam`
    (oreo_beam): the adapter to evaluate, its value model, the beam width and temperature."""
    opts = opts or Options()
    over = _merge(VARIANTS[name], _seed_over(opts.seed))
    if opts.smoke:
        over = _merge(over, SMOKE_VARIANTS.get(name, {}))
    if name == "warmup" and opts.warmup_steps:
        over = _merge(over, {"warmup": {"steps": opts.warmup_steps}})
    if name not in (*EVAL_ONLY, "warmup"):
        over = _merge(over, _trained_over(data, name, opts))
    if opts.start_adapter and name not in ("base", "warmup"):
        over = _merge(over, {"policy": {"adapter": opts.start_adapter}})
    if name == "oreo_beam":
        over = _merge(over, _beam_over(opts.beam))
    label = variant_label(name, bool(opts.start_adapter), (opts.beam or {}).get("width", 0))
    over = _merge(over, _named(data, label if opts.seed is None else f"{label} seed {opts.seed}"))
    if name == "warmup":  # the pipeline's own warm-up round
        from swirl.config import config_from_dict, warmup_config

        return warmup_config(config_from_dict(_merge(data, over), source="bench/learning.py:warmup"))
    # an online round trains only: a second round evaluates its adapter merged (evaluation_config)
    return _config(_merge(data, over), name, name in EVAL_ONLY, evaluate=name not in ONLINE)


def evaluation_config(data: dict[str, Any], adapter: str, label: str = "adapter") -> Any:
    """An evaluation-only round of `adapter` (the variant `label` trained it), served as the config serves
    every evaluated policy (merged when policy.merge_adapter says so): its round's "base" entries are the
    adapter's evaluations."""
    over = _merge({"policy": {"adapter": adapter}}, _named(data, f"{label} evaluation"))
    return _config(_merge(data, over), f"evaluate {adapter}", True)


def _named(data: dict[str, Any], label: str) -> dict[str, Any]:
    """The run section that names a variant's rounds by what they run (`learn-cpu warmup+sft_outcome seed 1
    #1` in MLflow and Prefect, not `learn-cpu #7`). The store root is kept (RunSection.store_root)."""
    from swirl.config import RunSection

    run = RunSection(**data.get("run", {}))
    return {"run": {"name": f"{run.name} {label}", "root": run.store_root}}


def _config(cfg: dict[str, Any], source: str, eval_only: bool, evaluate: bool = True) -> Any:
    from swirl.config import config_from_dict

    if eval_only:  # evaluation only: nothing is trained, the configured policy is evaluated as "base"
        cfg["stages"] = [s for s in cfg["stages"] if s in ("prepare", "ingest", "corpus", "evaluate")]
    elif not evaluate:
        cfg["stages"] = [s for s in cfg["stages"] if s != "evaluate"]
    cfg["evaluate"] = _merge(cfg.get("evaluate", {}), {"base": True, "trained": not eval_only})
    return config_from_dict(cfg, source=f"bench/learning.py:{source}")


def variant_label(name: str, warm: bool, beam_width: int) -> str:
    """The variant's row in the tables: warmup+NAME when it started from the warm-up adapter."""
    label = f"oreo (beam {beam_width})" if name == "oreo_beam" else name
    return f"warmup+{label}" if warm and name not in ("base", "warmup") else label


# ------------------------------------------------------------------------------------------ seeds table
Verdicts = Mapping[str, bool]  # question id -> answered right (rule-graded)


def _seed_key(s: int | None) -> int:
    return -1 if s is None else s


def seed_accuracy(by_seed: Mapping[int | None, Verdicts]) -> dict[str, Any]:
    """Accuracy per seed (None: one run shared by every seed), their mean, min, max and sample sd (None with
    one seed)."""
    seeds = sorted(by_seed, key=_seed_key)
    rates = [sum(by_seed[s].values()) / len(by_seed[s]) for s in seeds]
    return {
        "seeds": seeds,
        "accuracy": rates,
        "mean": float(np.mean(rates)),
        "min": min(rates),
        "max": max(rates),
        "sd": float(np.std(rates, ddof=1)) if len(rates) > 1 else None,
        "n": len(by_seed[seeds[0]]),
    }


def seed_comparison(
    baseline: Mapping[int | None, Verdicts],
    candidate: Mapping[int | None, Verdicts],
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """`candidate` against `baseline`, paired by question and seed (a baseline run once, seed None, pairs with
    every seed): the mean difference over questions x seeds with a 95% paired bootstrap interval over
    questions (each question's seeds averaged, so they are resampled together), each seed's exact McNemar p,
    and the sign-flip test's p of the per-question mean differences. None when a seed has no baseline."""
    from swirl.evaluation.metrics import mcnemar_exact_p, paired_bootstrap_interval, sign_flip_p

    seeds = sorted(candidate, key=_seed_key)
    pairs = [(baseline.get(s, baseline.get(None)), candidate[s]) for s in seeds]
    if any(a is None for a, _ in pairs):
        return None
    qids = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    a = np.array([[bool(x[q]) for q in qids] for x, _ in pairs], dtype=float)  # seeds x questions
    b = np.array([[bool(y[q]) for q in qids] for _, y in pairs], dtype=float)
    per_question = (b - a).mean(axis=0)
    diff = float(per_question.mean())
    low, high = paired_bootstrap_interval(a.mean(axis=0), b.mean(axis=0), diff, 0.95, resamples, seed)
    per_seed = [mcnemar_exact_p(int((x > y).sum()), int((y > x).sum())) for x, y in zip(a, b, strict=True)]
    return {
        "n": len(qids),
        "seeds": seeds,
        "diff": diff,
        "diff_low": low,
        "diff_high": high,
        "mcnemar_p_per_seed": per_seed,
        "p": sign_flip_p(per_question, resamples, seed),
    }


@dataclass(frozen=True)
class SeedRow:
    """One variant on one dataset over the seeds, with its comparisons by baseline variant."""

    variant: str
    dataset: str
    accuracy: dict[str, Any]
    vs: dict[str, dict[str, Any]] = field(default_factory=dict)


def seed_rows(
    verdicts: Mapping[tuple[str, str], Mapping[int | None, Verdicts]],
    baselines: Sequence[str],
    dev: Collection[str] = (),
    resamples: int = 10_000,
    seed: int = 0,
) -> list[SeedRow]:
    """The seed table's rows, in the order of `verdicts` ((variant, dataset) -> seed -> verdicts; the order
    the variants ran): every variant against every baseline that ran before it on the same dataset (so the
    warm-up is compared with base, not with SFT; a variant run once, like base, has no seeded one to pair
    with); Holm's adjusted p (`holm_p`) over the comparisons on the datasets not in `dev`."""
    from swirl.evaluation.metrics import holm_adjusted

    order = list(dict.fromkeys(v for v, _ in verdicts))
    rows = []
    for (variant, dataset), by_seed in verdicts.items():
        row = SeedRow(variant, dataset, seed_accuracy(by_seed))
        for b in baselines:
            if b in order[: order.index(variant)] and (b, dataset) in verdicts:
                c = seed_comparison(verdicts[(b, dataset)], by_seed, resamples, seed)
                if c is not None:
                    row.vs[b] = c
        rows.append(row)
    family = [c for r in rows if r.dataset not in dev for c in r.vs.values()]
    for c, p in zip(family, holm_adjusted([c["p"] for c in family]), strict=True):
        c["holm_p"] = p
    return rows


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x:.2g}"


def seed_table(rows: Sequence[SeedRow], baselines: Sequence[str], labels: Mapping[str, str]) -> str:
    """The seed table as Markdown: accuracy mean [min–max] (sd) per variant and dataset, then per baseline the
    pooled difference [95% CI], each seed's McNemar p, the sign-flip p and Holm's p."""
    used = [b for b in baselines if any(b in r.vs for r in rows)]
    seeds = sorted({s for r in rows for s in r.accuracy["seeds"] if s is not None})
    head = ["variant", "dataset", "n", "accuracy: mean [min–max] (sd)"]
    for b in used:
        name = labels.get(b, b)
        head += [f"vs {name}: diff [95% CI]", "McNemar p per seed", "p (sign-flip)", "Holm p"]
    lines = [
        f"Across seeds {', '.join(map(str, seeds))}: mean accuracy and spread; each comparison pooled over "
        "questions x seeds (95% paired bootstrap over questions), each seed's McNemar p, the sign-flip p "
        "of the per-question mean differences, Holm's correction over the table's comparisons on the "
        "held-out tests (the *_dev rows, for choosing settings: uncorrected, '—')",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        acc = r.accuracy
        spread = f"{acc['mean']:.3f} [{acc['min']:.3f}–{acc['max']:.3f}]"
        spread += f" ({acc['sd']:.3f})" if acc["sd"] is not None else " (one run)"
        cells = [labels.get(r.variant, r.variant), r.dataset, str(acc["n"]), spread]
        for b in used:
            c = r.vs.get(b)
            if c is None:
                cells += ["—"] * 4
                continue
            cells += [
                f"{c['diff']:+.3f} [{c['diff_low']:+.2f}, {c['diff_high']:+.2f}]",
                " / ".join(_p(p) for p in c["mcnemar_p_per_seed"]),
                _p(c["p"]),
                _p(c.get("holm_p")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """What each trained variant trained on and for how long, per seed."""

    def num(x: Any, fmt: str = ",") -> str:
        return "—" if x is None else format(x, fmt)

    lines = [
        "Training budget per variant and seed (fixed count per dataset: filter.fixed_count's sample; "
        "actions: the kept steps; states: what online SWiRL samples at; tokens: loss tokens / forwarded "
        "tokens)",
        "",
        "| variant | seed | fixed count | trajectories | actions | states | steps | tokens trained / "
        "forwarded | train s | s per step | sampling s per step | log-prob drift |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fixed = (
            "—" if not r.get("fixed_count") else ", ".join(f"{k} {v}" for k, v in r["fixed_count"].items())
        )
        lines.append(
            f"| {r['variant']} | {num(r['seed'], '')} | {fixed} | {num(r['trajectories'])} | "
            f"{num(r['actions'])} | {num(r['states'])} | {num(r['steps'])} | {num(r['trained_tokens'])} / "
            f"{num(r['forwarded_tokens'])} | {num(r['seconds'], '.0f')} | "
            f"{num(r['seconds_per_step'], '.1f')} | {num(r['sample_seconds_per_step'], '.1f')} | "
            f"{num(r['logprob_drift'], '.1e')} |"
        )
    return "\n".join(lines)


def judge_table(rows: list[dict[str, Any]]) -> str:
    """The process judge against the outcome on a round's own samples, one row per (variant, dataset)."""

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.0f}%"

    lines = [
        "Process judge vs outcome on each round's own samples (what it generated before training)",
        "",
        "| round | dataset | process-GOOD | correct | both | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['dataset']} | {r['process_good']} | {r['correct']} | {r['both']} | "
            f"{pct(r['precision'])} | {pct(r['recall'])} |"
        )
    return "\n".join(lines)


def _cell(c: Any) -> dict[str, Any]:
    return {
        "variant": c.policy,
        "dataset": c.dataset,
        "accuracy": c.rule.rate,
        "low": c.rule.low,
        "high": c.rule.high,
        "n": c.rule.n,
        **(
            {
                "gain": c.vs_base.diff,
                "gain_low": c.vs_base.diff_low,
                "gain_high": c.vs_base.diff_high,
                "mcnemar_p": c.vs_base.mcnemar_p,
            }
            if c.vs_base
            else {}
        ),
        "episode": dict(c.episode),
    }


def _fixed_count(text: str) -> int | str:
    if text == "min":
        return text
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--fixed-count: a positive number of trajectories, or min")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/learn-cpu.yaml")
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated (default: {','.join(DEFAULT_VARIANTS)}; with --smoke one of each kind)",
    )
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="train the variants from the base model, not from the warm-up adapter",
    )
    p.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds, each variant run once per seed (default: the config's run.seed)",
    )
    p.add_argument(
        "--shared-warmup",
        action="store_true",
        help="train the warm-up once (the first seed's) and start every seed's variants from it",
    )
    p.add_argument(
        "--fixed-count",
        type=_fixed_count,
        default=None,
        help="filter.fixed_count of every trained variant but the warm-up: the same number of trajectories "
        "per dataset (min: the smallest filter's pool)",
    )
    p.add_argument(
        "--train-worlds",
        choices=("arith", "twohop", "both"),
        default="both",
        help="train (and warm up) on one world's training datasets only; evaluate on all (Table 3)",
    )
    p.add_argument(
        "--compare",
        default=DEFAULT_COMPARE,
        help="the seed table's baselines: variants every other variant is compared with",
    )
    p.add_argument(
        "--swirl-states-per-step",
        type=int,
        default=None,
        help="online: states sampled per step (default: the config's train.swirl.states_per_step)",
    )
    p.add_argument(
        "--swirl-samples-per-state",
        type=int,
        default=None,
        help="online: actions sampled per state (default: the config's train.swirl.samples_per_state)",
    )
    p.add_argument("--kl-beta", type=float, default=None, help="train.kl_beta of the swirl_* variants")
    p.add_argument(
        "--online-learning-rate", type=float, default=None, help="the swirl_online_* variants' rate"
    )
    p.add_argument("--beam-width", type=int, default=3, help="B of the oreo_beam variant's beam search")
    p.add_argument(
        "--beam-temperature",
        type=float,
        default=0.7,
        help="sampling temperature of the beam search's candidate steps (beam decoding samples)",
    )
    p.add_argument(
        "--beam-questions",
        type=int,
        default=None,
        help="held-out questions per world for oreo_beam (default: evaluate.questions, as the others)",
    )
    p.add_argument(
        "--oreo-learning-rate",
        type=float,
        default=None,
        help="the oreo variant's policy learning rate (default: train.learning_rate, which its value model "
        "keeps)",
    )
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="training steps of the warm-up (default: 30)"
    )
    p.add_argument(
        "--train-templates",
        type=int,
        default=None,
        help="train on the first N training templates of each toy world only (prepare.toy_worlds."
        "train_templates; the held-out files stay the same): accuracy against the number of templates",
    )
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated prefixes of the config's dataset names to keep (e.g. arith: the arithmetic "
        "world only)",
    )
    p.add_argument("--gsm8k-train", default=None, help="real GSM8K training file (train.jsonl)")
    p.add_argument("--gsm8k-train-questions", type=int, default=None, help="a seeded sample of it")
    p.add_argument("--gsm8k-test", default=None, help="real GSM8K test file (test.jsonl), evaluated")
    p.add_argument("--gsm8k-test-questions", type=int, default=None, help="a seeded sample (default: all)")
    p.add_argument("--hotpotqa", default=None, help="real HotpotQA dev file (distractor JSON), evaluated")
    p.add_argument("--hotpotqa-questions", type=int, default=None, help="a seeded sample (default: all)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="check the paths end to end on the tiny model and the hf engine (minutes; see the docstring)",
    )
    p.add_argument("--out", default=None, help="default: bench/results/learning.json (-smoke with --smoke)")
    return p


def _round_data(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The configured (or, with --smoke, the smoke) base config and the config data every variant starts
    from: the chosen datasets and training worlds, the real data files, the smoke settings."""
    from swirl.config import load_config

    base_cfg = load_config(args.config)
    data = with_real_data(
        only_datasets(base_cfg.model_dump(mode="json"), args.datasets, args.train_templates),
        args.gsm8k_train,
        args.gsm8k_train_questions,
        args.gsm8k_test,
        args.gsm8k_test_questions,
        args.hotpotqa,
        args.hotpotqa_questions,
    )
    data = with_train_worlds(data, args.train_worlds)
    if args.smoke:
        data = _merge(data, SMOKE)
        data["ingest"]["datasets"] = [
            {
                **d,
                "path": d["path"].replace(
                    base_cfg.prepare.toy_worlds.dir, SMOKE["prepare"]["toy_worlds"]["dir"]
                ),
            }
            for d in data["ingest"]["datasets"]
        ]
        base_cfg = variant_config(data, "base", Options(smoke=True))
    return base_cfg, data


def _variant_names(variants: str | None, warmup: bool, smoke: bool = False) -> list[str]:
    """The variants to run, in order: with the warm-up first when the others start from its adapter, and
    each variant that another one needs before it."""
    if variants is None:
        names = list(SMOKE_DEFAULT_VARIANTS if smoke else DEFAULT_VARIANTS)
    else:
        names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; the variants are {list(VARIANTS)}")
    if warmup and any(n not in ("base", "warmup") for n in names) and "warmup" not in names:
        names.insert(1 if names[:1] == ["base"] else 0, "warmup")  # the variants start from its adapter
    for name, needed in NEEDS.items():
        if name in names and needed not in names[: names.index(name)]:
            names.insert(names.index(name), needed)
    return names


def _seeds(text: str | None, default: int) -> list[int]:
    seeds = [int(s) for s in text.split(",") if s.strip()] if text else [default]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds {text}: a seed twice")
    return seeds


@dataclass(frozen=True)
class Evaluated:
    """A variant's evaluations on one dataset: its name, its seed (None: one run shared by every seed, like
    base) and its report entry."""

    name: str
    seed: int | None
    entry: ReportEntry


@dataclass
class _Runs:
    """What the variants' rounds produced, gathered as they run."""

    evaluated: list[Evaluated] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    judge_rows: list[dict[str, Any]] = field(default_factory=list)  # the process judge vs the outcome
    budgets: list[dict[str, Any]] = field(default_factory=list)  # what each trained variant trained on
    start_adapter: str | None = None  # the warm-up adapter the trained variants start from
    beam: dict[str, Any] | None = None  # what oreo_beam evaluates: the oreo variant's policy and value model
    serving: tuple[str, bool] | None = None  # how the running engines serve the policy: (kind, merged)


def _add_entries(
    runs: _Runs,
    store: Any,
    name: str,
    seed: int | None,
    label: str,
    trained_on: str,
    result: Any,
    evaluated: str,
) -> None:
    """The round's evaluations of the policy labelled `evaluated` in it ("base" or "trained"), as report
    entries of the variant (once each)."""
    from swirl.stages.evaluate import ReportEntry

    for key, out in result.stages.items():
        parts = key.split("/")
        if parts[0] == "eval" and len(parts) == 3 and parts[2] == evaluated:
            ref = store.ref("evaluate", out.version)
            if not any(e.name == name and e.entry.ref.version == ref.version for e in runs.evaluated):
                runs.evaluated.append(Evaluated(name, seed, ReportEntry(label, trained_on, ref)))


def _add_judge_rows(runs: _Runs, store: Any, name: str, label: str, result: Any) -> None:
    """The round's filter summaries: the process judge against the outcome, per dataset."""
    if name in EVAL_ONLY or name == "warmup":
        return
    for key, out in result.stages.items():
        if key.startswith("filter/"):
            agreement = store.ref("filter", out.version).summary.get("judge_agreement", {})
            for ds, a in agreement.items():
                if ds != "all":
                    runs.judge_rows.append({"variant": label, "dataset": ds, **a})


def train_budget(store: Any, result: Any) -> dict[str, Any] | None:
    """What the round's train stage trained on and for how long, from its summary and per-step log: kept
    trajectories and actions, states (online), optimizer steps, loss and forwarded tokens, seconds, sampling
    seconds per step and the sampler's log-prob drift (online), and the filters' fixed count per dataset."""
    from swirl.stages.train import read_train_log

    train = result.stages.get("train")
    if train is None:
        return None
    summary = store.ref("train", train.version).summary
    log = read_train_log(store, store.ref("train", train.version))
    steps = len(log) or summary.get("steps") or 0
    fixed: dict[str, Any] = {}
    for key, out in result.stages.items():
        if key.startswith("filter/"):
            fixed.update(store.ref("filter", out.version).summary.get("fixed_count") or {})
    sampled = [r["sample_seconds"] for r in log if r.get("sample_seconds") is not None]
    drift = [r["logprob_drift"] for r in log if r.get("logprob_drift") is not None]
    seconds = summary.get("seconds")
    return {
        "fixed_count": fixed or None,
        "trajectories": summary.get("kept_trajectories"),
        "actions": summary.get("kept_steps"),
        "states": summary.get("states"),
        "steps": steps,
        "trained_tokens": int(sum(r.get("trained_tokens", 0) for r in log)),
        "forwarded_tokens": int(sum(r.get("tokens", 0) for r in log)),
        "seconds": seconds,
        "seconds_per_step": seconds / steps if seconds and steps else None,
        "sample_seconds_per_step": sum(sampled) / len(sampled) if sampled else None,
        "logprob_drift": float(np.mean(drift)) if drift else None,
        "train_version": train.version,
    }


def _options(args: argparse.Namespace, runs: _Runs, seed: int) -> Options:
    return Options(
        seed=seed,
        fixed_count=args.fixed_count,
        states_per_step=args.swirl_states_per_step,
        samples_per_state=args.swirl_samples_per_state,
        kl_beta=args.kl_beta,
        online_learning_rate=args.online_learning_rate,
        oreo_learning_rate=args.oreo_learning_rate,
        warmup_steps=args.warmup_steps,
        start_adapter=runs.start_adapter,
        beam=runs.beam,
        smoke=args.smoke,
    )


def _round(runs: _Runs, cfg: Any) -> Any:
    """`swirl_round` on `cfg`, the engines kept for the next round, unless the policy is served otherwise
    (merged <-> LoRA): then the running ones are closed first, so two engines never share the cores."""
    from flows.round import swirl_round
    from tasks.engines import close_engines

    serving = (cfg.policy.kind, bool(cfg.policy.merge_adapter))
    if runs.serving is not None and runs.serving != serving:
        close_engines()
    runs.serving = serving
    return swirl_round(cfg, keep_engines=True)


def _shared(name: str, seed: int, first: int, shared_warmup: bool) -> bool:
    """Whether the variant ran once for every seed: base (greedy, untrained), and the warm-up when shared."""
    return seed != first and (name == "base" or (name == "warmup" and shared_warmup))


def _run_variant(
    args: argparse.Namespace, data: dict[str, Any], store: Any, runs: _Runs, name: str, seed: int
) -> None:
    """One variant for one seed: its round (an online variant's: training, then its adapter's evaluation)."""
    from swirl.stages.train import value_path

    cfg = variant_config(data, name, _options(args, runs, seed))
    t0 = time.perf_counter()
    result = evaluated = _round(runs, cfg)
    if name in ONLINE:  # trained with the adapter served as a LoRA; evaluated merged, as the others
        trained = f"{variant_label(name, bool(runs.start_adapter), args.beam_width)} seed {seed}"
        evaluated = _round(runs, evaluation_config(data, result.stages["train"].adapter, trained))
    key = name if len(args.seed_list) == 1 else f"{name} (seed {seed})"
    runs.timings[key] = round(time.perf_counter() - t0, 1)
    run_seed = None if name == "base" or (name == "warmup" and args.shared_warmup) else seed
    label = variant_label(name, bool(runs.start_adapter), args.beam_width)
    trained_on = {"base": "", "oreo_beam": "oreo"}.get(name, cfg.train.objective)
    where = "base" if name in EVAL_ONLY or name in ONLINE else "trained"
    _add_entries(runs, store, name, run_seed, label, trained_on, evaluated, where)
    shown = label if run_seed is None or len(args.seed_list) == 1 else f"{label} (seed {seed})"
    _add_judge_rows(runs, store, name, shown, result)
    budget = train_budget(store, result) if name not in EVAL_ONLY else None
    if budget:
        runs.budgets.append({"variant": label, "seed": run_seed, **budget})
    if name == "warmup" and args.warmup:
        runs.start_adapter = result.stages["train"].adapter
    if name == "oreo":
        trained = store.ref("train", result.stages["train"].version)
        runs.beam = {
            "adapter": result.stages["train"].adapter,
            "value_model": value_path(trained),
            "width": args.beam_width,
            "temperature": args.beam_temperature,
            "questions": args.beam_questions,
        }
    print(f"{key}: {runs.timings[key]} s", flush=True)


def _run_variants(args: argparse.Namespace, data: dict[str, Any], store: Any, names: list[str]) -> _Runs:
    """Every variant for every seed, in order (base once, the warm-up once with --shared-warmup); the engines
    are closed at the end."""
    from tasks.engines import close_engines

    runs = _Runs()
    first = args.seed_list[0]
    try:
        for seed in args.seed_list:
            runs.beam = None
            if not (args.shared_warmup and seed != first):
                runs.start_adapter = None
            for name in names:
                if not _shared(name, seed, first, args.shared_warmup):
                    _run_variant(args, data, store, runs, name, seed)
    finally:
        close_engines()
    return runs


def _seed_section(
    args: argparse.Namespace, store: Any, cfg_eval: Any, runs: _Runs, seed: int, title: str
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """One seed's tables and their cells: against base, against the warm-up adapter, and (with
    --beam-questions) on the beam search's questions against greedy OREO."""
    from swirl.evaluation.report import markdown_report
    from swirl.stages.evaluate import report_cells

    all_entries = [e.entry for e in runs.evaluated if e.seed in (None, seed)]
    warm = any(e.policy.startswith("warmup+") for e in all_entries)
    beam_label = variant_label("oreo_beam", warm, args.beam_width)
    beam_subset: dict[str, list[str]] = {}  # dataset -> the questions a --beam-questions run evaluated
    if args.beam_questions is not None:
        for e in all_entries:
            if e.policy == beam_label:
                ids = store.read_ref(e.ref).column("question_id").to_pylist()
                beam_subset[str(e.ref.summary.get("dataset"))] = ids
    entries = all_entries
    if beam_subset:  # not the others' questions: the beam row has a table of its own below
        entries = [e for e in entries if e.policy != beam_label]
    cells = report_cells(store, entries, cfg_eval)
    md = markdown_report(cells, title)
    warm_cells = []
    if warm:
        warm_cells = report_cells(
            store, [e for e in entries if e.policy != "base"], cfg_eval, baseline="warmup"
        )
        md += "\n\n" + markdown_report(
            warm_cells,
            'The same policies compared with the warm-up adapter ("gain vs base" below = gain vs warmup)',
        )
    subset_cells = []
    if beam_subset:
        greedy = variant_label("oreo", warm, args.beam_width)
        n = ", ".join(f"{len(v)} of {d}" for d, v in beam_subset.items())
        subset_cells = report_cells(store, all_entries, cfg_eval, baseline=greedy, question_ids=beam_subset)
        md += "\n\n" + markdown_report(
            subset_cells,
            f'On the questions the beam search evaluated ({n}), compared with greedy {greedy} ("gain vs '
            f'base" below = gain vs {greedy})',
        )
    cells_json = {
        "cells": [_cell(c) for c in cells],
        "cells_vs_warmup": [_cell(c) for c in warm_cells],
        "cells_on_beam_questions": [_cell(c) for c in subset_cells],
    }
    return md, cells_json


def _verdicts(
    store: Any, runs: _Runs, skip: Sequence[str]
) -> dict[tuple[str, str], dict[int | None, Verdicts]]:
    """(variant, dataset) -> seed -> question id -> rule-graded verdict, in the order the variants ran."""
    out: dict[tuple[str, str], dict[int | None, Verdicts]] = {}
    for e in runs.evaluated:
        if e.name in skip:
            continue
        rows = store.read_ref(e.entry.ref).select(["question_id", "rule_correct"]).to_pylist()
        dataset = str(e.entry.ref.summary.get("dataset"))
        out.setdefault((e.name, dataset), {})[e.seed] = {
            r["question_id"]: bool(r["rule_correct"]) for r in rows
        }
    return out


def _report(args: argparse.Namespace, store: Any, base_cfg: Any, runs: _Runs) -> tuple[str, dict[str, Any]]:
    """The Markdown (the seed table, the budget table, each seed's tables, the judge table) and its JSON."""
    cfg_eval = base_cfg.evaluate
    worlds = "" if args.train_worlds == "both" else f", trained on {args.train_worlds} only"
    title = f"SWiRL at CPU scale: {base_cfg.policy.model}, {args.config}{worlds}"
    labels = {e.name: e.entry.policy for e in runs.evaluated}
    baselines = [b.strip() for b in args.compare.split(",") if b.strip()]
    skip = ("oreo_beam",) if args.beam_questions is not None else ()  # not the others' questions
    dev = [d.name for d in base_cfg.ingest.datasets if d.name.endswith("_dev")]  # for choosing settings
    rows = seed_rows(
        _verdicts(store, runs, skip), baselines, dev, cfg_eval.bootstrap_resamples, cfg_eval.seed
    )
    md = f"# {title}\n\n" + seed_table(rows, baselines, labels)
    if runs.budgets:
        md += "\n\n" + budget_table(runs.budgets)
    per_seed = {}
    for seed in args.seed_list:
        head = title if len(args.seed_list) == 1 else f"{title}: seed {seed}"
        section, per_seed[str(seed)] = _seed_section(args, store, cfg_eval, runs, seed, head)
        md += "\n\n" + section
    if runs.judge_rows:
        md += "\n\n" + judge_table(runs.judge_rows)
    out = {
        "seed_table": [
            {"variant": labels.get(r.variant, r.variant), "dataset": r.dataset, **r.accuracy, "vs": r.vs}
            for r in rows
        ],
        "budget": runs.budgets,
        "per_seed": per_seed,
    }
    return md, out


def main() -> int:
    args = _parser().parse_args()
    if args.out is None:
        args.out = "bench/results/learning-smoke.json" if args.smoke else "bench/results/learning.json"
    for k, v in {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "VLLM_NO_USAGE_STATS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(k, v)

    from swirl.store import Store

    base_cfg, data = _round_data(args)
    args.seed_list = _seeds(args.seeds, base_cfg.run.seed)
    names = _variant_names(args.variants, args.warmup, args.smoke)
    store = Store(base_cfg.run.store_root)
    runs = _run_variants(args, data, store, names)
    md, tables = _report(args, store, base_cfg, runs)
    print(md)
    result = {
        "config": args.config,
        "model": base_cfg.policy.model,
        "variants": names,
        "seeds": args.seed_list,
        "shared_warmup": args.shared_warmup,
        "fixed_count": args.fixed_count,
        "train_worlds": args.train_worlds,
        "online": {
            "states_per_step": args.swirl_states_per_step,
            "samples_per_state": args.swirl_samples_per_state,
            "learning_rate": args.online_learning_rate,
        },
        "kl_beta": args.kl_beta,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": runs.timings,
        "warmup_adapter": runs.start_adapter,
        "oreo": runs.beam,
        "oreo_learning_rate": args.oreo_learning_rate,
        "smoke": args.smoke,
        **tables,
        "judge_agreement": runs.judge_rows,
    }
    write_result(result, args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
