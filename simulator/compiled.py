"""An optional compiled build of the market core for long simulator runs (mypyc), beside the
pure-Python modules, which stay the reference: nothing here runs unless asked for.

    python -m simulator.compiled build [--out build/compiled]   # needs mypyc (mypy) and a C compiler
    python -m simulator.compiled check [--out build/compiled]   # usable with this source tree?
    python bench/bench_sim.py --compiled build/compiled          # a run on the compiled modules
    gpumarket simulate --compiled build/compiled                 # (or GPUMARKET_COMPILED=DIR)

`build` compiles a copy of the sources (nothing is written beside the .py files, so no
extension module can shadow an edited source) into its own folder, with a manifest of the
sources' SHA-256. `activate` puts those extension modules in front of the sources for this
process only, and only when every compiled module's source is unchanged, none of them is
imported yet and the Python version matches; otherwise it says why and the pure-Python modules
run. Same scenario and seed, same results either way (tests/sim/test_compiled.py).

This module imports nothing of ours: it must run before the market core is first imported.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TypedDict

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "build" / "compiled"
MANIFEST = "manifest.json"
# what the simulator's hot path runs through: the market core (its manifest parser aside, which
# runs once per scenario and which mypyc does not compile)
PACKAGES = ("marketplace/core",)
# read before a build can be activated (the scenario's error messages): never compiled
PURE = ("__init__.py", "quoting.py")


class Entry(TypedDict):
    source: str  # relative to the repository
    sha256: str
    extension: str  # relative to the build folder


class Manifest(TypedDict):
    python: str  # the interpreter's cache tag (cpython-311)
    modules: dict[str, Entry]  # by module name


def sources(root: Path = REPO) -> list[Path]:
    """The compiled modules' sources, relative to `root`."""
    found: list[Path] = []
    for package in PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            if path.name not in PURE:
                found.append(path.relative_to(root))
    return found


def module_name(source: Path) -> str:
    return ".".join(source.with_suffix("").parts)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path = DEFAULT_OUT) -> Manifest:
    """Compile a copy of the sources with mypyc into `out` (replaced) with its manifest.
    Raises CalledProcessError when mypyc or the C compiler fails (its output goes to stderr)."""
    files = sources()
    with tempfile.TemporaryDirectory(prefix="gpumarket-mypyc-") as scratch:
        work = Path(scratch)
        shutil.copy2(REPO / "pyproject.toml", work / "pyproject.toml")  # mypy's settings
        for package in ("marketplace",):
            shutil.copytree(
                REPO / package, work / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        command = [sys.executable, "-m", "mypyc", *map(str, files)]
        subprocess.run(command, cwd=work, check=True, stdout=sys.stderr)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        # the group's shared runtime module sits at the top (its name is a hash of the group)
        for shared in work.glob("*__mypyc.*"):
            shutil.copy2(shared, out / shared.name)
        modules: dict[str, Entry] = {}
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        for source in files:
            extension = source.with_suffix(suffix)
            (out / extension).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / extension, out / extension)
            modules[module_name(source)] = Entry(
                source=str(source), sha256=digest(REPO / source), extension=str(extension)
            )
    manifest = Manifest(python=sys.implementation.cache_tag or "", modules=modules)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
    return manifest


def problem(out: Path) -> str | None:
    """Why the build in `out` cannot run in this process now; None when it can."""
    path = out / MANIFEST
    if not path.is_file():
        return f"no compiled build in {out} (python -m simulator.compiled build)"
    manifest: Manifest = json.loads(path.read_text("utf-8"))
    if manifest["python"] != sys.implementation.cache_tag:
        return f"{out} was built for {manifest['python']}, this is {sys.implementation.cache_tag}"
    for name, entry in manifest["modules"].items():
        source = REPO / entry["source"]
        if not source.is_file() or digest(source) != entry["sha256"]:
            return f"{entry['source']} changed since {out} was built: rebuild it"
        if not (out / entry["extension"]).is_file():
            return f"{out / entry['extension']} is missing: rebuild it"
        if name in sys.modules:
            return f"{name} is imported already: activate before the market core loads"
    return None


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the listed modules as their extension modules; leaves every other name alone."""

    def __init__(self, build: Path, extensions: dict[str, Path]) -> None:
        self.build = build
        self.extensions = extensions

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        extension = self.extensions.get(fullname)
        if extension is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(extension))
        return importlib.util.spec_from_file_location(fullname, extension, loader=loader)


def activate(out: Path = DEFAULT_OUT) -> str | None:
    """Run the compiled modules in `out` in place of their sources, in this process. Returns
    None when they will, else why not (and the pure-Python modules run)."""
    reason = problem(out)
    if reason is not None:
        return reason
    manifest: Manifest = json.loads((out / MANIFEST).read_text("utf-8"))
    extensions = {name: out / e["extension"] for name, e in manifest["modules"].items()}
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return "a compiled build is active already"
    sys.path.append(str(out))  # the group's shared runtime module (a unique, hashed name)
    sys.meta_path.insert(0, _Finder(out, extensions))
    return None


def active() -> Path | None:
    """The build this process runs on (activate succeeded), or None: the pure-Python core.
    Worker processes started afresh (not forked) activate it too (simulator.sweep)."""
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            return finder.build
    return None


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` was loaded from an extension module (a compiled build)."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.compiled", description=__doc__)
    parser.add_argument("command", choices=("build", "check"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the build's folder")
    args = parser.parse_args(argv)
    if args.command == "build":
        if not (REPO / "pyproject.toml").is_file():
            print(
                f"compiled build failed: it builds from a source checkout, and {REPO} is an "
                "installed copy: run it in a clone of gpumarket",
                file=sys.stderr,
            )
            return 1
        try:
            manifest = build(args.out)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            print(f"compiled build failed: {exc}", file=sys.stderr)
            return 1
        print(f"{len(manifest['modules'])} modules compiled into {args.out}")
        return 0
    reason = problem(args.out)
    print(reason or f"{args.out} matches these sources")
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
