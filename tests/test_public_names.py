"""The project's modules reach each other through public names only: no module
outside ``lbw_jax`` imports an underscored name from it, and no module imports an
underscored name from another of the project's packages (the harness ``lbw_jax.train``,
``bench``, ``experiments``, ``examples``). Tests may import the harness's privates, whose behaviour
they pin; never the library's, which users build on."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("lbw_jax", "bench", "experiments", "examples", "tests")
HARNESS = "lbw_jax.train"


def owner(module: str) -> str:
    """The package a module belongs to: the harness, the library or a top-level folder."""
    return HARNESS if module == HARNESS or module.startswith(HARNESS + ".") else module.split(".")[0]


def private_imports(path: pathlib.Path):
    """(imported module, name) for every underscored name or module that ``path``
    imports from the project."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] not in PACKAGES:
                continue
            names = [a.name for a in node.names]
            if any(p.startswith("_") for p in parts):
                yield node.module, ",".join(names)
            for name in names:
                if name.startswith("_"):
                    yield node.module, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in PACKAGES and any(p.startswith("_") for p in parts[1:]):
                    yield alias.name, ""


def violations():
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            mine = owner(".".join(path.relative_to(ROOT).with_suffix("").parts))
            for module, name in private_imports(path):
                source = owner(module)
                if source == mine:
                    continue  # a package's own privates
                if package == "tests" and source == HARNESS:
                    continue  # tests pin the harness's internals
                out.append(f"{path.relative_to(ROOT)}: {module} {name}")
    return out


def test_no_module_imports_another_packages_private_names():
    assert violations() == []


def test_the_check_sees_a_private_import(tmp_path, monkeypatch):
    # The check is not vacuous: a file importing a private library module is reported.
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "probe.py").write_text("from lbw_jax import _stats\nimport lbw_jax.train.stress\n")
    # ... and so is the harness importing one: it is another package than the library.
    (tmp_path / "lbw_jax" / "train").mkdir(parents=True)
    (tmp_path / "lbw_jax" / "train" / "step.py").write_text("from lbw_jax._skip import zero_updates\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert sorted(violations()) == ["bench/probe.py: lbw_jax _stats",
                                    "lbw_jax/train/step.py: lbw_jax._skip zero_updates"]
