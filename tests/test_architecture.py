"""The direction of imports between the rooms of the house, checked on the source.

Front ends (``resolver``, ``registry.api``) call the registry's services, the services
call the store; ``metrics`` stands alone; ``idnode`` is the composition root that wires
everything and that nothing imports. The rules are written once below, by package prefix
(so modules may move inside a room without touching them), and every import statement of
every module is checked against them — those inside functions and ``TYPE_CHECKING``
blocks, and ``importlib.import_module`` calls with a literal name, too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("idnode", "loadtest", "metrics", "registry", "resolver", "sync")


@dataclass(frozen=True)
class Rule:
    """What the modules under one prefix may import from our packages: anything under
    ``may`` except what is under ``never``."""

    may: frozenset[str]
    never: frozenset[str] = frozenset()


def rule(*may: str, never: tuple[str, ...] = ()) -> Rule:
    return Rule(frozenset(may), frozenset(never))


RULES: dict[str, Rule] = {
    # The composition root: configuration, the command line, wiring.
    "idnode": rule("idnode", "registry", "resolver", "sync", "metrics"),
    # The query path: the resolver and its front ends. The resolver reads the store itself on
    # a cache miss and follows its change feed; the HTTP front end's part of the OpenAPI
    # document is written with the admin API's schema building blocks.
    "resolver": rule("resolver", "registry", "metrics"),
    # The source of truth. Its plain modules (store, grammar, values, schema, ...) sit
    # below the services, and the services below the admin API.
    "registry": rule("registry", "metrics", never=("registry.api", "registry.services")),
    "registry.services": rule("registry", "metrics", never=("registry.api",)),
    "registry.api": rule("registry", "metrics", never=("registry.store",)),
    # Delivery to the top-level node: the registry's services and store, the instruments.
    "sync": rule("sync", "registry", "metrics", never=("registry.api",)),
    # The mock top-level node answers the native protocol with the resolver's codec.
    "sync.toplevel": rule("sync", "registry", "metrics", "resolver", never=("registry.api",)),
    # Instruments, the traffic table, the client key: nothing of ours below them.
    "metrics": rule("metrics"),
    # Load users and benchmarks reuse the codecs and the grammar; the node itself they
    # start as a process and talk to over the network.
    "loadtest": rule("loadtest", "registry", "resolver", "sync", "metrics"),
}

EXCEPTIONS: dict[tuple[str, str], str] = {
    ("loadtest.harness", "idnode"): (
        "benchmarks must know the demo data set the node seeds (which names exist, the "
        "admin login), show the node's progress line, and render the DNS zone through the "
        "node's own wiring to load a reference server; this one module is that bridge"
    ),
}
"""(importing module, imported prefix) → why that import is allowed against the rules."""


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(module: str, source: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every module ``source`` imports, as absolute dotted names. ``from a import b``
    yields ``a.b``: ``b`` may be a submodule, and a prefix rule on ``a.b`` must see it."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                yield Import(module, f"{origin}.{alias.name}", node.lineno)
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(module, node.args[0].value, node.lineno)


def all_imports() -> Iterator[Import]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield from imports_of(
                module_name(path),
                path.read_text(encoding="utf-8"),
                is_package=path.name == "__init__.py",
            )


def rule_for(module: str) -> Rule:
    prefix = max((p for p in RULES if under(module, p)), key=len)
    return RULES[prefix]


def exception_for(found: Import) -> tuple[str, str] | None:
    for key in EXCEPTIONS:
        importer, target = key
        if found.module == importer and under(found.target, target):
            return key
    return None


def allowed(found: Import) -> bool:
    if not any(under(found.target, package) for package in PACKAGES):
        return True  # the standard library and third-party packages
    governing = rule_for(found.module)
    return any(under(found.target, p) for p in governing.may) and not any(
        under(found.target, p) for p in governing.never
    )


def violations(found: list[Import]) -> list[str]:
    return [
        f"{i.module}:{i.line} imports {i.target}"
        for i in found
        if not allowed(i) and exception_for(i) is None
    ]


def test_the_parser_sees_every_form_of_import() -> None:
    source = """
import registry.store
from resolver import resolution
from . import sibling
from ..api import REGISTRY
import importlib
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from sync.worker import SyncWorker

def later():
    from idnode.demo import DEMO_ADMIN
    return importlib.import_module("metrics.traffic")
"""
    targets = {i.target for i in imports_of("registry.services.base", source)}
    assert {
        "registry.store",
        "resolver.resolution",
        "registry.services.sibling",
        "registry.api.REGISTRY",
        "sync.worker.SyncWorker",
        "idnode.demo.DEMO_ADMIN",
        "metrics.traffic",
    } <= targets
    in_package = {
        i.target for i in imports_of("registry.api", "from .envelope import x", is_package=True)
    }
    assert in_package == {"registry.api.envelope.x"}


def test_the_rules_catch_what_they_forbid() -> None:
    """The checker refuses each kind of wrong arrow, and prefixes end at a dot."""
    wrong = [
        Import("metrics.traffic", "registry.clients.ClientKeys", 1),
        Import("loadtest.bench", "idnode.demo.example_handle", 1),
        Import("registry.services.base", "registry.api.envelope", 1),
        Import("registry.store", "registry.services.Registry", 1),
        Import("registry.api.data", "registry.store", 1),
        Import("registry.grammar", "resolver.resolution", 1),
        Import("resolver.resolution", "sync.worker", 1),
        Import("sync.worker", "resolver.handle.codec", 1),
    ]
    assert len(violations(wrong)) == len(wrong)
    right = [
        Import("loadtest.harness", "idnode.demo.DEMO_ADMIN", 1),
        Import("sync.toplevel.native", "resolver.handle.codec", 1),
        Import("resolver.resolution", "registry.store", 1),
        Import("registry.services.base", "registry.store", 1),
        Import("metrics.traffic", "collections", 1),
    ]
    assert violations(right) == []
    assert not under("registry.storehouse", "registry.store")


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_the_allowed_way(package: str) -> None:
    found = [i for i in all_imports() if under(i.module, package)]
    assert found, f"no imports found under {package}/"
    wrong = violations(found)
    assert not wrong, "imports against the rules:\n" + "\n".join(wrong)


def test_every_exception_is_still_needed() -> None:
    used = {exception_for(i) for i in all_imports() if not allowed(i)}
    assert set(EXCEPTIONS) <= used, f"unused: {set(EXCEPTIONS) - used}"
