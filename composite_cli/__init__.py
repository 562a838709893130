"""composite: composite LLM modes (mixture-of-agents, self-refinement, think tools, recursive LMs)
that look like one chat-completions model.

In Python::

    import composite_cli, litellm
    composite_cli.register()
    litellm.completion(model="composite/moa-v1", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import os
from typing import Any

# LiteLLM fetches its price map over the network at import unless told not to; composite works
# offline, so prefer the copy bundled with LiteLLM (set the variable yourself to change this).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"


def register(**kwargs: Any) -> Any:
    """Register the `composite` provider with LiteLLM (imports LiteLLM; see provider.register)."""
    from composite_cli.provider import register as _register

    return _register(**kwargs)


__all__ = ["__version__", "register"]
