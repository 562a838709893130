"""composite's Datasette integration: metadata (titles, descriptions, canned queries) for trace
databases, and a plugin that draws a run's step timeline and keeps JSON columns readable.

The plugin is `composite_cli.datasette.plugin`, installed through Datasette's entry point so that
`datasette traces.db` uses it; `composite traces browse` starts Datasette with it.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METADATA_PATH = HERE / "metadata.yaml"
TEMPLATES_PATH = HERE / "templates"
# The database name the shipped metadata is written for (`datasette traces.db`).
METADATA_DATABASE = "traces"
TRACE_TABLES = frozenset({"runs", "steps"})


@functools.lru_cache(maxsize=1)
def _shipped_metadata() -> dict[str, Any]:
    import yaml

    with METADATA_PATH.open(encoding="utf-8") as fp:
        data = yaml.safe_load(fp)
    assert isinstance(data, dict)
    return data


def database_metadata() -> dict[str, Any]:
    """The shipped metadata of one trace database (tables, views, canned queries): a fresh copy.
    The canned queries' SQL is traces/'s (page_queries.CANNED_QUERIES); metadata.yaml titles them."""
    from composite_cli.traces.page_queries import CANNED_QUERIES

    data = copy.deepcopy(_shipped_metadata()["databases"][METADATA_DATABASE])
    queries = data.setdefault("queries", {})
    for name, sql in CANNED_QUERIES.items():
        queries.setdefault(name, {})["sql"] = sql.strip()
    return data


def metadata_for(database_names: list[str] | set[str]) -> dict[str, Any]:
    """Datasette metadata applying the shipped trace metadata to each of these databases."""
    data = {k: copy.deepcopy(v) for k, v in _shipped_metadata().items() if k != "databases"}
    data["databases"] = {name: database_metadata() for name in sorted(database_names)}
    return data
