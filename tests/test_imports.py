"""The package's import structure: no cycle, and no import inside a function without a stated reason."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xai_helpers"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def _package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at the top or inside a function (a local import that
    closes a cycle, as data/cache.py -> config -> data/ did, is a cycle all the same)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, path.name == "__init__.py")
                if target.startswith("xai_helpers"):
                    deps.add(target)
                    deps.update(f"{target}.{a.name}" for a in node.names)
        graph[name] = deps
    out = {}
    for m, deps in graph.items():
        own_ancestors = {".".join(m.split(".")[:k]) for k in range(1, m.count(".") + 1)}
        edges = set()
        for d in (d for d in deps if d in graph and d != m):
            edges.add(d)
            # importing a.b.c runs the __init__ of a.b first (unless the importer lives in a.b already)
            parts = d.split(".")
            edges.update(p for p in (".".join(parts[:k]) for k in range(1, len(parts)))
                         if p in graph and p != m and p not in own_ancestors)
        out[m] = edges
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle_between_the_package_modules():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]  # the finder works
    graph = _package_imports()
    assert _cycles(graph) == []
    assert graph["xai_helpers.paths"] == set()  # the leaf the others build on


def test_function_local_imports_say_why():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    line = lines[inner.lineno - 1]
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and "noqa: PLC0415" not in line:
                        offenders.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}: {line.strip()}")
    assert offenders == []
