"""The dependency rule, checked over the real source: no module imports one from a layer above
it or from a sibling beside it, and the pure parts load none of the heavy outside libraries.

    layer 5  marketplace.cli                                    the commands (click), the demo
    layer 4  marketplace.server | provider_agent | simulator    the three programs, and the web
             | marketplace.console                              console (a gRPC client, like cli)
    layer 3  marketplace.api                                    the wire: convert, status, envelope, client
    layer 2  marketplace.identity | marketplace.terminal | marketplace.polling
    layer 1  marketplace.userfiles                              files users name, read bounded
    layer 0  marketplace.core                                   the market's rules, pure

A module may import its own component (the same row entry) and anything in a lower layer;
never a higher layer, never a sibling in the same layer (the agent imports no server, the
simulator no agent).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

LAYERS: tuple[tuple[str, ...], ...] = (
    ("marketplace.core",),
    ("marketplace.userfiles",),
    ("marketplace.identity", "marketplace.terminal", "marketplace.polling"),
    ("marketplace.api",),
    ("marketplace.server", "provider_agent", "simulator", "marketplace.console"),
    ("marketplace.cli",),
)
SOURCE_ROOTS = ("marketplace", "provider_agent", "simulator")
# Packages that only hold components: importing one loads nothing of ours (checked below).
NAMESPACES = ("marketplace",)

# Imports that break the rule today and belong to another change; each names who fixes it.
# Remove an entry once its import is gone (the test says so when an entry goes stale).
# (importing module, imported module)
KNOWN_EXCEPTIONS: list[tuple[str, str]] = []


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str  # file:line

    @property
    def pair(self) -> tuple[str, str]:
        return (self.importer, self.imported)


def component_of(module: str) -> str | None:
    matches = [c for layer in LAYERS for c in layer if module == c or module.startswith(c + ".")]
    return max(matches, key=len) if matches else None


def layer_of(component: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if component in layer)


def source_files() -> list[Path]:
    """Every .py of ours, generated protobuf code aside."""
    files = [p for root in SOURCE_ROOTS for p in sorted((REPO / root).rglob("*.py"))]
    return [p for p in files if "_pb2" not in p.name]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_ours(module: str) -> bool:
    return module.split(".")[0] in SOURCE_ROOTS


def project_imports(path: Path) -> list[Import]:
    """Every import of ours in the file, lazy ones inside functions included."""
    known = {module_name(p) for p in source_files()}
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [Import(importer, a.name, where) for a in node.names if is_ours(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            if not is_ours(base):
                continue
            for alias in node.names:  # `from marketplace import identity` imports a module
                submodule = f"{base}.{alias.name}"
                found.append(Import(importer, submodule if submodule in known else base, where))
    return found


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def violation(imp: Import) -> str | None:
    """Why this import breaks the rule, or None when it keeps it."""
    if imp.imported in NAMESPACES:
        return None
    source, target = component_of(imp.importer), component_of(imp.imported)
    if source is None:
        return f"{imp.importer} is in no layer: add it to LAYERS"
    if target is None:
        return f"{imp.imported} is in no layer: add it to LAYERS"
    if source == target or layer_of(target) < layer_of(source):
        return None
    direction = "up" if layer_of(target) > layer_of(source) else "sideways"
    return (
        f"{source} (layer {layer_of(source)}) imports {direction} into "
        f"{target} (layer {layer_of(target)})"
    )


def test_no_module_imports_from_a_layer_above_or_beside_it() -> None:
    imports = [imp for path in source_files() for imp in project_imports(path)]
    assert len({imp.importer for imp in imports}) > 30, "the scan found too little source"
    broken = [(imp, why) for imp in imports if (why := violation(imp))]
    unexpected = [
        f"{imp.where}: `{imp.importer}` imports `{imp.imported}`: {why}"
        for imp, why in broken
        if imp.pair not in KNOWN_EXCEPTIONS
    ]
    assert not unexpected, "imports against the layering:\n" + "\n".join(unexpected)
    stale = set(KNOWN_EXCEPTIONS) - {imp.pair for imp, _ in broken}
    assert not stale, f"fixed, remove from KNOWN_EXCEPTIONS: {sorted(stale)}"


def test_every_module_of_ours_has_a_layer() -> None:
    unplaced = [
        module_name(p)
        for p in source_files()
        if module_name(p) not in NAMESPACES and component_of(module_name(p)) is None
    ]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_namespace_packages_import_nothing_of_ours() -> None:
    for name in NAMESPACES:
        init = REPO / name.replace(".", "/") / "__init__.py"
        assert project_imports(init) == [], f"{init} must stay a bare namespace"


def test_the_rule_catches_an_upward_import_and_says_where() -> None:
    imp = Import("provider_agent.cli", "marketplace.cli.tenant", "provider_agent/cli.py:12")
    assert violation(imp) == ("provider_agent (layer 4) imports up into marketplace.cli (layer 5)")
    beside = Import("provider_agent.link", "marketplace.server.app", "provider_agent/link.py:3")
    assert "sideways" in (violation(beside) or "")
    assert violation(Import("marketplace.cli.demo", "provider_agent.runtime", "-")) is None


# --- what importing loads ----------------------------------------------------------------------

# Runs in a fresh interpreter: imports every module of the given packages and reports, for each
# forbidden library that got loaded, the first line of our code that pulled it in.
PROBE = r"""
import importlib, json, pkgutil, sys
from pathlib import Path

packages, forbidden, repo = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
culprit = {}

class Spy:
    def find_spec(self, name, path=None, target=None):
        top = next((f for f in forbidden if name == f or name.startswith(f + ".")), None)
        if top is not None and top not in culprit:
            frame = sys._getframe(1)
            while frame is not None:
                file = frame.f_code.co_filename
                if file.startswith(repo) and "/tests/" not in file:
                    culprit[top] = f"{Path(file).relative_to(repo)}:{frame.f_lineno}"
                    break
                frame = frame.f_back
            else:
                culprit[top] = "outside our code"
        return None

sys.meta_path.insert(0, Spy())
for package in packages:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), package + "."):
        if "_pb2" not in info.name:
            importlib.import_module(info.name)
loaded = {f: culprit.get(f, "before our code ran") for f in forbidden if f in sys.modules}
print(json.dumps(loaded))
"""

CLEAN_IMPORTS = [
    pytest.param(
        ["marketplace.core"],
        ["grpc", "google.protobuf", "docker", "pynvml", "sqlite3", "simpy"],
        id="core-is-pure",
    ),
    pytest.param(["simulator"], ["grpc", "google.protobuf", "docker", "pynvml"], id="simulator"),
    pytest.param(["provider_agent"], ["marketplace.server"], id="agent-without-server"),
    pytest.param(
        ["marketplace.console"],
        ["marketplace.server", "provider_agent", "simulator", "docker", "pynvml", "simpy"],
        id="console-is-a-client",
    ),
]


@pytest.mark.parametrize(("packages", "forbidden"), CLEAN_IMPORTS)
def test_importing_loads_nothing_forbidden(packages: list[str], forbidden: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(packages), json.dumps(forbidden), f"{REPO}/"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert not loaded, f"importing {packages} loaded " + ", ".join(
        f"{name} (first imported at {where})" for name, where in loaded.items()
    )
