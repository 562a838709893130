"""Strict prompt templates and conditions (Jinja2, sandboxed).

Every variable a template uses is checked when the mode loads: an unknown name is an error
then, not an empty string at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from composite_cli.errors import TemplateRenderError

_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


# Jinja parses and compiles recursively, and Python's compiler refuses deep expressions: a template
# nested that deeply (brackets, operators, blocks) is refused when the mode loads.
_TOO_DEEP = "template nested too deeply to compile (brackets, operators or blocks)"


class TemplateCheckError(ValueError):
    """A template is malformed or uses a name that does not exist where it is used."""


def _check_names(ast: jinja2.nodes.Template, allowed: Iterable[str]) -> frozenset[str]:
    used = meta.find_undeclared_variables(ast)
    unknown = sorted(used - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "(none)"
        raise TemplateCheckError(f"unknown template variable {unknown[0]!r} (available: {known})")
    return frozenset(used)


@dataclass(frozen=True)
class Template:
    """A prompt template checked against the names available where it is used."""

    source: str
    names: frozenset[str]
    _compiled: Any

    @classmethod
    def compile(cls, source: str, allowed: Iterable[str]) -> Template:
        try:
            ast = _ENV.parse(source)
            names = _check_names(ast, allowed)
            compiled = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateCheckError(f"template syntax error: {exc.message}") from None
        except (RecursionError, MemoryError, SyntaxError):
            raise TemplateCheckError(_TOO_DEEP) from None
        return cls(source, names, compiled)

    def render(self, variables: Mapping[str, Any]) -> str:
        try:
            return str(self._compiled.render(**variables)).strip()
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"template failed: {exc}") from None


@dataclass(frozen=True)
class Condition:
    """A Jinja expression (e.g. `critique.ok or round >= 2`) evaluated to a bool."""

    source: str
    _compiled: Any

    @classmethod
    def compile(cls, source: str, allowed: Iterable[str]) -> Condition:
        try:
            ast = _ENV.parse("{{ " + source + " }}")
            compiled = _ENV.compile_expression(source, undefined_to_none=False)
            _check_names(ast, allowed)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateCheckError(f"condition syntax error: {exc.message}") from None
        except (RecursionError, MemoryError, SyntaxError):
            raise TemplateCheckError(_TOO_DEEP) from None
        return cls(source, compiled)

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        try:
            return bool(self._compiled(**variables))
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"condition {self.source!r} failed: {exc}") from None
