"""No import cycle among the project's modules: an arrow between two modules runs one
way only, wherever the import stands (at the top or inside a function, where a cycle
hides until it is called)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("lbw_jax",)


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (``from a import b`` counts ``a.b``
    when that is a module, else ``a``)."""
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module(p) for p in paths}
    graph = {}
    for path in paths:
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges.add(full if full in modules else node.module)
        me = _module(path)
        # A package's __init__ re-exporting its modules is not an arrow back.
        graph[me] = {m for m in edges & modules if m != me and not me.startswith(m + ".")}
    return graph


def cycles(graph) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_stress_suite():
    stress = {m: {e for e in edges if e.startswith("lbw_jax.train.stress")}
              for m, edges in import_graph().items() if m.startswith("lbw_jax.train.stress")}
    assert cycles(stress) == []


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_stress_suite_never_imports_the_research_instruments():
    # The engine and its rooms (metrics, report, goals) run without the study; the study
    # (signals, ladder, skip replay) builds on the engine through its public hook.
    graph = import_graph()
    suite = {m: edges for m, edges in graph.items() if _within(m, "lbw_jax.train.stress")}
    assert {"lbw_jax.train.stress.engine.arms", "lbw_jax.train.stress.engine.sweep"} <= set(suite)
    into_study = {m: sorted(e for e in edges if _within(e, "lbw_jax.train.study"))
                  for m, edges in suite.items()}
    assert {m: e for m, e in into_study.items() if e} == {}
    # The graph sees the arrow the other way, so the check above is not vacuous.
    assert "lbw_jax.train.stress.engine.arms" in graph["lbw_jax.train.study.signals"]


def test_no_import_cycle_in_the_project():
    assert cycles(import_graph()) == []
