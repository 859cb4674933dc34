"""A small config for iteration tests: the tiny model on the HF engine, synthetic arithmetic, SFT (no sampler
engine), a few questions and steps, so one round takes seconds."""

from __future__ import annotations

import yaml


def write_iterate_config(folder, tiny_model_dir: str, name: str = "it") -> str:
    data = str(folder / "data")
    cfg = {
        "run": {"name": name, "root": str(folder / "store"), "experiment": f"{name}-exp"},
        "prepare": {
            "synthetic": {
                "dir": data,
                "gsm8k_train": 4,
                "gsm8k_test": 4,
                "hotpotqa_train": 1,
                "hotpotqa_test": 1,
            }
        },
        "ingest": {
            "datasets": [
                {"name": "gsm8k", "format": "gsm8k", "split": "train", "path": f"{data}/gsm8k/train.jsonl"},
                {
                    "name": "gsm8k_test",
                    "format": "gsm8k",
                    "split": "test",
                    "path": f"{data}/gsm8k/test.jsonl",
                },
            ]
        },
        "policy": {"kind": "hf", "model": tiny_model_dir, "dtype": "float32", "max_model_len": 1024},
        "generate": {
            "samples_per_question": 1,
            "max_steps_math": 2,
            "max_tokens_per_step": 8,
            "shard_questions": 4,
        },
        "judge": {"max_tokens": 4, "max_reasks": 0},
        "filter": {"strategy": "none"},
        "train": {
            "objective": "sft",
            "max_steps": 2,
            "batch_size": 2,
            "learning_rate": 1.0e-3,
            "lora": {"rank": 4, "alpha": 8},
            "checkpoint_every": 2,
        },
        "evaluate": {"questions": 4, "max_tokens_per_step": 8},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)
