"""Prefect flows: `swirl_round` (one round of the pipeline), run comparison, and the `swirl` command line."""
