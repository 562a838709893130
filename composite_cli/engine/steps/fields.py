"""A step kind's fields, declared once.

A kind is a dataclass; each of its YAML fields is a dataclass field whose metadata holds a `Decl`:
the YAML key, its type, default, bounds, whether a `$param` may feed it, the template scope, whether
it names other steps, and one line of doc. One generic reader (`read_declared`) turns a YAML node
into the kind with the `file:line: field: message` errors of `ParseContext`; the allowed keys,
`modes show`'s summary (`summary_of`) and the README's step-kind table (`kind_reference`) come from
the same declarations. A field with nested structure (fan-out experts, a vote's judge) is still
declared, with `hook=True`: the kind's `finish` reads it, usually through `read_field`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.templates import Condition, Template, TemplateCheckError
from composite_cli.patterns import DataPattern, PatternError, compile_pattern
from composite_cli.yamlfile import LineDict, field_path

if TYPE_CHECKING:
    from composite_cli.engine.steps.base import Step

FieldType = Literal[
    "text",  # a string
    "alias",  # a model alias (the profile says which model)
    "boolean",
    "integer",
    "number",
    "choice",  # one of `choices`
    "template",  # a Jinja prompt template, checked against the names in scope
    "condition",  # a Jinja expression
    "pattern",  # a regular expression, matched with a time limit
    "step",  # the id of an earlier step
    "steps",  # `STEP` or a list of them
    "body",  # a nested list of steps
    "call",  # the call fields (a group: see call_settings.CALL_FIELDS)
    "custom",  # read by the kind's `finish` hook
]
DECL = "composite.decl"
# reader(decl, node, pc, where, names, in_loop) -> value; for "call" and "custom" fields
Reader = Callable[["Decl", LineDict, ParseContext, str, set[str], bool], Any]


@dataclass(frozen=True)
class Decl:
    """One YAML field of a step kind."""

    type: FieldType
    doc: str  # one line, a noun phrase ("the steps to repeat")
    key: str = ""  # the YAML key ("" = the attribute's name)
    default: Any = None  # what the field is when absent (a template's or pattern's source)
    minimum: float | None = None
    maximum: float | None = None
    param: bool = True  # a number may be `$name`, a mode parameter
    required: bool = False
    scope: tuple[str, ...] = ()  # names a template, condition or body sees besides earlier ids
    choices: tuple[tuple[str, str], ...] = ()  # (value, what it means)
    loop_body: bool = False  # a body that repeats: its steps see {{ round }}
    hook: bool = False  # read by the kind's `finish` hook, not by read_declared
    show: bool | str = False  # in `modes show`'s summary (a string: the label used there)
    reader: Reader | None = None  # for "call" and "custom" fields
    group: tuple[Decl, ...] = ()  # a "call" field: the YAML fields of the group
    note: str = ""  # the reference table's extra words (e.g. a call group's template defaults)


def declare(type: FieldType, doc: str, default: Any = None, **options: Any) -> Any:
    """A dataclass field carrying its Decl. `default_factory=` for a mutable default."""
    factory = options.pop("default_factory", None)
    value = options.pop("value", default)  # the attribute's default when it differs from Decl's
    decl = Decl(type, doc, default=default, **options)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={DECL: decl})
    return dataclasses.field(default=value, metadata={DECL: decl})


def text(doc: str, default: str | None = None, **options: Any) -> Any:
    return declare("text", doc, default, **options)


def number(doc: str, default: Any, *, integer: bool = False, **options: Any) -> Any:
    return declare("integer" if integer else "number", doc, default, **options)


def step_ref(doc: str, **options: Any) -> Any:
    """The id of an earlier step (`None` when absent)."""
    return declare("step", doc, None, **options)


def step_refs(doc: str, **options: Any) -> Any:
    """One earlier step's id or a list of them."""
    return declare("steps", doc, None, default_factory=list, **options)


def body(doc: str, **options: Any) -> Any:
    """A nested list of steps."""
    return declare("body", doc, None, default_factory=list, **options)


@cache
def declared_fields(cls: type) -> tuple[tuple[str, Decl], ...]:
    """(attribute, Decl) of each declared field of a step class, in declaration order, with
    each Decl's `key` filled in."""
    out = []
    for f in dataclasses.fields(cls):
        decl = f.metadata.get(DECL)
        if decl is not None:
            out.append((f.name, decl if decl.key else dataclasses.replace(decl, key=f.name)))
    return tuple(out)


def yaml_keys(cls: type) -> set[str]:
    """Every YAML key a step of this class may have."""
    keys = {"id", "kind"}
    for _, decl in declared_fields(cls):
        if decl.group:  # a call group has no key of its own
            keys.update(d.key for d in decl.group)
        else:
            keys.add(decl.key)
    return keys


def decl_of(cls: type, attr: str) -> Decl:
    return dict(declared_fields(cls))[attr]


def read_declared(step: Step, node: LineDict, pc: ParseContext, names: set[str], in_loop: bool) -> None:
    """Set each declared field of `step` that is not a hook's from `node`."""
    for attr, decl in declared_fields(type(step)):
        if not decl.hook:
            setattr(step, attr, read_field(decl, node, pc, step.where, names, in_loop))


def read_field(
    decl: Decl, node: LineDict, pc: ParseContext, where: str, names: set[str], in_loop: bool = False
) -> Any:
    """The value of one declared field in `node` (its default when absent or wrong; the problem
    goes to `pc`)."""
    if decl.reader is not None:
        return decl.reader(decl, node, pc, where, names, in_loop)
    key = decl.key
    if node.get(key) is None:
        if decl.required:
            pc.error(node, None, field_path(where, key), f"is required ({decl.doc})")
        return _absent(decl)
    kind = decl.type
    if kind in ("integer", "number"):
        if not decl.param and isinstance(node[key], str) and node[key].startswith("$"):
            pc.error(node, key, field_path(where, key), "must be a number here, not a $parameter")
            return decl.default
        return pc.number(
            node,
            key,
            where,
            decl.default,
            integer=kind == "integer",
            minimum=decl.minimum,
            maximum=decl.maximum,
        )
    if kind == "boolean":
        return pc.boolean(node, key, where, decl.default)
    if kind in ("text", "alias"):
        return pc.string(node, key, where)
    if kind == "choice":
        value = pc.string(node, key, where)
        allowed = [c for c, _ in decl.choices]
        if value is not None and value not in allowed:
            pc.error(node, key, field_path(where, key), f"must be {choice_list(decl)}, got {value!r}")
            return decl.default
        return decl.default if value is None else value
    if kind == "template":
        return pc.template(node, key, where, names | set(decl.scope))
    if kind == "condition":
        return pc.condition(node, key, where, names | set(decl.scope))
    if kind == "pattern":
        return _pattern(decl, node, pc, where)
    if kind == "step":
        return pc.step_ref(node, key, where, names, required=False)
    if kind == "steps":
        return _step_refs(decl, node, pc, where, names)
    if kind == "body":
        inner = names | set(decl.scope)
        return pc.steps(node[key], field_path(where, key), inner, in_loop=in_loop or decl.loop_body)
    raise TypeError(f"field {key!r} of type {kind!r} needs a reader")


def _absent(decl: Decl) -> Any:
    if decl.type == "pattern":
        return compile_pattern(decl.default, "i")
    if decl.type in ("steps", "body"):
        return []
    return decl.default


def choice_list(decl: Decl) -> str:
    """`input (the last user message) or conversation`: the choices as a message says them."""
    words = [f"{value} ({meaning})" if meaning else value for value, meaning in decl.choices]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)


def _pattern(decl: Decl, node: LineDict, pc: ParseContext, where: str) -> DataPattern:
    source = pc.string(node, decl.key, where) or decl.default
    try:
        return compile_pattern(source, "i")  # from a mode file: matches are time-bounded
    except PatternError as exc:
        pc.error(node, decl.key, field_path(where, decl.key), f"invalid regular expression: {exc}")
        return compile_pattern(decl.default, "i")


def _step_refs(decl: Decl, node: LineDict, pc: ParseContext, where: str, names: set[str]) -> list[str]:
    raw = node[decl.key]
    refs = raw if isinstance(raw, list) else [raw]
    out = []
    fname = field_path(where, decl.key)
    for ref in refs:
        if not isinstance(ref, str):
            pc.error(node, decl.key, fname, "must be a step id or a list of step ids")
        elif ref not in names:
            pc.error(node, decl.key, fname, f"unknown step {ref!r} (no earlier step has this id)")
        else:
            out.append(ref)
    return out


def compile_default(source: str, names: set[str]) -> Template:
    """A built-in default template (it uses only names its kind provides)."""
    try:
        return Template.compile(source, names)
    except TemplateCheckError as exc:  # a bug in composite, not in the mode file
        raise AssertionError(f"built-in template does not compile: {exc}") from None


def show_value(value: Any) -> str | None:
    """A field's value as `modes show` prints it (None: not shown)."""
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, (Condition, DataPattern)):
        # quoted as the mode file writes it: a regex's `\b` is not shown as repr's `\\b`
        text = value.source if isinstance(value, Condition) else value.pattern
        return f'"{text}"' if "'" in text and '"' not in text else f"'{text}'"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, ParamRef):
        return str(value)
    model = getattr(value, "model", None)  # the call group: its model alias
    if isinstance(model, str):
        return model or None
    return str(value)


def summary_of(step: Step) -> str:
    """`key=value` for each field the kind shows, in declaration order."""
    parts = []
    for attr, decl in declared_fields(type(step)):
        if not decl.show:
            continue
        shown = show_value(getattr(step, attr))
        if shown is not None:
            label = (
                decl.show if isinstance(decl.show, str) else ("model" if decl.type == "call" else decl.key)
            )
            parts.append(f"{label}={shown}")
    return " ".join(parts)


def describe_decl(decl: Decl) -> str:
    """One field for the reference table: `` `key` `` and, in brackets, what it is and its default."""
    words = [decl.doc] if decl.doc else []
    if decl.choices and any(meaning for _, meaning in decl.choices):
        words = [f"{decl.doc}: {choice_list(decl)}" if decl.doc else choice_list(decl)]
    facts = []
    if decl.required:
        facts.append("required")
    elif _has_default(decl) and decl.type not in ("template", "pattern", "choice"):
        facts.append(f"default {_plain(decl.default)}")
    elif decl.type in ("pattern", "choice") and decl.default:
        facts.append(f"default `{decl.default}`")
    elif decl.type == "boolean" and decl.default is False:
        facts.append("default false")
    bounds = _bounds(decl)
    if bounds:
        facts.append(bounds)
    if decl.type in ("integer", "number") and not decl.param:
        facts.append("no `$param`")
    if decl.scope and decl.type in ("template", "condition", "body"):
        facts.append("sees " + ", ".join(f"`{{{{ {n} }}}}`" for n in decl.scope))
    if decl.note:
        facts.append(decl.note)
    inside = "; ".join([*words, ", ".join(facts)] if facts else words)
    return f"`{decl.key}` ({inside})" if inside else f"`{decl.key}`"


def _has_default(decl: Decl) -> bool:
    return decl.default is not None and decl.default is not False and decl.default != ""


def _plain(value: Any) -> str:
    if value is True:
        return "true"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bounds(decl: Decl) -> str:
    if decl.type not in ("integer", "number"):
        return ""
    low, high = decl.minimum, decl.maximum
    if low is not None and high is not None:
        return f"{_plain(low)} to {_plain(high)}"
    if high is not None:
        return f"at most {_plain(high)}"
    if low is not None and low not in (0.001,):
        return f"at least {_plain(low)}"
    if low == 0.001:
        return "more than 0"
    return ""
