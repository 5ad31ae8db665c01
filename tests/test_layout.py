"""The package's layout: the rooms (_watch, _run, _serve, cli) meet only through each room's
interface, the child programs stand apart, and the public modules export what they say."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "asyncreload"
ROOMS = ("_watch", "_run", "_serve")
"""Subpackages that others may use only through their ``__init__``."""
PROGRAMS = {"_run/guard_program.py", "_serve/worker_program.py"}
"""Run as processes of their own."""
PARTS = {
    "_run/guard_keeper.py": "asyncreload._run.guard_keeper",
    "_run/guard_sentinel.py": "asyncreload._run.guard_sentinel",
    "_run/guard_spawn.py": "asyncreload._run.guard_spawn",
    "_run/guard_stop.py": "asyncreload._run.guard_stop",
    "_run/guard_terminal.py": "asyncreload._run.guard_terminal",
}
"""Modules of a program, split out of it: standard library only too. The guard imports its parts
as top-level modules, as it does what it shares with the parent."""
SHARED = {
    "_wire.py": "asyncreload._wire",
    "_subreaper.py": "asyncreload._subreaper",
    "_run/guard_protocol.py": "asyncreload._run.guard_protocol",
    "_serve/worker_protocol.py": "asyncreload._serve.worker_protocol",
    "_browser_script.py": "asyncreload._browser_script",
    "_serve/live.py": "asyncreload._serve.live",
    "_serve/static_dirs.py": "asyncreload._serve.static_dirs",
    "_serve/imports.py": "asyncreload._serve.imports",
    "_serve/uvicorn_parts.py": "asyncreload._serve.uvicorn_parts",
}
"""What the programs share with the parent that starts them (framing, process trees, their
protocols): standard library only too. The guard imports them as top-level modules."""
CROSSINGS: set[tuple[str, str]] = set()
"""Known imports of another room's insides."""
WORKER_NEEDS = {"uvicorn", "a2wsgi", "dotenv"}
"""What the worker imports besides the standard library: it is a uvicorn worker (dotenv: for
``--env-file``, as uvicorn reads it)."""
PUBLIC = ("asyncreload", "asyncreload.filters")


def _modules() -> list[tuple[str, str, ast.Module]]:
    """(path under the package, dotted name, syntax tree) of every module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        parts = ["asyncreload", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found.append((rel, ".".join(parts), ast.parse(path.read_text())))
    return found


def _imports(rel: str, name: str, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(absolute module, names taken from it) for every import in the module, nested ones too."""
    package = name if rel.endswith("__init__.py") else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((module, [alias.name for alias in node.names]))
    return out


def _room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def test_no_room_reaches_into_another() -> None:
    crossings = set()
    for rel, name, tree in _modules():
        for module, _names in _imports(rel, name, tree):
            room = _room(module)
            inside = len(module.split(".")) > 2  # asyncreload._watch.plan, not asyncreload._watch
            if room is not None and inside and _room(name) != room:
                crossings.add((rel, module))
    assert crossings == CROSSINGS


def test_what_a_room_gives_is_in_its_all() -> None:
    exported = {room: set(importlib.import_module(f"asyncreload.{room}").__all__) for room in ROOMS}
    missing = set()
    for rel, name, tree in _modules():
        for module, names in _imports(rel, name, tree):
            room = _room(module)
            if room is not None and module == f"asyncreload.{room}" and _room(name) != room:
                missing |= {(rel, n) for n in names if n not in exported[room]}
    assert not missing


@pytest.mark.parametrize("program", sorted(PROGRAMS | set(SHARED) | set(PARTS)))
def test_the_child_programs_import_the_standard_library_only(program: str) -> None:
    rel, name, tree = next(m for m in _modules() if m[0] == program)
    shared = set(SHARED.values()) | set(PARTS.values())
    shared |= {m.rpartition(".")[2] for m in shared}  # as the guard imports them
    others = set()
    for module, names in _imports(rel, name, tree):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        if module in shared or {f"{module}.{n}" for n in names} <= shared:
            continue
        if top in (WORKER_NEEDS if "worker" in rel or "uvicorn" in rel else set()):
            continue
        others.add(module)
    assert not others


def test_the_guard_starts_without_third_party_packages(tmp_path: Path) -> None:
    # As the guard is started, with site-packages hidden too (-S): its imports all resolve from
    # the standard library and CONFIG's path. It then fails at the first thing it does, on the
    # socket it was not given.
    from asyncreload._run.process import GUARD, GUARD_PATH

    config = json.dumps({"fd": 987, "path": GUARD_PATH})
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(GUARD), config],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert "ImportError" not in done.stderr and "ModuleNotFoundError" not in done.stderr
    assert "Bad file descriptor" in done.stderr, done.stderr


def _offered(path: Path) -> set[str]:
    """The public names a module makes at its top level; a package's ``__init__`` also offers
    what it imports (that is why it imports it)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom) and path.name == "__init__.py" and node.level:
            names |= {alias.asname or alias.name for alias in node.names}
    return {n for n in names if not n.startswith("_") or n == "__version__"}


@pytest.mark.parametrize("name", [*PUBLIC, *(f"asyncreload.{room}" for room in ROOMS)])
def test_all_names_exactly_what_the_module_offers(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    listed = set(module.__all__)
    assert {n for n in listed if not hasattr(module, n)} == set()
    assert _offered(Path(module.__file__)) - listed == set()
