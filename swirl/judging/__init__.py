"""Judging: the process judge (GOOD/BAD per step), the outcome judge (rule-based and LLM), and their configs.

The judge's engine is built like every other engine, by `swirl.engines.make_engine` from `judge.engine`.
"""
