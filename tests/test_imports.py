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
                    if not isinstance(inner, (ast.Import, ast.ImportFrom)):
                        continue
                    line = lines[inner.lineno - 1]
                    if "noqa: PLC0415" not in line:
                        offenders.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}: {line.strip()}")
    assert offenders == []


#: The layers below the study's steps: arrays and plain arguments in, no notebook parameters, no run folder.
LOWER_LAYERS = ["xai_helpers.data", "xai_helpers.models", "xai_helpers.training", "xai_helpers.inference",
                "xai_helpers.checkpoints", "xai_helpers.evaluation", "xai_helpers.baselines", "xai_helpers.stats",
                "xai_helpers.cams", "xai_helpers.cam_metrics", "xai_helpers.generalization", "xai_helpers.blur",
                "xai_helpers.errors", "xai_helpers.atomic", "xai_helpers.paths"]


def _in_lower_layer(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in LOWER_LAYERS)


def test_lower_layers_read_no_parameters_and_no_run_folder():
    """Only the steps (and the notebook-facing modules) see run folders and parameters: a lower module
    that imports the run folder, the parameters or a step, or takes a `params` argument, fails here."""
    graph = _package_imports()
    lower = sorted(m for m in graph if _in_lower_layer(m))
    assert "xai_helpers.data.prepared" in lower and "xai_helpers.cam_metrics" in lower
    upper = {"xai_helpers.runfolder", "xai_helpers.config", "xai_helpers.notebook", "xai_helpers.run",
             "xai_helpers.widgets", "xai_helpers.figures"}
    offenders = [f"{m} imports {d}" for m in lower for d in sorted(graph[m])
                 if d in upper or d == "xai_helpers.steps" or d.startswith("xai_helpers.steps.")]
    for m in lower:
        parts = m.split(".")[1:]
        path = PACKAGE.joinpath(*parts).with_suffix(".py")
        path = path if path.is_file() else PACKAGE.joinpath(*parts, "__init__.py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if "params" in names:
                    offenders.append(f"{m}.{node.name} takes params")
    assert offenders == []


def test_the_notebooks_call_the_steps_layer():
    """Every notebook imports from the steps, the figures, the widgets, the run folder and its setup helper
    only; the layers below are reached through the steps."""
    allowed = {"xai_helpers", "xai_helpers.steps", "xai_helpers.figures", "xai_helpers.widgets",
               "xai_helpers.notebook"}
    imported = {}
    for script in sorted((PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xai_helpers"):
                imported.setdefault(node.module, []).append(script.name)
    assert "xai_helpers.steps" in imported
    assert {m: names for m, names in imported.items() if m not in allowed} == {}


def test_no_step_module_imports_another_step_module():
    """The step modules are leaves: what two of them share lives a floor down (or in the report package)."""
    graph = _package_imports()
    steps = sorted(m for m in graph if m.startswith("xai_helpers.steps."))
    assert {"xai_helpers.steps.prepare", "xai_helpers.steps.train", "xai_helpers.steps.compare",
            "xai_helpers.steps.explain", "xai_helpers.steps.stress"} <= set(steps)
    offenders = [f"{m} imports {d}" for m in steps for d in sorted(graph[m])
                 if d.startswith("xai_helpers.steps") and d != m]
    assert offenders == []
    # nor does the report read what a step module writes through the step: it imports none of them
    assert [m for m in graph if m.startswith("xai_helpers.report") and any(
        d.startswith("xai_helpers.steps") for d in graph[m])] == []


def _calls(name: str) -> list[str]:
    """``module:line`` of every call of the dotted ``name`` (e.g. ``torch.load``) in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_only_the_checkpoint_module_reads_checkpoints():
    assert _calls("torch.load") and all(c.startswith("xai_helpers/checkpoints.py") for c in _calls("torch.load"))


def test_the_parameter_table_is_the_only_place_a_default_is_written():
    """No ``params.get(name, default)`` below the table, and no ``.get("<parameter>", <literal>)`` that would
    restate a parameter's default outside xai_helpers/config.py."""
    from xai_helpers.config import DEFAULTS

    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {ast.unparse(node)}"
            if ast.unparse(node.func.value) == "params":
                offenders.append(where)
            elif (len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and node.args[0].value in DEFAULTS
                  and isinstance(node.args[1], ast.Constant)):
                offenders.append(where)
    assert offenders == []


def test_every_error_of_the_toolkit_is_defined_in_one_module_under_one_base():
    import inspect

    import xai_helpers.errors as errors

    defined_elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith(("Error", "Exception"))
                                                      for b in node.bases):
                defined_elsewhere.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert defined_elsewhere == []
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert all(issubclass(c, errors.XaiHelpersError) for c in classes)
    # the module's table lists every error, and only those
    import re
    listed = set(re.findall(r"^:class:`(\w+)`", errors.__doc__, re.M))
    assert listed == {c.__name__ for c in classes} - {"XaiHelpersError"}
