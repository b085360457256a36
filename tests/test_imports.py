"""The package's import graph: no cycles, the stage order of docs/ARCHITECTURE.md (no module imports a
later stage), and models/ + objective/ import at module top only."""

import ast
from pathlib import Path

import mcl_video

PACKAGE = Path(mcl_video.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("mcl_video", *path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.AST, modules: dict) -> set[str]:
    """Package modules imported anywhere in ``tree`` (``from a.b import c`` counts a.b.c when c is one)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcl_video"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mcl_video"))
    return found & set(modules)


def test_no_import_cycles_even_through_function_local_imports():
    modules = _modules()
    graph = {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles[:5]


def test_models_and_objective_import_at_module_top():
    late = []
    for layer in ("models", "objective"):
        for path in sorted((PACKAGE / layer).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    late += [f"{path.name}:{n.lineno}" for n in ast.walk(node)
                             if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not late, late


# the stage order docs/ARCHITECTURE.md states: a module may import its own stage and earlier ones only
STAGES = (
    ("errors", "atomic", "figures", "allocator"),  # the base every stage may use
    ("data",),
    ("motion",),
    ("sampling",),
    ("objective",),
    ("models",),
    ("training",),
    ("evaluation",),
    ("demo",),
    ("cli", "__main__"),
)


def _stage(module: str) -> int | None:
    """Index in ``STAGES`` of ``mcl_video.<part>...``; ``None`` for the package itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return next(i for i, names in enumerate(STAGES) if parts[1] in names)


def test_every_module_belongs_to_a_stage():
    unknown = [m for m in _modules() if m != "mcl_video" and not any(m.split(".")[1] in s for s in STAGES)]
    assert not unknown, f"add these to STAGES and to docs/ARCHITECTURE.md's import order: {unknown}"


def test_no_stage_imports_a_later_stage():
    modules = _modules()
    backwards = []
    for name, path in sorted(modules.items()):
        here = _stage(name)
        for dep in sorted(_imports(ast.parse(path.read_text()), modules)):
            there = _stage(dep)
            if here is not None and there is not None and there > here:
                backwards.append(f"{name} -> {dep}")
    assert not backwards, backwards


def test_architecture_doc_and_package_docstring_state_this_order():
    doc = (PACKAGE.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    order = " -> ".join(", ".join(f"`{n}`" for n in names if n != "__main__") for names in STAGES)
    assert order in " ".join(doc.split()), order
    stages = " -> ".join(names[0] for names in STAGES[1:])  # the package docstring names the stages only
    assert stages in mcl_video.__doc__, stages
