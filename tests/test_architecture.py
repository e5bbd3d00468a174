"""The package's layers point one way (the book's appendix draws them), with no circle and no import
hidden inside a function:

    kernels <- wkv <- scans, shifts, mixes, blocks <- models <- hub <- engine <- report, predict <- cli, book
    data, metrics, losses, env: beside the stack (data and metrics import no model)

Each module of rwkvseg gets a rank from its name; a module may import only modules of its own rank or
below (and `data` / `metrics` only themselves). The check reads the source (ast), so it also sees imports
that run late.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rwkvseg"

RANKS = [                               # (module name prefix, rank); the first match wins
    ("rwkvseg.version", 0), ("rwkvseg.kernels", 1), ("rwkvseg.data", 1), ("rwkvseg.metrics", 1),
    ("rwkvseg.env", 1), ("rwkvseg.losses", 2), ("rwkvseg.wkv", 2),
    ("rwkvseg.models", 4), ("rwkvseg.macs", 4), ("rwkvseg.hub", 5),
    ("rwkvseg.engine", 6), ("rwkvseg.report", 7), ("rwkvseg.predict", 7), ("rwkvseg.cli", 8),
    ("rwkvseg.book", 8), ("rwkvseg.__main__", 9), ("rwkvseg", 3),     # the rest: scans, shifts, mixes, blocks
]
ONLY_ITSELF = ("rwkvseg.data", "rwkvseg.metrics")   # may import only their own modules (and the version)


def rank(module: str) -> int:
    return next(r for prefix, r in RANKS if module == prefix or module.startswith(prefix + "."))


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported rwkvseg module, line, inside a function?) of every import statement."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names if a.name.startswith("rwkvseg"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0 \
                    and child.module.startswith("rwkvseg"):
                for a in child.names:
                    full = f"{child.module}.{a.name}"
                    found.append((full if full in MODULES else child.module, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    wrong = []
    for target, line, in_function in imports(name, MODULES[name]):
        if in_function:
            wrong.append(f"line {line}: imports {target} inside a function")
        if name == "rwkvseg" or target == "rwkvseg.version":
            continue
        if rank(target) > rank(name):
            wrong.append(f"line {line}: imports {target} (rank {rank(target)}) from rank {rank(name)}")
        own = next((p for p in ONLY_ITSELF if name.startswith(p)), None)
        if own and not target.startswith(own):
            wrong.append(f"line {line}: {own} may import only itself, imports {target}")
        if target.startswith("rwkvseg.book"):
            wrong.append(f"line {line}: the notebook kit is imported by nothing in the package")
    assert not wrong, f"{name}:\n  " + "\n  ".join(wrong)


def test_no_import_circle():
    graph = {name: {t for t, _, _ in imports(name, path) if t in MODULES and t != name} for name, path in MODULES.items()}
    graph["rwkvseg"] = set()            # the package's __init__ re-exports; it is imported by its own modules' loads
    state, cycle = {}, []

    def dfs(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            dfs(node, [node])
    assert not cycle, "import circle(s): " + "; ".join(" -> ".join(c) for c in cycle)
