"""No SQL outside composite_cli/traces/ (issue 14: "traces/ owns the schema").

Every module of composite_cli outside traces/ is read with `ast` and fails this test when it
- imports the driver (`sqlite3`, `sqlite_utils`), even under TYPE_CHECKING or inside a function;
- holds SQL text: a string (not a docstring) with a statement's shape (`select ... from`,
  `insert into`, `update ... set`, `delete from`, `create table/view/index`, `pragma`, ...);
- runs a statement on a database: `.execute(`, `.executemany(`, `.executescript(` or a
  sqlite-utils style `.query(`.

Not counted: sandbox/ (`Sandbox.execute` runs model-written Python, not SQL) and calls on a
sandbox; Textual's `.query("#id")` / `.query(WidgetClass)` (a CSS selector or a widget class);
and the Datasette plugin's `await db.execute(page_queries.NAME, ...)`, Datasette's own async API
running a statement whose text lives in traces/page_queries.py.

Data files count too: a YAML file of the package outside traces/ (the Datasette metadata) holds no
SQL; the canned queries it titles take their SQL from traces/page_queries.CANNED_QUERIES.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "composite_cli"
OWNER = ROOT / "traces"
EXEMPT = (OWNER, ROOT / "sandbox")
DRIVERS = {"sqlite3", "sqlite_utils"}
RUN_METHODS = {"execute", "executemany", "executescript"}
SANDBOX_NAMES = {"sandbox"}  # receivers whose `.execute` runs code in the sandbox
SQL = re.compile(
    r"\bselect\b[\s\S]+?\bfrom\s+[\[\w?]|\binsert\s+(or\s+\w+\s+)?into\b|\bupdate\s+\[?\w+\]?\s+set\b"
    r"|\bdelete\s+from\b|\b(create|drop)\s+(temp\s+)?(table|view|index|trigger)\b|\bpragma\s+\w+"
    r"|\balter\s+table\b|\bwith\s+\w+\s+as\s*\(\s*select\b",
    re.IGNORECASE,
)

# Modules known to still hold SQL while it moves into traces/ (relative to composite_cli/).
# Remove an entry when its module is clean; the test says when. Never add one.
TODO: set[str] = set()  # empty since helper D's eval session moved its SQL (issue 14)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _text(node: ast.AST) -> str | None:
    """The literal text of a string, f-string (holes as `?`) or concatenation of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) or "?" for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return "?"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return None if left is None or right is None else left + right
    return None


def _receiver(node: ast.expr) -> str:
    """The last name of a call's receiver (`self.store.db.execute` → `db`)."""
    while isinstance(node, ast.Await):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _is_selector(arg: ast.expr | None) -> bool:
    """A Textual query: a CSS selector string, or a widget class."""
    text = _text(arg) if arg is not None else None
    if text is not None:
        return not SQL.search(text)
    return isinstance(arg, ast.Name) and arg.id[:1].isupper()


def _owned_by_traces(arg: ast.expr | None) -> bool:
    return (
        isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and arg.value.id == "page_queries"
    )


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(ROOT).as_posix()
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in DRIVERS:
                    found.append(f"{rel}:{line}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in DRIVERS:
            found.append(f"{rel}:{line}: imports from {node.module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, _receiver(node.func.value)
            first = node.args[0] if node.args else None
            if method in RUN_METHODS and receiver not in SANDBOX_NAMES and not _owned_by_traces(first):
                found.append(f"{rel}:{line}: runs SQL (.{method}(...))")
            elif method == "query" and not _is_selector(first):
                found.append(f"{rel}:{line}: runs SQL (.query(...))")
        elif isinstance(node, ast.Constant | ast.JoinedStr) and id(node) not in docs:
            text = _text(node)
            if text and SQL.search(text):
                found.append(f"{rel}:{line}: SQL text {text[:60]!r}")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if not any(p.is_relative_to(e) for e in EXEMPT))


def test_no_sql_outside_traces() -> None:
    found = [p for path in _modules() for p in problems(path) if p.split(":")[0] not in TODO]
    assert not found, "SQL belongs in composite_cli/traces/ (TraceReader, TraceStore):\n" + "\n".join(found)


def test_the_todo_list_only_shrinks() -> None:
    dirty = {p.split(":")[0] for path in _modules() for p in problems(path)}
    clean = sorted(m for m in TODO if (ROOT / m).exists() and m not in dirty)
    assert not clean, f"no SQL left in {clean}: remove them from TODO"


def test_the_checker_sees_sql(tmp_path: Path, monkeypatch) -> None:
    """The checker itself: each way of writing SQL in a front end is caught; selectors are not."""
    module = tmp_path / "composite_cli" / "cli" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        '"""select x from y in a docstring is prose."""\n'
        "import sqlite3\n"
        "from sqlite_utils import Database\n"
        "def f(db, box, sandbox, table):\n"
        '    db.execute("select 1")\n'
        '    db.query(f"select * from {table} where id = ?")\n'
        '    rows = "insert or replace into runs (id) values (?)"\n'
        '    box.query("#bars")\n'
        "    sandbox.execute(code)\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "composite_cli")
    kinds = sorted(p.split(": ", 1)[1].split(" ")[0] for p in problems(module))
    assert kinds == ["SQL", "SQL", "imports", "imports", "runs", "runs"], problems(module)


def test_no_sql_in_data_files_outside_traces() -> None:
    import yaml

    found = []
    for path in sorted(ROOT.rglob("*.y*ml")):
        if any(path.is_relative_to(e) for e in EXEMPT):
            continue
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if re.match(r"\s*sql\s*:", line) or SQL.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
        yaml.safe_load(text)  # and it still reads
    assert not found, "SQL outside composite_cli/traces/:\n" + "\n".join(found)


def test_every_canned_query_has_its_sql_and_its_title() -> None:
    from composite_cli.datasette import database_metadata
    from composite_cli.traces.page_queries import CANNED_QUERIES

    queries = database_metadata()["queries"]
    assert set(queries) == set(CANNED_QUERIES)
    for name, query in queries.items():
        assert query["title"] and query["sql"] == CANNED_QUERIES[name].strip(), name
