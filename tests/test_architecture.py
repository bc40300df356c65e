"""The project's packages import each other in layers, without circles.

Every module under the layered packages is parsed (never imported) and every import statement in it,
function-local ones included, becomes an edge of the module graph. The graph must have no cycle, and
no edge may point up the layers: ``ifnd`` and ``wordnet_hierarchy`` (the library) import no other
package, ``eval`` imports the library, ``reproduce`` (the harness) imports ``eval`` and the library,
``benchmarks`` any of them.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"ifnd": 0, "wordnet_hierarchy": 0, "eval": 1, "reproduce": 2, "benchmarks": 3}


def module_names(root: Path, packages) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` of every ``.py`` file under the packages (a package is its ``__init__``)."""
    names = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(parts)] = path
    return names


def _resolve(name: str, modules) -> str | None:
    """The deepest project module that ``name`` (a dotted import target) names, if any."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(root: Path, packages) -> dict[str, set[str]]:
    """Module -> the project modules its import statements (anywhere in the file) name."""
    modules = module_names(root, packages)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(_resolve(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[:len(package) - (node.level - 1)]
                    base = ".".join(package + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(_resolve(f"{base}.{alias.name}", modules) or _resolve(base, modules))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    top = lambda module: module.split(".")[0]
    return sorted(f"{src} -> {dst}" for src, targets in graph.items() for dst in targets
                  if layers[top(dst)] > layers[top(src)])


def test_no_import_cycles_between_project_modules():
    graph = import_graph(ROOT, LAYERS)
    assert len(graph) > 50 and graph["reproduce.execute"]  # the walk found the project
    assert cycles(graph) == []


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph(ROOT, LAYERS), LAYERS) == []


def test_the_checks_find_a_cycle_and_an_upward_import(tmp_path):
    files = {
        "low/__init__.py": "",
        "low/a.py": "from low import b\n",
        "low/b.py": "def f():\n    from .c import g\n",  # function-local, relative
        "low/c.py": "import low.a\n",
        "low/d.py": "def f():\n    from high.x import y\n",
        "high/__init__.py": "",
        "high/x.py": "from low.b import f\ny = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ["low", "high"])
    assert graph["low.b"] == {"low.c"} and graph["high.x"] == {"low.b"}
    assert cycles(graph) == [["low.a", "low.b", "low.c"]]
    assert upward_imports(graph, {"low": 0, "high": 1}) == ["low.d -> high.x"]
