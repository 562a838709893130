"""YAML loading that remembers line numbers, so errors can name the line of a field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


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


class _LineLoader(yaml.SafeLoader):
    pass


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
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
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
