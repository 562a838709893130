"""Mode files: parse and check a YAML mode into a ModeSpec, reporting every problem with its
file, line and field.

A mode file is data: it may name code (a tool by `package.module:function`) only inside the
module prefixes the user allowed (`allow_code`, from `--allow-code` or the user's config)."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_cli.dotted import DottedPathError, is_dotted_path
from composite_cli.engine.registry import known_kinds, resolve_kind
from composite_cli.engine.spec_facts import (
    TOOLS_ADVICE,
    CallRange,
    answer_steps,
    asks_client_tools,
    kind_answers_with_tools,
    steps_calls,
)
from composite_cli.engine.templates import Condition, Template, TemplateCheckError
from composite_cli.errors import BadParameter, ModeError, ModeValidationError
from composite_cli.yamlfile import (
    FieldReader,
    LineDict,
    YamlSyntaxError,
    field_path,
    line_of,
    load_yaml_text,
    type_name,
)

if TYPE_CHECKING:
    from composite_cli.config import Profile
    from composite_cli.engine.steps.base import Step

# Names every template may use. Step ids add to these as the mode goes on.
BUILTIN_NAMES = frozenset({"input", "system", "params", "last_role"})
_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_MODE_KEYS = {"name", "description", "group", "params", "limits", "steps"}
# What `composite modes list` groups modes by (a mode file's `group:`), in the listing's order,
# with the heading each group is listed under. A mode without `group:` is in "other".
MODE_GROUPS: dict[str, str] = {
    "single-call": "single call",
    "ensemble": "ensembles",
    "refinement": "refinement",
    "tools": "tools",
    "long-context": "long context",
    "other": "other",
}
DEFAULT_GROUP = "other"
_RESERVED_IDS = BUILTIN_NAMES | {"round", "candidates", "expert", "sample"}


@dataclass(frozen=True)
class ParamRef:
    """A numeric field given as `$name`: the value of mode parameter `name` at run time."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


def resolve(value: Any, params: Mapping[str, Any]) -> Any:
    """The concrete value of a field that may be a ParamRef."""
    return params[value.name] if isinstance(value, ParamRef) else value


@dataclass
class Limits:
    max_calls: int | ParamRef = 50
    deadline: float | ParamRef = 600.0


@dataclass
class ModeSpec:
    name: str
    description: str
    steps: list[Step]
    group: str = DEFAULT_GROUP
    params: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    path: Path | None = None
    source: str = ""
    # Constraints that fields fed by a `$param` put on it (checked for per-request overrides).
    param_minimums: dict[str, float] = field(default_factory=dict)
    param_maximums: dict[str, float] = field(default_factory=dict)
    integer_params: set[str] = field(default_factory=set)

    def walk(self) -> Iterator[Step]:
        """Every step, depth first."""

        def visit(steps: list[Step]) -> Iterator[Step]:
            for step in steps:
                yield step
                for child in step.children():
                    yield from visit(child)

        return visit(self.steps)

    def aliases(self) -> list[str]:
        """Every model alias the mode uses, in order of first use."""
        seen: list[str] = []
        for step in self.walk():
            for alias in step.aliases():
                if alias not in seen:
                    seen.append(alias)
        return seen

    def expected_calls(self, overrides: Mapping[str, Any] | None = None) -> CallRange:
        """Model calls one request makes with these parameters, from the steps' fields (fan-out
        width, loop rounds, tool rounds, an rlm step's max_calls), at most `limits.max_calls`."""
        params = self.merged_params(overrides)
        calls = steps_calls(self.steps, params)
        cap = resolve(self.limits.max_calls, params)
        return CallRange(min(calls.least, int(cap)), min(calls.most, int(cap)))

    def client_tools_refusal(self, overrides: Mapping[str, Any] | None = None) -> str | None:
        """Why this mode cannot use a request's `tools` with these parameters, as one line (None:
        it can). It can when the step that makes its answer is a call offered the client's tools
        (a `call`, `synthesize` or `reflect` last, through `if`/`switch`/`loop`), or when a step
        is marked `client_tools: true`."""
        params = self.merged_params(overrides)
        if any(asks_client_tools(step) for step in self.walk()):
            return None
        answers = answer_steps(self.steps, params)
        if not answers or any(kind_answers_with_tools(step) for step in answers):
            return None
        step = answers[0]
        why = getattr(type(step), "client_tools_refusal", None) or (
            f"answers with its step {step.id!r} ({step.kind}), whose calls do not see the client's tools"
        )
        return f"mode {self.name} {why}; {TOOLS_ADVICE}"

    def takes_client_tools(self, overrides: Mapping[str, Any] | None = None) -> bool:
        """Whether a request's `tools` reach a model of this mode (see client_tools_refusal)."""
        return self.client_tools_refusal(overrides) is None

    def check_request_tools(self, tools: Any, tool_choice: Any, overrides: Mapping[str, Any] | None) -> None:
        """Refuse, before any model call, a request that offers tools (`tools` not empty and
        `tool_choice` not "none") to a mode whose models would never see them. BadParameter `tools`."""
        if not tools or tool_choice == "none":
            return
        refusal = self.client_tools_refusal(overrides)
        if refusal is not None:
            raise BadParameter(refusal, "tools")

    def check_aliases(self, profile: Profile) -> list[ModeError]:
        """One error per use of an alias the profile cannot resolve (no entry and no '*'),
        at the using step's line and `<where>.model`; empty when the profile maps them all."""
        errors = []
        for step in self.walk():
            for alias in step.aliases():
                if not profile.has(alias):
                    errors.append(
                        ModeError(
                            str(self.path),
                            step.line,
                            f"{step.where}.model",
                            f"alias {alias!r} is not in profile {profile.name!r}",
                        )
                    )
        return errors

    def merged_params(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """Declared parameters with a request's overrides applied (checked by name and type)."""
        params = dict(self.params)
        for key, value in (overrides or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "(none)"
                raise BadParameter(
                    f"mode {self.name!r} has no parameter {key!r} (parameters: {known})",
                    f"composite.params.{key}",
                )
            default = self.params[key]
            if not _same_type(default, value):
                raise BadParameter(
                    f"mode {self.name!r} parameter {key!r} must be {type(default).__name__}, "
                    f"got {type(value).__name__}",
                    f"composite.params.{key}",
                )
            minimum = self.param_minimums.get(key)
            if minimum is not None and value < minimum:
                raise BadParameter(
                    f"mode {self.name!r} parameter {key!r} must be at least {minimum:g}, got {value}",
                    f"composite.params.{key}",
                )
            maximum = self.param_maximums.get(key)
            if maximum is not None and value > maximum:
                raise BadParameter(
                    f"mode {self.name!r} parameter {key!r} must be at most {maximum:g}, got {value}",
                    f"composite.params.{key}",
                )
            if key in self.integer_params and isinstance(value, float):
                raise BadParameter(
                    f"mode {self.name!r} parameter {key!r} must be a whole number, got {value}",
                    f"composite.params.{key}",
                )
            params[key] = value
        return params


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))
    return isinstance(value, type(default))


class ParseContext(FieldReader):
    """Collects errors while a mode file is parsed; helpers read typed fields from YAML nodes
    (strings, booleans and unknown keys: yamlfile.FieldReader, shared with the config file)."""

    def __init__(self, path: str, params: Mapping[str, Any], allow_code: Iterable[str] = ()):
        super().__init__(self.error)
        self.path = path
        self.params = params
        # module prefixes whose functions the mode may name as tools (the user's allow-list)
        self.allow_code = tuple(allow_code)
        self.errors: list[ModeError] = []
        self.ids: set[str] = set()
        self.param_minimums: dict[str, float] = {}
        self.param_maximums: dict[str, float] = {}
        self.integer_params: set[str] = set()

    def error(self, node: Any, key: str | int | None, field_name: str, message: str) -> None:
        self.errors.append(ModeError(self.path, line_of(node, key), field_name, message))

    def number(
        self,
        node: LineDict,
        key: str,
        where: str,
        default: Any,
        *,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> Any:
        """A number, or `$param` naming a declared mode parameter.

        `maximum` bounds what a shared mode file, or a request's `composite.params`, may ask of
        this machine (memory, processes, parallel calls)."""
        if key not in node or node[key] is None:
            return default
        value = node[key]
        fname = field_path(where, key)
        if isinstance(value, str) and value.startswith("$"):
            name = value[1:]
            if name not in self.params:
                known = ", ".join(sorted(self.params)) or "(none)"
                self.error(node, key, fname, f"unknown parameter {value!r} (declared: {known})")
                return default
            value_check = self.params[name]
            if not isinstance(value_check, (int, float)) or isinstance(value_check, bool):
                self.error(node, key, fname, f"parameter {value!r} is not a number")
                return default
            if minimum is not None:
                # an override must respect every field the parameter feeds
                self.param_minimums[name] = max(self.param_minimums.get(name, minimum), minimum)
            if maximum is not None:
                self.param_maximums[name] = min(self.param_maximums.get(name, maximum), maximum)
            if integer:
                self.integer_params.add(name)
            return ParamRef(name)
        wanted = "an integer" if integer else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (integer and not isinstance(value, int))
        ):
            self.error(node, key, fname, f"must be {wanted} or $parameter, got {type_name(value)}")
            return default
        if minimum is not None and value < minimum:
            self.error(node, key, fname, f"must be at least {minimum:g}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.error(node, key, fname, f"must be at most {maximum:g}, got {value}")
            return default
        return value

    def template(self, node: LineDict, key: str, where: str, names: set[str]) -> Template | None:
        text = self.string(node, key, where)
        if text is None:
            return None
        try:
            return Template.compile(text, names)
        except TemplateCheckError as exc:
            self.error(node, key, field_path(where, key), str(exc))
            return None

    def condition(self, node: LineDict, key: str, where: str, names: set[str]) -> Condition | None:
        text = node.get(key)
        if text is None:
            return None
        if isinstance(text, bool):
            text = "true" if text else "false"
        if not isinstance(text, str):
            self.error(
                node, key, field_path(where, key), f"must be an expression string, got {type_name(text)}"
            )
            return None
        try:
            return Condition.compile(text, names)
        except TemplateCheckError as exc:
            self.error(node, key, field_path(where, key), str(exc))
            return None

    def step_ref(
        self, node: LineDict, key: str, where: str, names: set[str], *, required: bool
    ) -> str | None:
        ref = self.string(node, key, where, required=required)
        if ref is not None and ref not in names:
            self.error(
                node, key, field_path(where, key), f"unknown step {ref!r} (no earlier step has this id)"
            )
            return None
        return ref

    def steps(self, nodes: Any, where: str, names: set[str], *, in_loop: bool = False) -> list[Step]:
        """Parse a list of steps; each one's id becomes visible to the steps after it."""
        if not isinstance(nodes, list):
            self.error(nodes, None, where, f"must be a list of steps, got {type_name(nodes)}")
            return []
        if not nodes:
            self.error(nodes, None, where, "must contain at least one step")
            return []
        names = set(names)
        parsed: list[Step] = []
        for i, node in enumerate(nodes):
            here = f"{where}[{i}]"
            if not isinstance(node, LineDict):
                self.error(nodes, i, here, f"must be a mapping with kind and id, got {type_name(node)}")
                continue
            kind_name = self.string(node, "kind", here, required=True)
            step_id = self.string(node, "id", here, required=True)
            if kind_name is None or step_id is None:
                continue
            try:
                cls = resolve_kind(kind_name, self.allow_code)
            except DottedPathError as exc:
                unknown = f"unknown step kind {kind_name!r} (kinds: {', '.join(known_kinds())})"
                self.error(node, "kind", f"{here}.kind", exc.reason if is_dotted_path(kind_name) else unknown)
                continue
            if not _ID_RE.match(step_id) or keyword.iskeyword(step_id):
                self.error(
                    node,
                    "id",
                    f"{here}.id",
                    f"{step_id!r} is not a valid id (letters, digits and _, not starting with a digit)",
                )
                continue
            if step_id in _RESERVED_IDS:
                self.error(node, "id", f"{here}.id", f"{step_id!r} is a reserved name")
                continue
            if step_id in self.ids:
                self.error(node, "id", f"{here}.id", f"duplicate step id {step_id!r}")
                continue
            self.ids.add(step_id)
            step = cls.parse(node, self, here, names | ({"round"} if in_loop else set()), in_loop=in_loop)
            parsed.append(step)
            names.add(step_id)
        return parsed


def parse_mode(text: str, path: str | Path = "<string>", *, allow_code: Iterable[str] = ()) -> ModeSpec:
    """Parse mode YAML. Raises ModeValidationError listing every problem found.

    `allow_code`: the module prefixes (`mypkg.tools`) or functions the user allowed; a tool named
    by a dotted path outside them is a validation error, and nothing is imported."""
    spath = str(path)
    try:
        data = load_yaml_text(text)
    except YamlSyntaxError as exc:
        raise ModeValidationError([ModeError(spath, exc.line, "", str(exc))]) from None
    if not isinstance(data, LineDict):
        raise ModeValidationError(
            [ModeError(spath, line_of(data) or 1, "", "a mode file must be a mapping with name and steps")]
        )
    params_node = data.get("params", {})
    pc = ParseContext(spath, {}, allow_code)
    params: dict[str, Any] = {}
    if not isinstance(params_node, dict):
        pc.error(
            data,
            "params",
            "params",
            f"must be a mapping of name to default value, got {type_name(params_node)}",
        )
    else:
        for key, value in params_node.items():
            if isinstance(value, (dict, list)) or value is None:
                pc.error(params_node, key, f"params.{key}", "must be a number, string or boolean default")
            else:
                params[key] = value
    pc.params = params
    pc.check_keys(data, _MODE_KEYS, "")
    name = pc.string(data, "name", "", required=True) or Path(spath).stem
    if name and not _NAME_RE.match(name):
        pc.error(data, "name", "name", f"{name!r}: use lower-case letters, digits, '-', '_' and '.'")
    elif spath != "<string>" and name != Path(spath).stem:
        pc.error(data, "name", "name", f"{name!r} must match the file name {Path(spath).name!r}")
    description = pc.string(data, "description", "") or ""
    group = pc.string(data, "group", "")
    if group is None:  # absent (or not a string: reported by pc.string)
        group = DEFAULT_GROUP
    elif group not in MODE_GROUPS:
        pc.error(data, "group", "group", f"{group!r} is not a group (groups: {', '.join(MODE_GROUPS)})")
    limits = Limits()
    limits_node = data.get("limits")
    if limits_node is not None:
        if not isinstance(limits_node, LineDict):
            pc.error(data, "limits", "limits", f"must be a mapping, got {type_name(limits_node)}")
        else:
            pc.check_keys(limits_node, {"max_calls", "deadline"}, "limits")
            limits.max_calls = pc.number(limits_node, "max_calls", "limits", 50, integer=True, minimum=1)
            limits.deadline = pc.number(limits_node, "deadline", "limits", 600.0, minimum=0.001)
    if "steps" not in data:
        pc.error(data, None, "steps", "is required (a list of steps)")
        steps: list[Step] = []
    else:
        steps = pc.steps(data["steps"], "steps", set(BUILTIN_NAMES))
    for param, minimum in pc.param_minimums.items():
        default = params.get(param)
        if isinstance(default, (int, float)) and default < minimum:
            pc.error(
                params_node,
                param,
                f"params.{param}",
                f"default {default} is below {minimum:g}, the least it can be",
            )
    for param, maximum in pc.param_maximums.items():
        default = params.get(param)
        if isinstance(default, (int, float)) and default > maximum:
            pc.error(
                params_node,
                param,
                f"params.{param}",
                f"default {default} is above {maximum:g}, the most it can be",
            )
    if pc.errors:
        raise ModeValidationError(sorted(pc.errors, key=lambda e: e.line or 0))
    return ModeSpec(
        name=name,
        description=description.strip(),
        steps=steps,
        group=group,
        params=params,
        limits=limits,
        path=Path(spath) if spath != "<string>" else None,
        source=text,
        param_minimums=pc.param_minimums,
        param_maximums=pc.param_maximums,
        integer_params=pc.integer_params,
    )


def load_mode_file(path: Path, *, allow_code: Iterable[str] = ()) -> ModeSpec:
    """Read and parse one mode file (`allow_code` as for `parse_mode`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModeValidationError([ModeError(str(path), None, "", f"cannot read file: {exc}")]) from None
    return parse_mode(text, path, allow_code=allow_code)
