"""The layers contract (issue 14): which part of composite_cli may import which.

Every module of composite_cli belongs to one layer. A module may import its own layer and the
layers below it, never one above; of the front ends, cli, tui and serve do not import each other
(a cli command may import the front end it launches: `composite tui`, `composite serve`). The
imports are read from the source with `ast`, so an import inside a function counts as much as
one at the top (composite imports lazily to start fast; a lazy import is still a dependency).
Imports under `if TYPE_CHECKING:` never run, so they may point up a layer (they still may not
join two front ends). The known exceptions are in ALLOWED, each with the reason it is there
today; the test fails on any new violation and on an ALLOWED entry that is no longer needed, so
the list only shrinks.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "composite_cli"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Top to bottom. A prefix names a module and everything under it; the longest prefix wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # The edges users touch: the command line, the Textual app, the HTTP server, the Datasette
    # plugin, the LiteLLM provider (the Python API), and model_metadata, which registers the
    # modes in LiteLLM's model map for the provider (it reads mode specs and profiles).
    ("front ends", ("cli", "tui", "serve", "datasette", "provider", "model_metadata")),
    # The background process the CLI hands chats to (`composite worker`): it hosts a Runner.
    ("worker", ("worker",)),
    # Eval sets, scorers, eval runs and reports; evals.stats is their statistics.
    ("evals", ("evals",)),
    # One run of a mode: engine + trace store + cache wired together.
    ("runner", ("runner",)),
    # Mode specs, step kinds, the executor, the RLM session.
    ("engine", ("engine",)),
    # What steps may use besides models: tools and the sandbox that runs python_tool and the RLM's
    # code; neither knows about modes or models.
    ("tools", ("tools", "sandbox")),
    # The one traced LiteLLM wrapper.
    ("calls", ("calls", "http_retry")),
    # LiteLLM itself and the models composite adds to it: the lazy loader, the fault-injecting
    # mock providers, the embedded model (local/), context windows.
    ("models", ("litellm_loader", "faults", "local", "model_limits")),
    # The trace store: schema, migrations, recorder, cache, queries, maintenance.
    ("traces", ("traces",)),
    # The event vocabulary the engine emits and the recorder, TUI and worker consume.
    ("events", ("events",)),
    # Leaves: errors, settings and small helpers that import nothing above them. The package's
    # own __init__ is here: importing any module runs it.
    (
        "leaves",
        (
            "errors",
            "config",
            "redact",
            "yamlfile",
            "jsonvalues",
            "generation_ranges",
            "patterns",
            "dotted",
            "percentiles",
            "answers",
            PACKAGE,
        ),
    ),
]

# Front ends that must not import each other.
INDEPENDENT = ("cli", "tui", "serve")
# A cli command module may import the front end it starts.
LAUNCHERS = {"cli.tui": "tui", "cli.serve": "serve"}

# (importing module, imported module): why the import is there today. Remove an entry when its
# reason goes away; the test says when.
ALLOWED: dict[tuple[str, str], str] = {
    # At LiteLLM's first import the loader registers the default modes' metadata (a lazy import
    # inside get_litellm); the registration reads mode specs, so it sits with the provider.
    ("litellm_loader", "model_metadata"): "LiteLLM's first import registers the modes' metadata",
    # The public Python API: composite_cli.register() imports the provider when called.
    (PACKAGE, "provider"): "composite_cli.register() is the provider's entry point (lazy)",
}


@dataclass(frozen=True)
class Import:
    importer: str  # module names relative to the package (see relative())
    imported: str
    line: int
    type_only: bool


def relative(module: str) -> str:
    """cli.errors for composite_cli.cli.errors; the package itself keeps its name."""
    return module.removeprefix(PACKAGE + ".")


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_test(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> list[Import]:
    """The package-internal imports in one module's source, wherever they are written."""
    found: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _type_checking_test(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        targets: list[str] = []
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source_module = ".".join(base + ([node.module] if node.module else []))
            else:
                source_module = node.module or ""
            for alias in node.names:
                # `from composite_cli.traces import queries` imports the module traces.queries.
                submodule = f"{source_module}.{alias.name}"
                targets.append(submodule if submodule in known else source_module)
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.append(Import(relative(module), relative(target), line, type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(source), False)
    return found


def all_imports(root: Path = ROOT) -> list[Import]:
    names = module_names(root)
    known = set(names)
    found = []
    for module, path in names.items():
        found += imports_of(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", known)
    return found


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def front_end(module: str) -> str | None:
    return next((name for name in INDEPENDENT if _matches(module, name)), None)


def violation(found: Import) -> str | None:
    """Why this import breaks the contract, or None."""
    importer, imported = found.importer, found.imported
    mine, theirs = front_end(importer), front_end(imported)
    if mine and theirs and mine != theirs:
        launched = next((fe for cmd, fe in LAUNCHERS.items() if _matches(importer, cmd)), None)
        if launched != theirs:
            return f"front ends {mine} and {theirs} are independent"
    above, below = layer_of(importer), layer_of(imported)
    assert above is not None and below is not None
    if below < above and not found.type_only:
        return f"{LAYERS[above][0]} imports {LAYERS[below][0]}, a layer above it"
    return None


def violations(found: list[Import]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for item in found:
        reason = violation(item)
        if reason:
            out.setdefault((item.importer, item.imported), []).append(
                f"{item.importer}: line {item.line}: imports {item.imported}: {reason}"
            )
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in module_names() if layer_of(relative(m)) is None]
    assert not unplaced, f"give these modules a layer in tests/test_layers.py LAYERS: {unplaced}"


def test_no_import_breaks_the_layers() -> None:
    found = violations(all_imports())
    new = [line for key, lines in found.items() if key not in ALLOWED for line in lines]
    assert not new, "imports against the layers (see tests/test_layers.py):\n" + "\n".join(new)


def test_every_allowed_exception_is_still_needed() -> None:
    found = violations(all_imports())
    stale = [f"{a} -> {b}" for (a, b) in ALLOWED if (a, b) not in found]
    assert not stale, f"no longer needed; remove from ALLOWED in tests/test_layers.py: {stale}"


def test_the_checker_catches_a_synthetic_violation() -> None:
    known = {f"{PACKAGE}.traces.store", f"{PACKAGE}.cli.errors", f"{PACKAGE}.serve.app"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "from composite_cli.errors import CompositeError\n"  # down to the leaves: fine
        "if TYPE_CHECKING:\n"
        "    from composite_cli.runner import Runner\n"  # up, but type-only: fine
        "def lazy():\n"
        "    from composite_cli.cli import errors\n"  # up, inside a function: caught
        "    return errors\n"
    )
    found = imports_of(f"{PACKAGE}.traces.store", source, False, known)
    assert [(i.imported, i.line, i.type_only) for i in found] == [
        ("errors", 2, False),
        ("runner", 4, True),
        ("cli.errors", 6, False),
    ]
    assert list(violations(found)) == [("traces.store", "cli.errors")]
    # Two front ends, same layer: caught; the command that launches a front end: fine.
    tui_to_serve = imports_of(f"{PACKAGE}.tui.app", "from ..serve import app\n", False, known)
    assert [i.imported for i in tui_to_serve] == ["serve.app"]
    assert "independent" in (violation(tui_to_serve[0]) or "")
    assert violation(Import("cli.serve", "serve.app", 1, False)) is None
    assert violation(Import("cli.chat", "serve.app", 1, False)) is not None
