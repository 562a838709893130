"""Imported once by the eval workers' fork server (see evals/workers.py): LiteLLM, configured, and
the eval code, so each worker forked from it starts with them loaded instead of importing LiteLLM
again (seconds of CPU per worker)."""

import composite_cli.evals.workers
import composite_cli.runner  # noqa: F401
from composite_cli.litellm_loader import get_litellm

get_litellm()
