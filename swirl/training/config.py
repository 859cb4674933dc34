"""Configuration of the train stage (docs/method.md §1.4, §2): objective, LoRA, optimiser, batching,
checkpoints.

Light on purpose (pydantic only, no torch), so `swirl.config` can import it into RunConfig.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from swirl.sections import Section

Objective = Literal["sft", "swirl_offline", "swirl", "oreo"]
Aggregation = Literal["token", "action", "sequence"]


class LoraSection(Section):
    rank: int = Field(
        16, ge=1, description="LoRA rank r (must not exceed the policy engine's max_lora_rank)."
    )
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (the update is scaled by alpha / rank).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        description="Module names that get LoRA weights (vLLM serves adapters on these projection layers).",
    )
    init_adapter: str | None = Field(
        None,
        description="Start from this peft adapter folder instead of a fresh LoRA (e.g. the previous "
        "round's).",
    )

    def peft_config(self):  # -> peft.LoraConfig
        """A fresh adapter of this shape (the policy's, and OREO's value adapter)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


class OfflineSection(Section):
    """`swirl_offline`: reward-weighted likelihood of the logged actions."""

    reward: Literal["process", "outcome", "process_outcome"] = Field(
        "process",
        description="Reward of a logged action: process = its judge label (label_rewards); outcome = 1 when "
        "its trajectory's final answer is correct else 0; process_outcome = the product of both.",
    )
    label_rewards: dict[str, float] = Field(
        {"GOOD": 1.0, "BAD": 0.0, "UNKNOWN": 0.0},
        description="Reward of each process label (an UNKNOWN label is never treated as GOOD by default).",
    )
    baseline: Literal["none", "mean", "question_mean"] = Field(
        "none",
        description="Subtracted from every reward: none (the default); mean = mean reward of all training "
        "actions; question_mean = mean reward of the actions of the same question (all its samples). With a "
        "baseline, logged actions below it get negative weights, and with no importance ratio or clip "
        "minimising -(r - b) log pi on them drives their log-prob to -inf without bound (the logged actions "
        "were not sampled from the policy being trained); so the default is none (weights r >= 0: "
        "reward-weighted, filtered-SFT-like likelihood), and a chosen baseline's negative weights stop at "
        "negative_floor.",
    )
    negative_floor: float | None = Field(
        -3.0,
        le=0,
        description="A token of a negatively weighted action (reward below the baseline) gets no gradient "
        "once its log-prob is at or below this: it is pushed down to probability exp(negative_floor) (about "
        "5% at -3), then left alone. Empty: no floor (the push is unbounded). Only matters when some weight "
        "can be negative (a baseline, or a negative label reward).",
    )
    normalize: Literal["none", "std"] = Field(
        "none", description="Divide the advantages (reward minus baseline) by their standard deviation."
    )

    def weights_can_be_negative(self) -> bool:
        """Whether some logged action can get a negative weight (then negative_floor matters)."""
        return self.baseline != "none" or min(self.label_rewards.values(), default=0.0) < 0


class SwirlSection(Section):
    """`swirl`: the paper's objective: actions sampled from the current policy, scored by a generative \
reward model."""

    samples_per_state: int = Field(
        4, ge=2, description="m: actions sampled per state (the baseline is their mean)."
    )
    states_per_step: int = Field(16, ge=1, description="States sampled for each optimizer step.")
    max_tokens: int = Field(
        256, ge=1, description="Most tokens of a sampled action (it stops at an action's closing tag)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the actions.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    label_rewards: dict[str, float] = Field(
        {"GOOD": 1.0, "BAD": 0.0, "UNKNOWN": 0.0},
        description="Reward of each label the reward model (judge) gives.",
    )
    max_logprob_drift: float | None = Field(
        None,
        ge=0,
        description="Fail when the trainer's log-prob of a sampled token differs from the sampler's by more "
        "than this (mean over tokens): a stale adapter or a template mismatch. Empty: only report it as a "
        "metric. LoRA dropout adds noise to the trainer's log-probs; set a looser limit when "
        "lora.dropout > 0.",
    )


class OreoSection(Section):
    """`oreo`: offline RL with a value function (docs/method.md §2), on whole judged trajectories."""

    level: Literal["token", "step"] = Field(
        "token",
        description="token = every action token is an action and its prefix a state (the paper's default); "
        "step = a whole action span is one action, its state the prefix before the span.",
    )
    beta: float = Field(
        0.03, gt=0, description="beta: weight of the KL-regularised reward in the soft Bellman equation."
    )
    alpha: float | None = Field(
        None,
        ge=0,
        description="alpha: weight of the policy's KL(pi || pi_ref) over the whole vocabulary at action "
        "tokens. Empty: the paper's value for the level (0.01 token, 0.1 step).",
    )
    value_learning_rate: float | None = Field(
        None,
        gt=0,
        description="Peak learning rate of the value adapter and head. Empty: train.learning_rate (the paper "
        "uses 5e-6 for both, with full fine-tuning; LoRA usually needs a larger rate).",
    )

    @property
    def kl_alpha(self) -> float:
        """alpha as configured, else the paper's value for the level."""
        if self.alpha is not None:
            return self.alpha
        return 0.01 if self.level == "token" else 0.1


class TrainConfig(Section):
    objective: Objective = Field(
        "swirl",
        description="swirl = the paper's step-wise RL (actions sampled from the current policy, judged, "
        "REINFORCE with a per-state mean baseline and a KL penalty); swirl_offline = judge-reward-weighted "
        "likelihood of the logged actions; sft = next-token loss on the kept actions; oreo = offline RL "
        "with a value model on whole trajectories and their 0/1 outcomes (train.oreo).",
    )
    aggregation: Aggregation = Field(
        "token",
        description="How per-token losses are averaged over an optimizer step: token = over all action "
        "tokens; action = each action's mean, then over actions; sequence = each trajectory's (sft/offline) "
        "or sampled action's (swirl) mean, then over those. oreo always averages each trajectory's states, "
        "then the trajectories (the paper's), whatever this says.",
    )
    kl_beta: float = Field(
        0.0,
        ge=0,
        description="Weight of the KL penalty to the policy training started from, pi_ref: a frozen copy "
        "of lora.init_adapter (a warm-up's or an earlier round's adapter) when there is one, else the base "
        "model (the adapter disabled); 0 = none.",
    )
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k2",
        description="Per-token KL penalty used as a loss on the trained tokens (sampled from pi; d = log "
        "pi - log pi_ref). k2 = d^2 / 2: its expected gradient is that of KL(pi || pi_ref), the documented "
        "penalty; k1 = d: a value estimate only, zero expected gradient (penalises nothing); "
        "k3 = exp(-d) + d - 1: a non-negative value estimate of KL(pi || pi_ref), but its expected gradient "
        "is that of the reverse KL(pi_ref || pi).",
    )
    lora: LoraSection = Field(default_factory=LoraSection, description="The LoRA adapter trained.")
    offline: OfflineSection = Field(
        default_factory=OfflineSection, description="swirl_offline rewards and baseline."
    )
    swirl: SwirlSection = Field(default_factory=SwirlSection, description="swirl sampling and reward model.")
    oreo: OreoSection = Field(
        default_factory=OreoSection, description="oreo: level, beta, alpha and the value model's rate."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps (optimizer steps).")
    schedule: Literal["cosine", "constant", "linear"] = Field("cosine", description="Decay after warm-up.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    batch_size: int = Field(
        16,
        ge=1,
        description="Sequences per optimizer step for sft/swirl_offline (one sequence = one trajectory with "
        "all its kept actions). For swirl a step is swirl.states_per_step x swirl.samples_per_state sampled "
        "actions.",
    )
    micro_batch_tokens: int = Field(
        4096,
        ge=16,
        description="Padded tokens (rows x longest row) per forward/backward pass; a step's sequences are "
        "packed into as many micro-batches as needed and their gradients accumulated.",
    )
    epochs: float = Field(
        1.0,
        gt=0,
        description="Passes over the training data (sft/swirl_offline: trajectories; swirl: states).",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this; empty = no clipping."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward (less memory, ~30% slower)."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Training dtype of the base weights: auto = bfloat16 on GPU, float32 on CPU. LoRA "
        "weights stay float32.",
    )
    seed: int = Field(0, description="Seed of LoRA init, data order, dropout and action sampling.")
    checkpoint_every: int = Field(
        50, ge=1, description="Save adapter + optimizer + scheduler + data position every N steps."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept (older ones are deleted).")
    max_length: int | None = Field(
        None,
        ge=16,
        description="Drop training sequences longer than this many tokens (counted in the summary).",
    )
    launcher: Literal["inprocess", "subprocess", "ray"] = Field(
        "inprocess",
        description="inprocess = train in the flow's process (shares its engines); subprocess = `python -m "
        "swirl.training` (or launch_prefix, e.g. torchrun) in a child process; ray = ray_workers Ray Train "
        "workers (one rank each, on any node of the Ray cluster), torch.distributed set up by Ray Train.",
    )
    launch_prefix: tuple[str, ...] = Field(
        (),
        description="Command that starts the subprocess trainer, e.g. [torchrun, --nproc-per-node, '8'] or "
        "[accelerate, launch]; empty = the current Python.",
    )
    ray_workers: int = Field(
        1,
        ge=1,
        description="launcher ray: training ranks (Ray Train workers); usually one per GPU of the cluster.",
    )
    ray_gpus_per_worker: float = Field(
        1.0,
        ge=0,
        le=1,
        description="launcher ray: GPUs each worker reserves (a rank trains on one device); 0 = CPU workers "
        "(torch.distributed over gloo instead of nccl).",
    )
    ray_cpus_per_worker: float = Field(
        1.0, gt=0, description="launcher ray: CPUs each worker reserves (data loading, tokenisation)."
    )
    fsdp: bool = Field(
        False,
        description="Shard the base model over the ranks (torch FSDP2: one shard group per decoder "
        "layer, and the rest) instead of a whole copy on every rank: for a model that does not fit one GPU. "
        "Acts when torch.distributed has more than one rank (torchrun, accelerate launch, launcher ray); one "
        "process trains as without it. Same adapter as without it up to float summation order. Not with "
        "oreo (it switches between the policy and value adapters) nor a KL penalty against "
        "lora.init_adapter (a reference adapter switched in).",
    )
    ray_address: str | None = Field(
        None,
        description="launcher ray: the Ray cluster to join ('auto', 'ray://head:10001', 'host:6379'). Empty: "
        "the Ray this process already joined (the run's), else RAY_ADDRESS, else a local Ray on 127.0.0.1 "
        "started for the run and stopped after it.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.objective == "sft" and self.kl_beta:
            raise ValueError("train.kl_beta: sft has no KL penalty; set kl_beta to 0 or use swirl_offline")
        if self.objective == "oreo" and self.kl_beta:
            raise ValueError(
                "train.kl_beta: oreo has its own KL term (train.oreo.alpha, and beta in its Bellman "
                "equation); set kl_beta to 0"
            )
        if self.fsdp and self.objective == "oreo":
            raise ValueError(
                "train.fsdp: not with oreo (it switches between the policy and value adapters, which the "
                "sharded model does not support); set fsdp: false"
            )
        if self.fsdp and self.kl_beta > 0 and self.lora.init_adapter:
            raise ValueError(
                "train.fsdp: not with a KL penalty against lora.init_adapter (its frozen reference adapter "
                "is switched in, which the sharded model does not support); set fsdp: false or kl_beta: 0"
            )
        return self

    def version_config(self) -> dict:
        """What determines the trained adapter: everything but how the trainer is launched (and the oreo
        section, unless the objective is oreo: the other objectives keep the versions they had before it;
        likewise offline.negative_floor unless it can act). `kl_reference` marks a KL penalty against an
        initial adapter, which anchored to the base model before: those outputs are not reused."""
        exclude = {
            "launcher",
            "launch_prefix",
            "ray_workers",
            "ray_gpus_per_worker",
            "ray_cpus_per_worker",
            "ray_address",
            "fsdp",
            "checkpoint_every",
            "keep_checkpoints",
            "gradient_checkpointing",
        }
        if self.objective != "oreo":
            exclude.add("oreo")
        config = self.model_dump(mode="json", exclude=exclude)
        if self.objective != "swirl_offline" or not self.offline.weights_can_be_negative():
            del config["offline"]["negative_floor"]  # cannot change the adapter
        if self.kl_beta > 0 and self.lora.init_adapter:
            config["kl_reference"] = "init_adapter"
        return config
