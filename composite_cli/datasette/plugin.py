"""The Datasette plugin for composite trace databases (any database with `runs` and `steps`).

- metadata: titles, descriptions, facets and canned queries for every trace database, whatever
  its file name (`get_metadata`);
- a run's row page: a timeline of the run's steps, then what each step said (expert answers,
  critiques, the final answer) in collapsible sections; a step's row page: the step's output,
  error, request and response first, then its run's timeline with the step highlighted
  (`extra_template_vars` + the `row.html` template in templates/);
- cells (`render_cell`): JSON columns pretty-printed on row pages and cut short in tables; run
  and step ids in views and canned queries linked to their rows; costs rounded; error messages
  with each exception name said once.

Installed through the `datasette` entry point; tests and `composite traces browse` register it
with `register()` when the entry point is not installed.
"""

from __future__ import annotations

import contextvars
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from datasette import hookimpl
from datasette.utils import tilde_decode, tilde_encode, urlsafe_components
from jinja2 import FileSystemLoader
from markupsafe import Markup

from composite_cli.datasette import TEMPLATES_PATH, TRACE_TABLES, metadata_for
from composite_cli.datasette.display import format_cost, plain_error
from composite_cli.datasette.timeline import (
    LEGEND,
    OUTPUT_MAX_CHARS,
    build_timeline,
    format_ms,
    step_outputs,
)
from composite_cli.traces import page_queries
from composite_cli.traces.reader import TraceReader

PLUGIN_NAME = "composite"
JSON_COLUMNS = frozenset({"request_json", "response_json", "params_json", "settings"})
TABLE_PREVIEW_CHARS = 240  # JSON cells in tables and query results
ROW_JSON_MAX_CHARS = 200_000  # pretty JSON on a row page (the .json export has everything)
OUTPUTS_BUDGET_CHARS = 2_000_000  # all the step outputs on a run's page together
OUTPUT_MIN_CHARS = 500  # of each step's output, however many steps
# Columns holding the id of a row of another table, wherever they appear (views, queries, SQL).
ID_COLUMNS = {
    "run_id": "runs",
    "judge_run_id": "runs",
    "step_id": "steps",
    "parent_id": "steps",
    "eval_run_id": "eval_runs",
}
# `id` is a run's id in some views and canned queries, a step's in others.
ID_OF = {
    "run_summary": "runs",
    "slowest_runs": "runs",
    "tool_using_requests": "runs",
    "failed_steps": "steps",
}
# Long text a step's page shows above its table, so the table's cells are cut short.
SHOWN_ABOVE = {"steps": {"output", "request_json", "response_json", "scratchpad"}, "runs": {"output"}}

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
        except page_queries.DRIVER_ERRORS:
            continue  # not a database Datasette can list: not a trace database
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


def _page_name(datasette: Any, database: str, table: str | None) -> str | None:
    """The table, view or canned query this page shows (render_cell gets no name for a query)."""
    if table:
        return table
    path = _request_path.get() or ""
    prefix = datasette.urls.database(database) + "/"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix) :]
    return tilde_decode(rest) if rest and "/" not in rest else None


def _link(datasette: Any, database: str, table: str, value: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(
        datasette.urls.row(database, table, tilde_encode(value)), value
    )


def pretty_json(text: str) -> Markup | None:
    """JSON text indented in a <pre>, cut at ROW_JSON_MAX_CHARS; None when it is not JSON."""
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        return None
    more = ""
    if len(pretty) > ROW_JSON_MAX_CHARS:
        more = f"\n… {len(pretty) - ROW_JSON_MAX_CHARS:,} more characters: see this row as JSON"
        pretty = pretty[:ROW_JSON_MAX_CHARS]
    return Markup('<pre class="composite-json">{}{}</pre>').format(pretty, more)


def _preview(text: str) -> str:
    return text if len(text) <= TABLE_PREVIEW_CHARS else text[:TABLE_PREVIEW_CHARS] + "…"


@hookimpl
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> Markup | str | None:
    if database not in trace_databases(datasette):
        return None
    if isinstance(value, float) and column.endswith("cost_usd"):
        return format_cost(value)
    if not isinstance(value, str) or not value:
        return None
    name = _page_name(datasette, database, table)
    # (A table's foreign key arrives here as a dict when Datasette links it itself.)
    if column in ID_COLUMNS:
        return _link(datasette, database, ID_COLUMNS[column], value)
    if column == "id" and name in ID_OF:
        return _link(datasette, database, ID_OF[name], value)
    if column == "error" or column.endswith("_error"):
        plain = plain_error(value)
        return plain if plain != value else None
    on_row_page = _on_row_page(datasette, database, table)
    if on_row_page and column in SHOWN_ABOVE.get(table or "", ()):
        return _preview(value.strip()) + (
            " (shown above)" if len(value.strip()) > TABLE_PREVIEW_CHARS else ""
        )
    if column not in JSON_COLUMNS:
        return None
    text = value.strip()
    if not text.startswith(("{", "[")):
        return None
    if not on_row_page:
        return _preview(text)
    return pretty_json(text)


def _messages(request_json: str | None) -> list[dict[str, str]]:
    """A request's messages as (role, text) for reading; [] when the request is not that shape."""
    try:
        request = json.loads(request_json or "")
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        return []
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list):
        return []
    found = []
    for message in messages:
        if not isinstance(message, dict):
            return []
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False)
        if message.get("tool_calls"):
            text = (text + "\n" if content else "") + json.dumps(
                message["tool_calls"], indent=2, ensure_ascii=False
            )
        found.append({"role": str(message.get("role") or "?"), "text": text[:ROW_JSON_MAX_CHARS]})
    return found


async def _step_vars(db: Any, step_id: str, run_url: str) -> dict[str, Any]:
    """A step's own page, first: what it said (output or error), what it was asked, the response."""
    found = (await db.execute(page_queries.STEP_PAGE, [step_id])).first()
    if found is None:
        return {}
    step = dict(found)
    return {
        "composite_step": {
            **{k: step[k] for k in ("kind", "name", "model", "status", "retries", "scratchpad")},
            "run_url": run_url,
            "duration": format_ms(step["latency_ms"]) if step["latency_ms"] is not None else "running",
            "tokens": (step["prompt_tokens"] or 0) + (step["completion_tokens"] or 0),
            "cost": None if step["cost_usd"] is None else format_cost(float(step["cost_usd"])),
            "output": step["output"] or "",
            "error": plain_error(step["error"]) if step["error"] else None,
            "messages": _messages(step["request_json"]),
            "request": pretty_json(step["request_json"]) if step["request_json"] else None,
            "response": pretty_json(step["response_json"]) if step["response_json"] else None,
        }
    }


async def _timeline_vars(datasette: Any, database: str, table: str, pk: str) -> dict[str, Any]:
    db = datasette.get_database(database)
    highlight = None
    run_id = pk
    found: dict[str, Any] = {}
    if table == "steps":
        row = (await db.execute(page_queries.STEP_RUN_ID, [pk])).first()
        if row is None:
            return {}
        run_id, highlight = row[0], pk
        found.update(await _step_vars(db, pk, datasette.urls.row(database, "runs", tilde_encode(run_id))))
    runs = (await db.execute(page_queries.TIMELINE_RUN, [OUTPUT_MAX_CHARS, run_id])).rows
    steps: list[Mapping[str, Any]] = [
        dict(s) for s in (await db.execute(page_queries.TIMELINE_STEPS, [run_id])).rows
    ]
    if not steps:
        return found

    def step_url(step_id: str) -> str:
        return str(datasette.urls.row(database, "steps", tilde_encode(step_id)))

    run = dict(runs[0]) if runs else None
    found["composite_timeline"] = build_timeline(
        run,
        steps,
        step_url=step_url,
        run_url=datasette.urls.row(database, "runs", tilde_encode(run_id)) if highlight else None,
        highlight=highlight,
    )
    if table == "runs":
        # Each output cut so that a run of thousands of steps still makes a page of a few MB.
        per_step = max(OUTPUT_MIN_CHARS, min(OUTPUT_MAX_CHARS, OUTPUTS_BUDGET_CHARS // len(steps)))
        said = await db.execute(page_queries.STEP_OUTPUTS, [per_step, run_id])
        found["composite_outputs"] = step_outputs(
            steps, {r["id"]: dict(r) for r in said.rows}, step_url=step_url, max_chars=per_step
        )
        found["composite_run"] = {
            "output": (run or {}).get("output") or "",
            "error": plain_error(run["error"]) if run and run.get("error") else None,
        }
    return found


async def _eval_chart_vars(datasette: Any, database: str, eval_run_id: str) -> dict[str, Any]:
    """An eval run's page: the quality-vs-cost and quality-vs-latency charts of
    `composite eval report --plot`, inline SVG; or one line saying why there is none."""
    import asyncio

    from composite_cli.errors import CompositeError
    from composite_cli.evals.plot import svg_text
    from composite_cli.evals.report import build_report

    path = datasette.databases[database].path
    if not path:
        return {}

    def draw() -> str:
        return svg_text(build_report(TraceReader(path).store, eval_run_id))

    try:
        svg = await asyncio.to_thread(draw)
    except CompositeError as exc:  # no such eval run, matplotlib not installed, unreadable
        return {
            "composite_eval_chart_note": str(exc).replace(str(path), database),
            "composite_eval_id": eval_run_id,
        }
    # matplotlib's SVG document, without its XML prolog and doctype, drawn in the page; matplotlib
    # escapes every text it writes (mode and file names: tests/test_eval_plot.py, hostile names)
    chart = Markup(svg[svg.index("<svg") :])  # noqa: S704
    return {"composite_eval_chart": chart, "composite_eval_id": eval_run_id}


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
        found: dict[str, Any] = {"composite_trace_db": True, "composite_legend": LEGEND}
        if view_name == "row" and table in ("runs", "steps", "eval_runs") and request is not None:
            pks = urlsafe_components(request.url_vars.get("pks", ""))
            if len(pks) == 1 and pks[0] and table == "eval_runs":
                found.update(await _eval_chart_vars(datasette, database, pks[0]))
            elif len(pks) == 1 and pks[0]:
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
