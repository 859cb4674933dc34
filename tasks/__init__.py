"""Prefect tasks: one task around every versioned stage (cache keys from the store, retries for transient
errors, progress, logging), the flow's shared engines, and MLflow tracking."""
