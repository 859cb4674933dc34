"""The versioned stages, one module each, all under one contract (base.py): a stage is a frozen job with
`plan()` (what decides its output, hashed into its version) and `compute(store, plan, ctx)`, run by
`run_stage`, which returns the stored output when that version is complete.

ingest -> corpus -> generate -> judge -> decompose -> filter -> train -> evaluate (+ the report); prepare
builds local fixtures and is not versioned. Stages know nothing of Prefect or MLflow: tasks/stages.py wraps
every job in one task, and flows/round.py wires them.
"""
