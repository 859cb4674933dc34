"""Prefect flows: wire tasks together (one round, iterated rounds) and the `swirl` command line."""
