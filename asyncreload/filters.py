"""Which paths are worth reporting: default ignores plus the user's include/exclude globs.

The same :class:`PathFilter` is applied to both sources (the stat poller prunes ignored
directories instead of walking them; the event stream drops what it reports under them), so a
path is either watched by both ways of looking or by neither.

Paths are matched relative to the watched root they were found under, so watching a project that
happens to live in, say, ``~/venv/src/app`` does not ignore everything.

>>> f = PathFilter(exclude=["*.log", "docs/_build"])
>>> f("app/main.py"), f("app/__pycache__/main.cpython-311.pyc"), f("server.log")
(True, False, False)
>>> f("docs/_build/index.html"), f(".git/index"), f("src/.main.py.swp")
(False, False, False)
>>> PathFilter(include=["*.py"])("static/site.css")
False
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from functools import lru_cache

from . import _platform

__all__ = ["DEFAULT_IGNORE_DIRS", "DEFAULT_IGNORE_GLOBS", "PathFilter"]

DEFAULT_IGNORE_DIRS: frozenset[str] = frozenset(
    {
        # version control
        ".git", ".hg", ".svn", ".bzr", "_darcs", ".jj",
        # bytecode and virtual environments
        "__pycache__", ".venv", "venv", ".virtualenv", "site-packages",
        # package managers and tool caches
        "node_modules", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
        ".hypothesis", ".pytype", ".pyre", ".cache", ".eggs", ".ipynb_checkpoints",
        # editors
        ".idea", ".vscode",
    }
)  # fmt: skip
"""Directory names never walked nor reported, at any depth below a watched root."""

DEFAULT_IGNORE_GLOBS: tuple[str, ...] = (
    # bytecode and build litter
    "*.py[cod]", "*.so.tmp", "*.egg-info",
    # editors: vim swap and backup, emacs backup/lock/autosave, JetBrains safe-write,
    # Kate/gedit/VS Code temporaries, macOS metadata
    "*.sw[a-p]", "*.swx", "*~", ".#*", "#*#", "*___jb_tmp___", "*___jb_old___",
    "*.kate-swp", ".goutputstream-*", "*.tmp", "4913", ".DS_Store",
    # coverage data written while tests run
    ".coverage", ".coverage.*",
    # what a running app writes into its own tree: databases, their journals, logs (each
    # write would restart the app, which writes again)
    "*.sqlite3", "*.sqlite", "*.db", "*-journal", "*-wal", "*-shm", "*.log",
)  # fmt: skip
"""File name globs never reported."""


@lru_cache(maxsize=256)
def _compile(glob: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(glob))


class PathFilter:
    """Decides whether a path (relative to its watched root, ``/``-separated) is reported.

    A glob without ``/`` is matched against a single name: an ``exclude`` or default-ignore glob
    against every component of the path (so ``--exclude build`` prunes a ``build`` directory at
    any depth), an ``include`` glob against the file's own name. A glob with ``/`` is matched
    against the whole relative path (``*`` crosses ``/`` there). Directories are always walked
    when ``include`` is given; only the files in them are narrowed.

    On Windows a ``\\`` in a glob separates as ``/`` does (``src\\*.py``, ``docs\\_build``), since
    paths are written so there; elsewhere it stays a character of the name, as :mod:`fnmatch`
    has it (POSIX names may hold one).
    """

    __slots__ = ("_exclude_names", "_exclude_paths", "_ignore_dirs", "_include_names",
                 "_include_paths", "default_ignores", "exclude", "include")  # fmt: skip

    def __init__(
        self,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        default_ignores: bool = True,
    ) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.default_ignores = default_ignores
        include, exclude = _spelled(self.include), _spelled(self.exclude)
        self._ignore_dirs = DEFAULT_IGNORE_DIRS if default_ignores else frozenset()
        names = [g for g in exclude if "/" not in g]
        if default_ignores:
            names += DEFAULT_IGNORE_GLOBS
        self._exclude_names = _union(names)
        # "docs/_build" excludes what is below it too
        path_globs = [g.strip("/") for g in exclude if "/" in g]
        self._exclude_paths = _union(path_globs + [g + "/*" for g in path_globs])
        self._include_names = _union(g for g in include if "/" not in g)
        self._include_paths = _union(g.strip("/") for g in include if "/" in g)

    def __repr__(self) -> str:
        return (
            f"PathFilter(include={list(self.include)!r}, exclude={list(self.exclude)!r}, "
            f"default_ignores={self.default_ignores!r})"
        )

    def __call__(self, relpath: str, *, is_dir: bool = False) -> bool:
        """True if a change at ``relpath`` should be reported (or the directory walked)."""
        if not relpath or relpath == ".":
            return True
        parts = relpath.split("/")
        for part in parts:
            if part in self._ignore_dirs or _matches(self._exclude_names, part):
                return False
        if _matches(self._exclude_paths, relpath):
            return False
        if is_dir or not (self._include_names or self._include_paths):
            return True
        return _matches(self._include_names, parts[-1]) or _matches(self._include_paths, relpath)

    def walks(self, relpath: str) -> bool:
        """True if the directory at ``relpath`` should be walked (the poller prunes the rest)."""
        return self(relpath, is_dir=True)


def _spelled(globs: tuple[str, ...]) -> tuple[str, ...]:
    """The globs as matched against ``/``-separated relative paths: Windows's ``\\`` made ``/``
    (read at each filter made, so a test can set :data:`asyncreload._platform.WINDOWS`)."""
    if not _platform.WINDOWS:
        return globs
    return tuple(g.replace("\\", "/") for g in globs)


def _union(globs: Iterable[str]) -> re.Pattern[str] | None:
    patterns = [_compile(g).pattern for g in globs if g]
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _matches(pattern: re.Pattern[str] | None, text: str) -> bool:
    return pattern is not None and pattern.match(text) is not None
