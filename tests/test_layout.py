"""The layout DESIGN §6 promises, checked on the source: every folder is a `tagflow.*` package
listed for installation, imports run one way down the layers, and only the settings module reads
tagflow's environment variables (never at import time)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]

# Highest first: a package may import only packages after it in this list (and itself).
# The read API sits above io_managers because it reads through the dataset store; nothing
# below it (assets, pipelines) is imported by it, nor it by them.
LAYERS = [
    "tagflow.cli",
    "tagflow.pipelines",
    "tagflow.assets",
    "tagflow.readapi",
    "tagflow.demo",
    "tagflow.daystep",
    "tagflow.annotations",
    "tagflow.io_managers",
    "tagflow.source",
    "tagflow.transforms",
    "tagflow.schemas",
    "tagflow",
]


def modules() -> list[tuple[str, Path]]:
    """(package, file) of every product module."""
    found = []
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            found.append((package, path))
    return found


def layer_of(module: str) -> str:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    raise AssertionError(f"{module} belongs to no layer")


def imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [name for name in names if name == "tagflow" or name.startswith("tagflow.")]


def test_every_folder_with_modules_is_an_installed_tagflow_package():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *relative]))
    assert found == listed
    assert set(PACKAGE_DIRS) == set(LAYERS)
    assert all(package.startswith("tagflow") for package in listed)


@pytest.mark.parametrize("package,path", modules(), ids=lambda v: str(v))
def test_imports_run_down_the_layers(package: str, path: Path):
    own = LAYERS.index(layer_of(package))
    tree = ast.parse(path.read_text())
    for module in imported_modules(tree):
        target = LAYERS.index(layer_of(module))
        assert target >= own, f"{path.relative_to(ROOT)} imports {module}, a layer above it"


def reads_environment(node: ast.AST) -> bool:
    """Whether `node` is os.environ, os.getenv or a Dagster EnvVar."""
    if isinstance(node, ast.Attribute):
        return node.attr in ("environ", "getenv", "EnvVar")
    return isinstance(node, ast.Name) and node.id in ("environ", "getenv", "EnvVar")


def test_only_the_settings_module_reads_tagflow_variables_and_nothing_at_import_time():
    for _, path in modules():
        tree = ast.parse(path.read_text())
        name = str(path.relative_to(ROOT))
        for statement in tree.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if statement_is_main_guard(statement):
                continue
            assert not any(map(reads_environment, ast.walk(statement))), (
                f"{name} reads the environment at import time"
            )
        if name == "tagflow/settings.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call | ast.Subscript) and any(
                map(reads_environment, ast.walk(node.func if isinstance(node, ast.Call) else node))
            ):
                literals = [
                    n.value
                    for n in ast.walk(node)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ]
                assert not any(v.startswith("TAGFLOW_") for v in literals), (
                    f"{name} reads a TAGFLOW_ variable itself; use tagflow.settings"
                )


def statement_is_main_guard(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.If)
        and isinstance(statement.test, ast.Compare)
        and isinstance(statement.test.left, ast.Name)
        and statement.test.left.id == "__name__"
    )
