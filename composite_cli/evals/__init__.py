"""Evals: load JSONL eval sets, run them through modes, score, and compare with statistics."""
