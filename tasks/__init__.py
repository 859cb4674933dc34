"""Prefect tasks: thin wrappers around `swirl` stage functions (retries, cache keys, logging, artifacts)."""
