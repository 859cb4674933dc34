"""Evaluation: accuracy with confidence intervals, paired comparisons between policies, and reports."""
