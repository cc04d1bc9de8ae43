"""The layers, as imports: the domain does no I/O, the slices do not import each other's
GraphQL or the API, and the API sits on top (docs/architecture.md)."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pocketquant"


def imports(path: Path) -> set[str]:
    """Modules ``path`` imports, anywhere in it (type-only imports too: a layer below
    names nothing above it, not even for its annotations)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("domain"), ids=lambda p: p.name)
def test_the_domain_imports_only_itself_and_the_standard_library(path: Path) -> None:
    for name in imports(path):
        top = name.split(".")[0]
        assert name.startswith("pocketquant.domain") or top in sys.stdlib_module_names, f"{path.name}: {name}"


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("history", ("pocketquant.api", "pocketquant.realtime.graphql", "pocketquant.benchmarks")),
        ("realtime", ("pocketquant.api", "pocketquant.history.graphql", "pocketquant.benchmarks")),
        ("graphql", ("pocketquant.api", "pocketquant.history", "pocketquant.realtime.graphql")),
        ("tradingview", ("pocketquant.api", "pocketquant.history", "pocketquant.realtime", "pocketquant.graphql")),
        ("auth", ("pocketquant.api", "pocketquant.history", "pocketquant.realtime", "pocketquant.graphql")),
    ],
)
def test_slices_do_not_import_each_other_or_what_sits_above_them(folder: str, forbidden: tuple[str, ...]) -> None:
    for path in modules(folder):
        for name in imports(path):
            assert not name.startswith(forbidden), f"{path.relative_to(PACKAGE)} imports {name}"


def test_nothing_but_the_cli_imports_the_benchmarks() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "benchmarks" in path.parts or path.name == "cli.py":
            continue
        assert not any(name.startswith("pocketquant.benchmarks") for name in imports(path)), path
