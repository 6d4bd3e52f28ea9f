"""The three floors of DESIGN.md hold: imports only go down (edges → domain → backends), the guardrail engine is
pure, and no two modules import each other in a circle. Read from the source, so a new module is checked too."""

from __future__ import annotations

import ast
from pathlib import Path

import widget_server

PACKAGE = Path(widget_server.__file__).parent
FLOORS = {"edges": 3, "domain": 2, "backends": 1}  # the shared modules (settings, errors, ids…) are floor 0
# domain/guardrails: pure functions over a compiled policy
ENGINE = {"policy", "compile", "check", "scan", "stream", "topics", "normalize", "pii", "regex_info", "decision",
          "embeddings", "onnx_minilm", "multilingual", "language", "intents",
          "background", "agreement"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The widget_server modules `path` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # statements under `if TYPE_CHECKING:` count, functions' bodies do not
        nodes = [n for stmt in tree.body for n in ([stmt, *stmt.body] if isinstance(stmt, ast.If) else [stmt])]
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("widget_server")}


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS.get(parts[1], 0) if len(parts) > 1 else 0


def test_imports_only_go_down() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        if module in ("widget_server.app", "widget_server.__main__"):  # the factory and the entry point wire the floors
            continue
        for target in imports(path, top_level_only=False):
            if target not in known or target == "widget_server.app" and module.startswith("widget_server.edges.cli"):
                continue  # a name imported from a module, or `serve` starting the app
            if floor(target) > floor(module) or target == "widget_server.app":
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_guardrail_engine_imports_no_backend_and_nothing_around_it() -> None:
    known = modules()
    wrong = []
    for name in ENGINE:
        module = f"widget_server.domain.guardrails.{name}"
        for target in imports(known[module], top_level_only=False) & set(known):
            inside = target.startswith("widget_server.domain.guardrails.") and target.rsplit(".", 1)[1] in ENGINE
            shared = ("widget_server.domain.guardrails", "widget_server.errors", "widget_server.text")
            if not (inside or target in shared):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_module_imports_itself_through_others() -> None:
    known = modules()
    graph = {m: {t for t in imports(p, top_level_only=True) if t in known and t != m} for m, p in known.items()}
    # A package's __init__ re-exporting its modules is not a circle of theirs.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for target in graph[module]:
            if target in path:
                cycles.append(" → ".join([*path[path.index(target):], target]))
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []
