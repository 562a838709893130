"""YAML loading that remembers line numbers, so errors can name the line of a field.

Mode and config files come from other people too: a document nested deeper than MAX_DEPTH levels
(textually or through aliases), or one whose aliases expand to more than MAX_VALUES values (a
"billion laughs"), is a syntax error with its line, before anything recurses over it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from composite_cli.jsonvalues import MAX_DEPTH  # nested mappings and lists: the same limit as JSON


class LineDict(dict[str, Any]):
    """A dict from YAML that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A list from YAML that knows its own line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        if 0 <= index < len(self.item_lines):
            return self.item_lines[index]
        return self.line


MAX_VALUES = 100_000  # values after aliases are expanded


class _LineLoader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # PyYAML composes recursively, one Python frame per level: stop long before the limit
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, _too_deep(), mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels (the limit for a YAML file)"


def _check_expanded(root: yaml.Node) -> None:
    """Refuse a node graph that, with aliases expanded, is deeper than MAX_DEPTH or holds more
    than MAX_VALUES values. Walked without recursion; each distinct node is measured once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()  # nodes whose children are being measured
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if not children_done:
            if key in size:
                continue
            if key in entered:
                # an alias inside the node it names: PyYAML refuses it when constructing
                raise YamlSyntaxError(
                    "invalid YAML: an alias refers to a node that contains it", node.start_mark.line + 1
                )
            entered.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in size)
            continue
        size[key] = 1 + sum(size.get(id(c), 0) for c in children)
        depth[key] = 1 + max((depth.get(id(c), 0) for c in children), default=0)
        line = node.start_mark.line + 1
        if depth[key] > MAX_DEPTH:
            raise YamlSyntaxError(f"invalid YAML: {_too_deep()}, counting aliases", line)
        if size[key] > MAX_VALUES:
            raise YamlSyntaxError(
                f"invalid YAML: aliases expand to more than {MAX_VALUES} values (the limit for a YAML file)",
                line,
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain values", key_node.start_mark
            )
        skey = str(key)
        if skey in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {skey!r}", key_node.start_mark
            )
        result[skey] = loader.construct_object(value_node, deep=True)
        result.key_lines[skey] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class YamlSyntaxError(ValueError):
    """The text is not valid YAML; `line` is 1-based."""

    def __init__(self, message: str, line: int | None):
        self.line = line
        super().__init__(message)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text into LineDict/LineList values; raise YamlSyntaxError with a line."""
    try:
        return _load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join((exc.problem or str(exc)).split())
        raise YamlSyntaxError(f"invalid YAML: {problem}", line) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlSyntaxError(f"invalid YAML: character {exc.character!r} is not allowed", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError("invalid YAML: " + " ".join(str(exc).split()), None) from None


def _load(text: str) -> Any:
    loader = _LineLoader(text)  # the reader checks every character here
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml_file(path: Path) -> Any:
    """Read and parse a YAML file (UTF-8)."""
    return load_yaml_text(path.read_text(encoding="utf-8"))


def line_of(node: Any, key: str | int | None = None) -> int | None:
    """The line of `node` (or of one key/item of it), if known."""
    if isinstance(node, LineDict):
        return node.line_of(str(key)) if key is not None else node.line
    if isinstance(node, LineList):
        return node.line_of(int(key)) if isinstance(key, int) else node.line
    return None


Report = Callable[[Any, "str | int | None", str, str], None]
"""report(node, key, field, message): a problem with `node[key]` (at that key's line; the node's
own line when key is None), `field` its dotted path ("" when the message names it itself)."""


def field_path(where: str, key: str | int) -> str:
    """The dotted path of a field (`steps[0].model`; top-level fields are just their key)."""
    return f"{where}.{key}" if where else str(key)


def type_name(value: Any) -> str:
    """What a YAML value is, as a message says it ("a mapping", "a list", "nothing", "int")."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class FieldReader:
    """Typed reads of YAML fields, each problem reported with its line and field through `report`.

    The one set of primitives behind both hand-checked YAML files: a mode file (engine/spec.py's
    ParseContext collects every problem) and the config file (config.py stops at the first). A
    `message` argument replaces the default wording where a file has its own."""

    def __init__(self, report: Report):
        self.report = report

    def check_keys(
        self, node: dict[str, Any], allowed: Iterable[str], where: str, *, message: str | None = None
    ) -> None:
        """Report each key of `node` not in `allowed`. `message` (with `{key}` and `{allowed}`)
        replaces `<field>: unknown field (allowed: ...)` with a line that names the key itself."""
        allowed = set(allowed)
        listed = ", ".join(sorted(allowed))
        for key in node:
            if key in allowed:
                continue
            if message is None:
                self.report(node, key, field_path(where, key), f"unknown field (allowed: {listed})")
            else:
                self.report(node, key, "", message.format(key=repr(key), allowed=listed))

    def string(
        self,
        node: dict[str, Any],
        key: str,
        where: str,
        *,
        required: bool = False,
        message: str | None = None,
        empty_is_absent: bool = True,
    ) -> str | None:
        """`node[key]` when it is a string; None when absent ("is required" if `required`).
        `empty_is_absent=False`: a key given with no value (`db:`) is wrong, not absent."""
        if key not in node or (node[key] is None and empty_is_absent):
            if required:
                self.report(node, None, field_path(where, key), "is required")
            return None
        value = node[key]
        if not isinstance(value, str):
            self.report(
                node, key, field_path(where, key), message or f"must be a string, got {type_name(value)}"
            )
            return None
        return value

    def boolean(
        self, node: dict[str, Any], key: str, where: str, default: bool, *, message: str | None = None
    ) -> bool:
        """`node[key]` when it is true or false; `default` when absent or wrong."""
        if key not in node:
            return default
        value = node[key]
        if not isinstance(value, bool):
            self.report(
                node, key, field_path(where, key), message or f"must be true or false, got {type_name(value)}"
            )
            return default
        return value

    def strings(self, node: dict[str, Any], key: str, where: str, *, message: str) -> list[str] | None:
        """`node[key]` as a list of strings (one string counts as a list of one); None when absent
        or wrong (`message` says what it must be)."""
        if key not in node:
            return None
        value = node[key]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            self.report(node, key, field_path(where, key), message)
            return None
        return list(items)
