"""Stage functions: `run_<stage>(store, cfg, inputs...) -> StageRef`.

Each computes its version from its own config and its inputs' versions, returns the existing output when the
store already has it complete, and otherwise computes and commits it. They know nothing of Prefect or MLflow:
`tasks/` wraps them.
"""
