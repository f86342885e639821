"""The package stays easy to read: no module of ``lbw_jax`` (the library and the harness) over
300 lines, no function over 70."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_MODULE, MAX_FUNCTION = 300, 70


def oversized(root: pathlib.Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        where = path.relative_to(root.parent)
        if source.count("\n") > MAX_MODULE:
            out.append(f"{where}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    out.append(f"{where}: {node.name} is {length} lines")
    return out


def test_no_module_or_function_of_the_package_is_too_long():
    assert oversized(ROOT / "lbw_jax") == []


def test_the_check_sees_a_long_module_and_a_long_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    (package / "long.py").write_text("def f():\n" + body + "\n" + "\n" * MAX_MODULE)
    assert oversized(package) == [f"pkg/long.py: {MAX_MODULE + MAX_FUNCTION + 1} lines",
                                  f"pkg/long.py: f is {MAX_FUNCTION + 1} lines"]
