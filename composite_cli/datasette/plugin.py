"""The Datasette plugin for composite trace databases (any database with `runs` and `steps`).

- metadata: titles, descriptions, facets and canned queries for every trace database, whatever
  its file name (`get_metadata`);
- a timeline of the run's steps on a run's row page, and on a step's row page with that step
  highlighted (`extra_template_vars` + the `row.html` template in templates/);
- JSON columns (`request_json`, `response_json`, ...) pretty-printed on row pages and cut short
  in tables (`render_cell`).

Installed through the `datasette` entry point; tests and `composite traces browse` register it
with `register()` when the entry point is not installed.
"""

from __future__ import annotations

import contextvars
import json
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from datasette import hookimpl
from datasette.utils import tilde_encode, urlsafe_components
from jinja2 import FileSystemLoader
from markupsafe import Markup

from composite_cli.datasette import TEMPLATES_PATH, TRACE_TABLES, metadata_for
from composite_cli.datasette.timeline import build_timeline

PLUGIN_NAME = "composite"
JSON_COLUMNS = frozenset({"request_json", "response_json", "params_json", "settings"})
TABLE_PREVIEW_CHARS = 240  # JSON cells in tables and query results
ROW_JSON_MAX_CHARS = 200_000  # pretty JSON on a row page (the .json export has everything)
_STEP_COLUMNS = (
    "id, run_id, parent_id, seq, depth, kind, name, model, status, offset_ms, latency_ms, "
    "prompt_tokens, completion_tokens, cost_usd, error"
)

# Names of the trace databases of each Datasette instance, found at startup.
_trace_dbs: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# The path of the request being served: render_cell has no request in Datasette 0.65, and a
# JSON cell is drawn in full on a row page but cut short in a table.
_request_path: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "composite_request_path", default=None
)


def trace_databases(datasette: Any) -> set[str]:
    return _trace_dbs.get(datasette, set())


async def _find_trace_databases(datasette: Any) -> set[str]:
    found = set()
    for name, db in datasette.databases.items():
        if name == "_internal":
            continue
        try:
            if TRACE_TABLES <= set(await db.table_names()):
                found.add(name)
        except sqlite3.Error:
            continue
    return found


@hookimpl
def startup(datasette: Any) -> Callable[[], Awaitable[None]]:
    async def inner() -> None:
        _trace_dbs[datasette] = await _find_trace_databases(datasette)

    return inner


@hookimpl
def get_metadata(datasette: Any, key: str | None, database: str | None, table: str | None) -> dict[str, Any]:
    names = trace_databases(datasette)
    if not names:
        return {}
    data = metadata_for(names)
    others = [n for n in datasette.databases if n not in names and n not in ("_internal", "_memory")]
    if others:  # not only traces here: leave the instance's title alone
        for field in ("title", "description", "description_html"):
            data.pop(field, None)
    return data


@hookimpl
def prepare_jinja2_environment(env: Any, datasette: Any) -> None:
    """Put templates/ just before Datasette's defaults (after --template-dir and plugins).

    Datasette finds a plugin's templates itself only when the plugin is a package, not a
    module; this makes both the entry point and `register()` work the same."""
    path = str(TEMPLATES_PATH)
    for loader in getattr(env.loader, "loaders", []):
        if isinstance(loader, FileSystemLoader):
            if path not in loader.searchpath:
                loader.searchpath.insert(max(0, len(loader.searchpath) - 1), path)
            return


@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[Any], Any]:
    def wrap(app: Any) -> Any:
        async def with_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
            token = _request_path.set(scope.get("path") if scope.get("type") == "http" else None)
            try:
                await app(scope, receive, send)
            finally:
                _request_path.reset(token)

        return with_path

    return wrap


def _on_row_page(datasette: Any, database: str, table: str | None) -> bool:
    path = _request_path.get()
    if not path or not table:
        return False
    prefix = datasette.urls.table(database, table) + "/"
    return path.startswith(prefix) and "/" not in path[len(prefix) :]


@hookimpl
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> Markup | str | None:
    if column not in JSON_COLUMNS or not isinstance(value, str) or database not in trace_databases(datasette):
        return None
    text = value.strip()
    if not text.startswith(("{", "[")):
        return None
    if not _on_row_page(datasette, database, table):
        return text if len(text) <= TABLE_PREVIEW_CHARS else text[:TABLE_PREVIEW_CHARS] + "…"
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None
    more = ""
    if len(pretty) > ROW_JSON_MAX_CHARS:
        more = f"\n… {len(pretty) - ROW_JSON_MAX_CHARS:,} more characters: see this row as JSON"
        pretty = pretty[:ROW_JSON_MAX_CHARS]
    return Markup('<pre class="composite-json">{}{}</pre>').format(pretty, more)


async def _timeline_vars(datasette: Any, database: str, table: str, pk: str) -> dict[str, Any]:
    db = datasette.get_database(database)
    highlight = None
    run_id = pk
    if table == "steps":
        found = (await db.execute("select run_id from steps where id = ?", [pk])).first()
        if found is None:
            return {}
        run_id, highlight = found[0], pk
    runs = (await db.execute("select id, latency_ms, status from runs where id = ?", [run_id])).rows
    steps = (
        await db.execute(
            f"select {_STEP_COLUMNS} from steps where run_id = ? order by offset_ms, seq",  # noqa: S608
            [run_id],
        )
    ).rows
    if not steps:
        return {}
    timeline = build_timeline(
        dict(runs[0]) if runs else None,
        [dict(s) for s in steps],
        step_url=lambda step_id: datasette.urls.row(database, "steps", tilde_encode(step_id)),
        run_url=datasette.urls.row(database, "runs", tilde_encode(run_id)) if highlight else None,
        highlight=highlight,
    )
    return {"composite_timeline": timeline}


@hookimpl
def extra_template_vars(
    template: str,
    database: str | None,
    table: str | None,
    columns: Any,
    view_name: str,
    request: Any,
    datasette: Any,
) -> Callable[[], Awaitable[dict[str, Any]]] | None:
    if database is None or database not in trace_databases(datasette):
        return None

    async def inner() -> dict[str, Any]:
        found: dict[str, Any] = {"composite_trace_db": True}
        if view_name == "row" and table in ("runs", "steps") and request is not None:
            pks = urlsafe_components(request.url_vars.get("pks", ""))
            if len(pks) == 1 and pks[0]:
                found.update(await _timeline_vars(datasette, database, table, pks[0]))
        return found

    return inner


def register() -> bool:
    """Register this plugin with Datasette unless it is already (e.g. by its entry point).

    Returns True when this call registered it."""
    import sys

    from datasette.plugins import pm

    module = sys.modules[__name__]
    if pm.is_registered(module) or pm.get_plugin(PLUGIN_NAME) is not None:
        return False
    pm.register(module, name=PLUGIN_NAME)
    return True


def unregister() -> None:
    """Remove a registration made by `register()` (tests)."""
    import sys

    from datasette.plugins import pm

    if pm.get_plugin(PLUGIN_NAME) is sys.modules[__name__]:
        pm.unregister(name=PLUGIN_NAME)
