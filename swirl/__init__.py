"""swirl: Step-Wise Reinforcement Learning (SWiRL) and OREO for multi-step reasoning and tool use.

The library layer: pure Python + torch. It never imports Prefect and knows nothing of MLflow run state;
`tasks/` and `flows/` orchestrate it. Heavy imports (vllm, torch, transformers) happen inside functions so
that `import swirl` stays fast.
"""

__version__ = "0.1.0"
