"""Datasets: loaders of the benchmarks' original formats into the `questions` table, and synthetic data."""
