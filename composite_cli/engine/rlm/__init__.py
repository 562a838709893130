"""Recursive Language Models (Zhang et al. 2025): the `rlm` step's protocol, prompts and loop."""
