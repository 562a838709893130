"""The introspection API under `/composite/` (the edge checks the key before anything here runs).

    GET /composite/modes                      served modes: description, steps, resolved models
    GET /composite/traces/{run_id}            a run and its step tree
    GET /composite/metrics/summary?last_hours=1

Errors use the OpenAI error shape: unknown ids 404, bad parameters 422, never a 500 for input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from composite_cli.errors import ModeValidationError, UnknownModeError, describe_error, one_line
from composite_cli.serve import metrics
from composite_cli.serve.edge import PREFIX
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.steptree import StepNode
from composite_cli.traces.steptree import step_tree as build_step_tree
from composite_cli.traces.store import RunNotFound, TraceStoreError

if TYPE_CHECKING:
    from composite_cli.config import Profile
    from composite_cli.engine.steps.base import Step
    from composite_cli.runner import Runner

log = logging.getLogger("composite.serve")
_JSON_COLUMNS = {"request_json": "request", "response_json": "response", "params_json": "params"}
MAX_HOURS = 24 * 366 * 10


def _error(status: int, message: str, type_: str, code: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key in _JSON_COLUMNS:
            try:
                out[_JSON_COLUMNS[key]] = json.loads(value) if value else None
            except ValueError:
                out[_JSON_COLUMNS[key]] = value
        else:
            out[key] = value
    return out


def step_tree(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat step rows → nested dicts with `children` (the one tree builder's shape: orphans at the
    top level, each step once, children in start order)."""
    return [_nested(node) for node in build_step_tree(steps)]


def _nested(root: StepNode) -> dict[str, Any]:
    out = {**_decoded(dict(root.row)), "children": []}
    stack = [(root, out)]  # without recursion: a deep trace cannot hit the recursion limit
    while stack:
        node, into = stack.pop()
        for child in node.children:
            nested = {**_decoded(dict(child.row)), "children": []}
            into["children"].append(nested)
            stack.append((child, nested))
    return out


def _step_outline(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"id": step.id, "kind": step.kind, "summary": step.summary()}
    if step.description:
        out["description"] = step.description
    if step.aliases():
        out["aliases"] = step.aliases()
    branches = [[_step_outline(s) for s in branch] for branch in step.children()]
    if branches:
        out["branches"] = branches
    return out


def _resolved(aliases: list[str], profile: Profile) -> dict[str, str | None]:
    return {a: (profile.resolve(a).get("model") if profile.has(a) else None) for a in aliases}


def _committed(runner: Runner) -> None:
    """Wait for this process's queued trace writes, so a run that just answered is readable."""
    if runner.store is None:
        return
    try:
        runner.store.flush(timeout=5)
    except TraceStoreError as exc:
        log.warning("%s", exc)


def introspection_app(runner: Runner, served: Sequence[tuple[str, Sequence[str]]]) -> FastAPI:
    """The API over `runner`'s mode library, active profile and trace store.

    `served` lists (mode name, model names) in the order the server serves them."""
    api = FastAPI(title="composite introspection", docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path")]
        param = ".".join(loc) or None
        return _error(
            422,
            f"{param or 'request'}: {first.get('msg', 'invalid value')}",
            "invalid_request_error",
            "invalid_parameter",
            param,
        )

    @api.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), type_, str(exc.status_code))

    @api.get(f"{PREFIX}/modes")
    def modes() -> dict[str, Any]:
        profile = runner.settings.profile
        out = []
        for name, names in served:
            try:
                spec = runner.mode(name)
            except (UnknownModeError, ModeValidationError) as exc:
                error = one_line(exc) or describe_error(exc)  # as the CLI says it
                out.append({"name": name, "models": list(names), "valid": False, "error": error})
                continue
            out.append(
                {
                    "name": name,
                    "models": list(names),
                    "valid": True,
                    "description": spec.description,
                    "params": spec.params,
                    "limits": {
                        "max_calls": str(spec.limits.max_calls),
                        "deadline": str(spec.limits.deadline),
                    },
                    "steps": [_step_outline(s) for s in spec.steps],
                    "resolved_models": _resolved(spec.aliases(), profile),
                }
            )
        return {"profile": profile.name, "modes": out}

    @api.get(f"{PREFIX}/traces/{{run_id}}")
    def trace(run_id: Annotated[str, Path(min_length=1, max_length=200)]) -> dict[str, Any]:
        store = runner.store
        if store is None:
            raise HTTPException(404, "tracing is off on this server")
        _committed(runner)
        try:
            run, steps = TraceReader(store).run_with_steps(run_id)
        except (RunNotFound, TraceStoreError):
            raise HTTPException(404, f"no run with id {run_id!r}") from None
        return {"run": _decoded(run), "steps": step_tree(steps)}

    @api.get(f"{PREFIX}/metrics/summary")
    def summary(
        last_hours: Annotated[float, Query(gt=0, le=MAX_HOURS, allow_inf_nan=False)] = 1.0,
        source: Annotated[str, Query(pattern=r"^[a-z][a-z0-9_-]{0,40}$")] = "serve",
    ) -> dict[str, Any]:
        if runner.store is None:
            raise HTTPException(404, "tracing is off on this server")
        _committed(runner)
        return metrics.summary(runner.store, last_hours, None if source == "all" else source)

    @api.api_route(f"{PREFIX}/{{rest:path}}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(rest: str) -> None:
        raise HTTPException(404, f"no such endpoint: {PREFIX}/{rest}")

    return api
