"""The README's promise: every public name of the modules the notebooks import from has a numpydoc
docstring with Parameters, Returns and an Examples section (run as a doctest by the suite)."""
import importlib
import inspect
import pkgutil

import xai_helpers.steps

#: What the notebooks import from (tests/test_imports.py checks that they import nothing else).
NOTEBOOK_MODULES = ["xai_helpers", "xai_helpers.figures", "xai_helpers.widgets", "xai_helpers.notebook"] + [
    "xai_helpers.steps"] + [f"xai_helpers.steps.{m.name}" for m in pkgutil.iter_modules(xai_helpers.steps.__path__)]


def public_names(module):
    """Functions and classes a module offers: its ``__all__``, or what it defines without a leading underscore."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == module.__name__]
    return [(n, getattr(module, n)) for n in names if inspect.isfunction(getattr(module, n))
            or inspect.isclass(getattr(module, n))]


def missing_sections(obj) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    missing = [] if doc else ["docstring"]
    if "Examples\n--------" not in doc:
        missing.append("Examples")
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        signature = None
    takes = signature is not None and any(p.name not in ("self", "cls") for p in signature.parameters.values())
    if takes and "Parameters\n----------" not in doc and "Attributes\n----------" not in doc:
        missing.append("Parameters")
    if inspect.isfunction(obj) and signature is not None:
        returns = signature.return_annotation
        if returns not in (None, "None", inspect.Signature.empty) and "Returns\n-------" not in doc \
                and "Yields\n------" not in doc:
            missing.append("Returns")
    return missing


def test_the_checker_finds_a_missing_section():
    def documented(x: int) -> int:
        """Twice x.

        Parameters
        ----------
        x : int

        Returns
        -------
        int

        Examples
        --------
        >>> documented(2)
        4
        """
        return 2 * x

    def bare(x: int) -> int:
        """Twice x."""
        return 2 * x

    assert missing_sections(documented) == []
    assert missing_sections(bare) == ["Examples", "Parameters", "Returns"]


def test_every_public_name_the_notebooks_reach_has_parameters_returns_and_an_example():
    lacking = {}
    seen = set()
    for name in NOTEBOOK_MODULES:
        module = importlib.import_module(name)
        for _, obj in public_names(module):
            key = (obj.__module__, obj.__qualname__)
            if key in seen:
                continue
            seen.add(key)
            missing = missing_sections(obj)
            if missing:
                lacking[f"{obj.__module__}.{obj.__qualname__}"] = missing
    assert lacking == {}, f"{len(lacking)} public name(s) lack docstring sections: {lacking}"


def test_at_most_one_example_in_ten_is_skipped():
    """An example that needs a trained model or a run folder may be marked +SKIP, but few may."""
    examples = skipped = 0
    seen = set()
    for name in NOTEBOOK_MODULES:
        for _, obj in public_names(importlib.import_module(name)):
            if (obj.__module__, obj.__qualname__) in seen:
                continue
            seen.add((obj.__module__, obj.__qualname__))
            doc = inspect.getdoc(obj) or ""
            if "Examples\n--------" in doc:
                examples += 1
                skipped += "doctest: +SKIP" in doc
    assert examples and skipped <= examples / 10, (skipped, examples)
