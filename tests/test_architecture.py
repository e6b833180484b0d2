"""The layout's rules, checked on the source (docs/architecture.md draws them).

* No upward import: a module imports its own layer and the layers below it; the lab (evaluation, the
  offline cascade tools) sits beside the request path: it may import anything below the gateway, and
  only the CLI may import it. Imports inside functions and under ``TYPE_CHECKING`` count, and so does a
  module named in a string (``"sizewise.x.y"``, what ``importlib.import_module`` is given): an arrow
  hidden in a string is still an arrow.
* No package cycle: the packages (units below) import each other one way only.
* The request path is light: importing the gateway app and the engine, and registering every built-in
  policy and filter, loads no pandas, matplotlib or scikit-learn; ``import sizewise`` takes under 1 s.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first. ``lab`` is not in the order: it has its own rule (see :func:`allowed`).
LAYERS = ["ground", "catalog", "embedding", "models", "serve", "gateway", "cli"]
#: The lab may import these; nothing but the lab itself and the CLI may import the lab.
LAB_MAY_IMPORT = {"ground", "catalog", "embedding", "models", "serve"}

#: Module prefix -> (layer, unit); the longest matching prefix wins. A unit is one node of the cycle
#: check: modules inside one unit may import each other freely (lazily, where they must).
PACKAGES = {
    "sizewise": ("ground", "sizewise"),
    "sizewise.core": ("ground", "core"),
    "sizewise.errors": ("ground", "errors"),
    "sizewise.paths": ("ground", "paths"),
    "sizewise.checks": ("ground", "checks"),
    "sizewise.storage": ("ground", "storage"),
    "sizewise.progress": ("ground", "progress"),  # one progress display for every long job
    "sizewise.catalog": ("catalog", "catalog"),
    "sizewise.embedding": ("embedding", "embedding"),
    "sizewise.learn": ("models", "learn"),
    "sizewise.learn.retrain": ("models", "routers"),  # refits routers: beside them, above the estimator base
    "sizewise.backends": ("models", "backends"),
    "sizewise.routers": ("models", "routers"),
    "sizewise.scorers": ("models", "scorers"),
    "sizewise.cascade": ("models", "cascade"),  # the package itself holds only a docstring
    "sizewise.cascade.scorers": ("models", "scorers"),
    "sizewise.cascade.graders": ("models", "graders"),
    "sizewise.distill": ("models", "distill"),  # task students distilled from a teacher's answers
    "sizewise.cascade.gateway_policy": ("serve", "serve"),  # old name of sizewise.policy.cascading
    "sizewise.cascade.policy": ("lab", "lab"),  # offline cascade simulation
    "sizewise.cascade.collect": ("lab", "lab"),  # `sizewise collect`
    # policy/ is today's home of what the issue calls serve/: one unit while the code moves.
    "sizewise.policy": ("serve", "serve"),
    "sizewise.serve": ("serve", "serve"),
    "sizewise.gateway": ("gateway", "gateway"),
    "sizewise.evaluation": ("lab", "lab"),
    "sizewise.cli": ("cli", "cli"),
    "sizewise.distributed": ("cli", "distributed"),  # Ray: deploys the gateway, spreads the lab's collect and eval
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def place(module: str) -> tuple[str, str] | None:
    """(layer, unit) of a module, None when no prefix of PACKAGES covers it."""
    parts = module.split(".")
    for end in range(len(parts), 1, -1):  # never the bare root: a new package must be placed
        found = PACKAGES.get(".".join(parts[:end]))
        if found is not None:
            return found
    return PACKAGES.get(module)


def allowed(source: str, target: str) -> bool:
    """May a module of layer ``source`` import one of layer ``target``?"""
    if target == "lab":
        return source in ("lab", "cli")
    if source == "lab":
        return target in LAB_MAY_IMPORT
    return LAYERS.index(target) <= LAYERS.index(source)


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every sizewise module ``path`` imports (anywhere in the file) or names in a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from sizewise import storage` imports the module sizewise.storage
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known - {"sizewise"}:
            found.add(node.value)  # a module name in a string: an import made by name (importlib)
    return {name for name in found if name == "sizewise" or name.startswith("sizewise.")}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the sizewise modules it imports, for every module under ``root``/sizewise."""
    files = {module_name(path, root): path for path in sorted((root / "sizewise").rglob("*.py"))}
    known = set(files)
    return {module: imports(path, module, known) - {module} for module, path in files.items()}


def violations(root: Path) -> list[str]:
    """Every upward import, unplaced module and package cycle under ``root``; empty when the layout holds."""
    graph = import_graph(root)
    problems: list[str] = []
    units: dict[str, set[str]] = {}
    for module, targets in sorted(graph.items()):
        here = place(module)
        if here is None:
            problems.append(f"{module}: no layer; add its package to PACKAGES (and to docs/architecture.md)")
            continue
        for target in sorted(targets):
            there = place(target)
            if there is None:
                continue  # reported as the target's own problem
            if not allowed(here[0], there[0]):
                problems.append(f"upward import: {module} ({here[0]}) imports {target} ({there[0]})")
            if there[1] != here[1]:
                units.setdefault(here[1], set()).add(there[1])
    for group, cycle in cycles(units):
        problems.append(f"package cycle: {' -> '.join(cycle)} (all of {', '.join(group)} reach each other)")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """(group, one cycle through its first member) per strongly connected group of units."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [(group, _path(group, edges)) for group in groups]


def _path(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A closed path through ``group`` from its first member (breadth-first, so it is short)."""
    start, members = group[0], set(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(edges.get(node, set()) & members):
                if nxt == start:
                    path = [start]
                    while node != start:
                        path.insert(1, node)
                        node = previous[node]
                    return [*path, start]
                if nxt not in previous:
                    previous[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return group


# -- the layout itself --------------------------------------------------------------------------------
def test_no_upward_import_and_no_package_cycle() -> None:
    problems = violations(SRC)
    assert not problems, "\n".join(problems)


# -- the checker can fail, and for the right reason --------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"sizewise/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_checker_finds_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "sizewise/core/__init__.py": "",
            "sizewise/gateway/__init__.py": "",
            "sizewise/core/text.py": "def f():\n    from sizewise.gateway import log\n",
            "sizewise/gateway/log.py": "from sizewise.core import text\n",
        },
    )
    problems = violations(root)
    assert "upward import: sizewise.core.text (ground) imports sizewise.gateway.log (gateway)" in problems
    assert "package cycle: core -> gateway -> core (all of core, gateway reach each other)" in problems


def test_the_checker_finds_a_module_named_in_a_string_and_the_lab_on_the_request_path(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "sizewise/policy/__init__.py": "",
            "sizewise/policy/types.py": 'MODULES = ["sizewise.gateway.app"]\n',
            "sizewise/gateway/__init__.py": "",
            "sizewise/gateway/app.py": "from . import errors\nfrom ..evaluation import table\n",
            "sizewise/gateway/errors.py": "",
            "sizewise/evaluation/__init__.py": "",
            "sizewise/evaluation/table.py": "",
            "sizewise/newpkg/__init__.py": "",
        },
    )
    problems = violations(root)
    assert "upward import: sizewise.policy.types (serve) imports sizewise.gateway.app (gateway)" in problems
    assert "upward import: sizewise.gateway.app (gateway) imports sizewise.evaluation.table (lab)" in problems
    assert not any("gateway.errors" in p for p in problems)  # a relative import within the layer is fine
    assert any(p.startswith("sizewise.newpkg: no layer") for p in problems)


# -- a light request path -----------------------------------------------------------------------------
HEAVY = ("pandas", "matplotlib", "sklearn", "ray")

_SPY = """
import importlib, json, sys, traceback
HEAVY = {heavy!r}
first = {{}}

class Spy:  # records which sizewise line first imported each heavy library
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in first:
            lines = [f"{{f.filename.split('/src/')[-1]}}:{{f.lineno}}" for f in traceback.extract_stack()
                     if "/sizewise/" in f.filename]
            first[name] = lines[-1] if lines else "?"
        return None

sys.meta_path.insert(0, Spy())
for module in {modules!r}:
    importlib.import_module(module)
{after}
print(json.dumps({{name: first.get(name, "?") for name in HEAVY if name in sys.modules}}))
"""


def _heavy_imports(modules: list[str], after: str = "") -> dict[str, str]:
    code = _SPY.format(heavy=HEAVY, modules=modules, after=after)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_request_path_imports_no_pandas_matplotlib_or_sklearn() -> None:
    modules = ["sizewise.gateway", "sizewise.gateway.app", "sizewise.policy.engine"]
    if (SRC / "sizewise" / "serve" / "pipeline.py").is_file():
        modules.append("sizewise.serve.pipeline")
    # Building an engine imports every registered policy and filter module: those are the request path too.
    after = "from sizewise.policy.types import load_extensions\nload_extensions()"
    pulled = _heavy_imports(modules, after)
    assert not pulled, f"the request path imports {pulled} (library: first sizewise line that imported it)"


def test_the_spy_names_the_line_that_pulls_pandas_in() -> None:
    """The check above can fail: the outcome table does import pandas, and the spy says where."""
    pulled = _heavy_imports(["sizewise.core.table"])
    assert pulled.get("pandas", "").startswith("sizewise/core/table.py:")


def test_the_shared_vocabulary_imports_only_the_standard_library() -> None:
    code = (
        "import sys\nimport sizewise.core.chat, sizewise.core.text, sizewise.core.decision\n"
        "print(sorted(m for m in ('numpy', 'pydantic', 'sqlalchemy', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_import_sizewise_takes_under_a_second() -> None:
    code = "import time\nstart = time.perf_counter()\nimport sizewise\nprint(time.perf_counter() - start)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    seconds = float(done.stdout.strip())
    assert seconds < 1.0, f"import sizewise took {seconds:.2f} s"


@pytest.mark.parametrize("old", ["sizewise.evaluation.table", "sizewise.backends.base", "sizewise.policy.types"])
def test_old_homes_still_export_the_moved_names(old: str) -> None:
    import importlib

    from sizewise.core import chat, decision, table, text

    module = importlib.import_module(old)
    moved = {
        "sizewise.evaluation.table": {"OutcomeTable": table.OutcomeTable, "conversation_text": text.conversation_text},
        "sizewise.backends.base": {name: getattr(chat, name) for name in ("ChatRequest", "ChatResult", "BackendError")},
        "sizewise.policy.types": {name: getattr(decision, name) for name in ("Decision", "Step", "RequestRejected")},
    }[old]
    for name, value in moved.items():
        assert getattr(module, name) is value, f"{old}.{name} is not the core one"


def test_one_rejection_error() -> None:
    from sizewise.core.decision import RequestRejected
    from sizewise.gateway.errors import GatewayError

    assert GatewayError is RequestRejected
    error = GatewayError(400, "bad", "invalid_request", "model")
    assert (error.status, error.message, error.code, error.param) == (400, "bad", "invalid_request", "model")
