"""The reloaders under test, and the tiny project each one runs.

Two kinds: *restarters* run ``bench_script.py`` and start it again on a change (edit to a
restarted process); *servers* serve ``main.py`` (ASGI) or ``flask_app.py`` (WSGI) over HTTP and
reload it (edit to the first response with the new code). Each runs with its default settings,
in a fresh project directory of its own, from a command line a user would type.

Every edit is an editor's atomic save: the new text goes to a temporary file beside the module,
which is then renamed over it. Each edit's version string is one character longer than the
previous one, so the module's size changes with every edit (see :class:`Versions`).
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import socket
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._trees import Tree, generate

__all__ = [
    "RESTARTERS",
    "SERVERS",
    "ReloadSettings",
    "Reloader",
    "Versions",
    "free_port",
    "reloader_env",
    "same_second_mtime_ns",
    "select_reloaders",
    "watchdog_installed",
    "write_module",
    "write_project",
]

APPS = Path(__file__).parent / "apps"

VERSION_MODULE = "bench_version.py"
"""The module ``bench_script.py`` imports; the restart measurement edits it."""
TREE = "tree"
"""A generated tree of modules in the restart project, for the burst to rewrite and add to."""


@dataclass(frozen=True)
class ReloadSettings:
    """How much to measure in the restart and serve measurements (``--quick`` differs here)."""

    trials: int = 10
    """Edits per reloader."""
    spacing: tuple[float, float] = (0.6, 1.2)
    """Random pause (seconds) after the new code ran and before the next edit: the previous
    reload settles, and a poller's next edit lands at a random phase of its cycle."""
    deadline: float = 10.0
    """An edit whose new code has not run within this many seconds is "missed"."""
    start_deadline: float = 60.0
    tree_files: int = 1_000
    burst_files: int = 2_000
    burst_quiet: tuple[float, float] = (2.0, 2.0)
    """A burst is over after this long without a restart: (at least seconds, times the slowest
    edit's latency), as for the watchers' burst."""
    floor_runs: int = 3
    """Bare starts of ``bench_script.py`` without a reloader, for the floor."""
    poll_interval: float = 0.005
    """The HTTP client's pause between two requests."""


@dataclass(frozen=True)
class Reloader:
    """One reloader configuration: a command line to run in the project directory."""

    name: str
    """Short name, used by ``--peers``."""
    label: str
    argv: tuple[str, ...]
    """The command; ``{python}`` is this interpreter, ``{scripts}`` its scripts directory,
    ``{port}`` a free port."""
    edits: str = VERSION_MODULE
    """The file each edit rewrites (relative to the project)."""
    template: str | None = None
    """The app in ``apps/`` that ``edits`` is made from; None: the one-line version module."""
    app: str = ""
    """For servers: which app it serves (ASGI or Flask)."""
    ours: bool = False
    compare_to: str | None = None
    """Servers: the peer serving the same app, whose figures this row's ratios are to."""
    requires: tuple[str, ...] = ()
    """Modules that must be importable, else the row is skipped (with the reason)."""
    settle: float = 0.0
    """Seconds added to the pause before the first edit: how long after its first start this
    reloader needs before it can notice a change to the edited file (a sooner edit is lost)."""

    def command(self, port: int = 0) -> list[str]:
        fields = {
            "python": sys.executable,
            "scripts": sysconfig.get_path("scripts"),
            "port": str(port),
        }
        return [arg.format(**fields) for arg in self.argv]

    def text(self, version: str) -> str:
        """The source of the edited module at ``version``."""
        line = f'VERSION = "{version}"\n'
        if self.template is None:
            return line
        template = (APPS / self.template).read_text()
        marker = 'VERSION = "v0"\n'
        if marker not in template:
            raise ValueError(f"no {marker.strip()!r} line in {self.template}")
        return template.replace(marker, line, 1)

    def missing(self) -> str | None:
        """Why this reloader can't run here (a module is not installed), or None."""
        absent = [m for m in self.requires if importlib.util.find_spec(m) is None]
        return f"{', '.join(absent)} not installed" if absent else None


_HOST = ("--host", "127.0.0.1", "--port", "{port}")

RESTARTERS: tuple[Reloader, ...] = (
    Reloader(
        "asyncreload-run",
        "asyncreload run",
        ("{python}", "-m", "asyncreload", "run", "--", "{python}", "bench_script.py"),
        ours=True,
    ),
    Reloader(
        "watchfiles-cli",
        "watchfiles CLI",
        ("{python}", "-m", "watchfiles", "{python} bench_script.py", "."),
        requires=("watchfiles",),
    ),
    # hupper has no ``python -m hupper``: its console script (whose #! is this interpreter).
    # Its worker reports the imported files once a second, and the monitor takes a new file's
    # first mtime as the baseline on its next pass (1 s): an edit within ~2 s of the first start
    # is lost. The monitor outlives the workers, so later restarts need no such pause.
    Reloader(
        "hupper-cli",
        "hupper -m",
        ("{scripts}/hupper", "-m", "bench_script"),
        requires=("hupper",),
        settle=2.5,
    ),
    Reloader(
        "werkzeug-reloader",
        "werkzeug run_with_reloader",
        ("{python}", "werkzeug_main.py"),
        requires=("werkzeug",),
    ),
)

SERVERS: tuple[Reloader, ...] = (
    Reloader(
        "uvicorn-reload",
        "uvicorn --reload",
        ("{python}", "-m", "uvicorn", "main:app", "--reload", *_HOST),
        edits="main.py",
        template="asgi_app.py",
        app="ASGI",
        requires=("uvicorn",),
    ),
    Reloader(
        "asyncreload-serve",
        "asyncreload serve",
        ("{python}", "-m", "asyncreload", "serve", "main:app", *_HOST),
        edits="main.py",
        template="asgi_app.py",
        app="ASGI",
        ours=True,
        compare_to="uvicorn-reload",
    ),
    Reloader(
        "flask-reload",
        "flask run --reload",
        ("{python}", "-m", "flask", "--app", "flask_app", "run", "--reload", *_HOST),
        edits="flask_app.py",
        template="flask_app.py",
        app="Flask",
        requires=("flask",),
    ),
    Reloader(
        "asyncreload-serve-flask",
        "asyncreload serve",
        ("{python}", "-m", "asyncreload", "serve", "flask_app:app", *_HOST),
        edits="flask_app.py",
        template="flask_app.py",
        app="Flask",
        ours=True,
        compare_to="flask-reload",
        requires=("flask",),
    ),
)


def select_reloaders(registry: Sequence[Reloader], names: list[str] | None) -> list[Reloader]:
    """The reloaders named (all if None), in the registry's order; names it lacks are ignored
    (``--peers`` names watchers and reloaders alike, and the caller checks them all)."""
    return [r for r in registry if names is None or r.name in names]


def watchdog_installed() -> bool:
    """With watchdog installed, hupper and werkzeug (Flask) use it instead of polling."""
    return importlib.util.find_spec("watchdog") is not None


def reloader_env() -> dict[str, str]:
    """The environment every reloader runs in: Python's defaults, and each peer's defaults.

    ``PYTHONDONTWRITEBYTECODE`` (and ``PYTHONPYCACHEPREFIX``) are removed, so every process
    writes and reads ``__pycache__`` as Python does by default: stale bytecode is part of what
    a reload must get right. Variables that would change a peer's settings are removed too;
    ``ASYNCRELOAD_*`` passes through on purpose (to measure a tuning).
    """
    drop = ("WATCHFILES_", "HUPPER_", "WERKZEUG_", "FLASK_", "UVICORN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    return env


class Versions:
    """Version strings whose length grows by one each time: ``v1-x``, ``v2-xx``, ...

    A module rewritten with the next one always changes size, so CPython's bytecode cache (keyed
    on the source's mtime in whole seconds and its size) can't mistake it for the previous one.
    :meth:`same_size` gives the deliberate exception.
    """

    def __init__(self) -> None:
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"v{self._n}-" + "x" * self._n

    @staticmethod
    def same_size(version: str) -> str:
        """A different version of the same length (``v3-xxx`` -> ``s3-xxx``)."""
        return "s" + version[1:]


def write_module(path: Path, text: str, *, mtime_ns: int | None = None) -> float:
    """Save ``text`` as an editor does (a temporary file renamed over ``path``); return the
    monotonic time just before. ``mtime_ns`` sets the new file's mtime before the rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    t0 = time.monotonic()
    tmp.write_text(text)
    if mtime_ns is not None:
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
    tmp.replace(path)
    return t0


def same_second_mtime_ns(path: Path) -> int:
    """An mtime 1 ms after ``path``'s, in the same whole second: as a second save within that
    second would leave it. The caller starts the first save early in a second."""
    mtime_ns = os.stat(path).st_mtime_ns
    later = mtime_ns + 1_000_000
    if later // 10**9 != mtime_ns // 10**9:
        raise ValueError("the first save was too late in its second")
    return later


def write_project(root: Path, *, tree_files: int, seed: str) -> Tree | None:
    """A fresh project: the script, its version module, the apps, and (``tree_files`` > 0) a
    tree of modules for the burst, which is returned."""
    root.mkdir(parents=True)
    shutil.copyfile(APPS / "restart_script.py", root / "bench_script.py")
    shutil.copyfile(APPS / "werkzeug_main.py", root / "werkzeug_main.py")
    (root / VERSION_MODULE).write_text('VERSION = "v0"\n')
    (root / "main.py").write_text((APPS / "asgi_app.py").read_text())
    (root / "flask_app.py").write_text((APPS / "flask_app.py").read_text())
    if tree_files <= 0:
        return None
    write_root = str(root / TREE)
    os.mkdir(write_root)
    files, dirs = generate(write_root, tree_files, random.Random(seed))
    return Tree(
        f"restart project, {tree_files:,} files",
        "local",
        tree_files,
        write_root,
        write_root,
        files,
        dirs,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
