"""What the user's modules imported and read as they loaded, and what a change reaches: the
bookkeeping of a warm standby (stdlib-only: it runs in the worker program).

A warm standby imports the app's own modules ahead of time, under an :class:`ImportRecorder`.
On a change, :func:`plan` says which of them the change reaches: the modules whose file
changed, those that read a changed file or listed its directory as they loaded, and every
module that imported one of those, directly or not. Only they are dropped (:func:`drop`) and
imported again; the rest stay warm. Where the record can't be sure, the plan is a full
re-import instead, in a fresh worker, with the reason for the log:

>>> record = Record(files={"app.models": "/p/app/models.py", "app.main": "/p/app/main.py"},
...                 order=["app.models", "app.main"], importers={"app.models": {"app.main"}})
>>> plan(record, ["/p/app/models.py"], exists=lambda path: True)
Warm(again=('app.models', 'app.main'))
>>> plan(record, ["/p/app/main.py"], exists=lambda path: True)
Warm(again=('app.main',))
>>> plan(record, ["/p/app/models.py"], exists=lambda path: False, root="/p").reason
'app/models.py was removed'
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, ModuleType
from typing import Any, cast

bootstrap: Any = importlib._bootstrap  # what import_module calls
__all__ = ["Full", "ImportRecorder", "Record", "Warm", "drop", "loaded_modules", "plan",
           "roots_of", "under", "user_modules"]  # fmt: skip


@dataclass
class Record:
    """What the recorded imports did. Paths are resolved (``os.path.realpath``)."""

    files: dict[str, str] = field(default_factory=dict)
    """Each user module's file."""
    order: list[str] = field(default_factory=list)
    """The user modules in the order they were loaded."""
    importers: dict[str, set[str]] = field(default_factory=dict)
    """For each user module, the user modules that imported it (bound it, or something of it)."""
    readers: dict[str, set[str]] = field(default_factory=dict)
    """For each file read as the modules loaded (not Python source), the modules that read it."""
    listers: dict[str, set[str]] = field(default_factory=dict)
    """For each directory listed as they loaded, the modules that listed it."""
    missing: set[str] = field(default_factory=set)
    """Modules a user module tried to import and could not find (``try: import x``)."""
    wrote: set[str] = field(default_factory=set)
    """Files the imports wrote: their change is this standby's doing, not the user's."""
    pinned: dict[str, str] = field(default_factory=dict)
    """User modules whose objects third-party state holds (Django's app registry, its settings),
    with the reason: what reaches them can't be imported again over that state."""


@dataclass(frozen=True)
class Warm:
    """Drop these modules (in load order) and import the app again over the rest."""

    again: tuple[str, ...]


@dataclass(frozen=True)
class Full:
    """Import everything again, in a fresh worker, because of ``reason``."""

    reason: str


def plan(
    record: Record,
    changed: Iterable[str],
    *,
    exists: Callable[[str], bool] = os.path.exists,
    root: str = "",
) -> Warm | Full:
    """What the change of ``changed`` (paths) needs; ``root``: where paths are shown from."""

    def shown(path: str) -> str:
        base = root.rstrip(os.sep) + os.sep
        return path[len(base) :] if root and path.startswith(base) else path

    by_file = {path: name for name, path in record.files.items()}
    reached: set[str] = set()
    for path in (os.path.realpath(p) for p in changed):
        if path in record.wrote:
            continue
        name = by_file.get(path)
        if name is not None:
            if not exists(path):
                return Full(f"{shown(path)} was removed")
            reached.add(name)
        elif _module_name(path, record) in record.missing:
            return Full(f"{shown(path)} is new, and was imported before in vain")
        reached |= record.readers.get(path, set())
        reached |= record.listers.get(os.path.dirname(path), set())
    again = _importers_of(reached, record.importers)
    for name in again:
        if name in record.pinned:
            return Full(f"{name} changed, and {record.pinned[name]}")
        if record.files[name].endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            return Full(f"{name} is a C extension")
    return Warm(tuple(n for n in record.order if n in again))


def _importers_of(names: set[str], importers: dict[str, set[str]]) -> set[str]:
    """``names`` and every module that imported one of them, directly or not."""
    seen = set(names)
    todo = list(names)
    while todo:
        for importer in importers.get(todo.pop(), ()):
            if importer not in seen:
                seen.add(importer)
                todo.append(importer)
    return seen


def _module_name(path: str, record: Record) -> str | None:
    """The name a new ``.py`` file would be imported as, judged from the recorded modules'
    files (its directory holds one of them)."""
    if not path.endswith(".py"):
        return None
    directory, stem = os.path.split(path[:-3])
    for name, file in record.files.items():
        if os.path.dirname(file) == directory:
            package = name if file.endswith("__init__.py") else name.rpartition(".")[0]
            return f"{package}.{stem}" if package else stem
    return stem


def drop(names: Sequence[str]) -> None:
    """Forget the modules ``names``, and their packages' attributes for them: ``from . import
    routes`` would otherwise take the old module from its package."""
    for name in names:
        module = sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        package = sys.modules.get(parent) if parent else None
        if module is not None and package is not None and getattr(package, child, None) is module:
            delattr(package, child)
    importlib.invalidate_caches()  # new files since the standby's imports: found


def user_modules(roots: tuple[str, ...]) -> list[str]:
    """The modules loaded from the user's code (files under ``roots``), in load order."""
    return loaded_modules(roots)[0]


def loaded_modules(roots: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The loaded modules with a file (not ``__main__`` nor ours), in one pass: the user's
    (under ``roots``) in load order, and the others (third-party), sorted."""
    users: list[str] = []
    others: list[str] = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or name.startswith("asyncreload"):
            continue
        (users if under(path, roots) else others).append(name)
    return users, sorted(others)


def roots_of(dirs: Sequence[str]) -> tuple[str, ...]:
    """``dirs`` as the roots :func:`under` takes: as given (absolute), each ending in a
    separator; never resolved here (a watched directory may lie on a mount that hangs)."""
    return tuple(d.rstrip(os.sep) + os.sep for d in dirs)


def under(path: str, roots: tuple[str, ...]) -> bool:
    """True if the file ``path`` lies in one of ``roots`` (each ending in a separator), as
    written or resolved."""
    path = os.path.abspath(path)
    if path.startswith(roots):
        return True
    directory, name = os.path.split(path)
    return os.path.join(_resolved(directory), name).startswith(roots)


@functools.lru_cache(maxsize=4096)
def _resolved(directory: str) -> str:
    # Once per directory: a worker asks for every loaded module (thousands, in a few hundred
    # directories), on its event loop, as it starts to serve.
    return os.path.realpath(directory)


_SOURCE = (".py", ".pyc")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class ImportRecorder:
    """While active (``with recorder:``), records into :attr:`record` who among the user's
    modules (files under ``roots``) imported whom, and what files and directories each read.

    The importer is the user module whose code runs the import (a ``from .models import User``,
    an ``import_module`` call in one of its functions); for an import made by a framework that a
    user module called (Django's ``include("polls.urls")``), the nearest user module on the
    stack, which gets what the framework returns. Python's audit hooks say what was opened and
    listed; they can't be removed, so the hook does nothing once recording has stopped.
    """

    def __init__(self, roots: Sequence[str], on_write: Callable[[str], None] | None = None) -> None:
        self.roots = roots_of(roots)
        self.on_write = on_write
        """Called with each file opened for writing, as it is (before it is written)."""
        self.record = Record()
        self._active = False
        self._user: dict[str, bool] = {}  # a code object's file -> under roots (a cache)
        self._users_module: dict[str, bool] = {}  # a module's name -> under roots (a cache)
        self._third_party: dict[str, bool] = {}  # top-level names known not to be the user's
        self._import = builtins.__import__
        # importlib.import_module's own step, looked up at each call: patching import_module
        # itself would miss every framework that took it before (``from importlib import
        # import_module`` in Django's include(), preloaded as third-party code).
        self._gcd_import = bootstrap._gcd_import
        self._hooked = False
        self._before: set[str] = set()

    def __enter__(self) -> ImportRecorder:
        # Loaded before the recording (by third-party code, as it was preloaded): not in the
        # record, so a change to one is never taken as warm (see the worker's stale check).
        self._before = set(user_modules(self.roots))
        self._active = True
        builtins.__import__ = self._recording_import
        bootstrap._gcd_import = self._recording_gcd_import
        if not self._hooked:
            sys.addaudithook(self._audit)
            self._hooked = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._active = False
        builtins.__import__ = self._import
        bootstrap._gcd_import = self._gcd_import
        self._note_files()

    # -- imports --

    def _recording_import(
        self,
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        try:
            module = self._import(name, globals, locals, fromlist or (), level)
        except ImportError as e:
            self._note_missing(e)
            raise
        if self._active:
            # ``import a.b`` returns ``a`` and uses ``a.b``; ``from .m import x`` returns ``m``.
            target = module.__name__ if fromlist or level else name
            self._note(sys._getframe(1), target, fromlist or ())
        return module

    def _recording_gcd_import(
        self, name: str, package: str | None = None, level: int = 0
    ) -> ModuleType:
        try:
            module = cast(ModuleType, self._gcd_import(name, package, level))
        except ImportError as e:
            self._note_missing(e)
            raise
        if self._active:
            self._note(sys._getframe(1), module.__name__, ())
        return module

    def _note(self, frame: FrameType | None, target: str, fromlist: Sequence[str]) -> None:
        top = target.partition(".")[0]
        if self._third_party.get(top, False):
            return  # the common case, first: a framework importing its own
        parts = target.split(".")
        names = [".".join(parts[: i + 1]) for i in range(len(parts))]
        names += [f"{target}.{item}" for item in fromlist if f"{target}.{item}" in sys.modules]
        # Only who imports the user's modules matters, and most imports are frameworks
        # importing their own (pydantic, in its functions): those cost no walk up the stack.
        names = [n for n in names if self._is_users(n)]
        if not names:
            return
        importer = self._importer(frame)
        if importer is None:
            return
        for name in names:
            if name != importer:
                self.record.importers.setdefault(name, set()).add(importer)

    def _is_users(self, name: str) -> bool:
        """True if the loaded module ``name`` is one of the user's (cached by name)."""
        known = self._users_module.get(name)
        if known is None:
            path = getattr(sys.modules.get(name), "__file__", None)
            known = self._users_module[name] = bool(path) and under(str(path), self.roots)
            if path and not known and "." not in name:
                # A top-level module from elsewhere: none of its submodules is the user's.
                self._third_party[name] = True
        return known

    def _note_missing(self, error: ImportError) -> None:
        if self._active and error.name and self._importer(sys._getframe(2)) is not None:
            self.record.missing.add(error.name)

    def _importer(self, frame: FrameType | None) -> str | None:
        """The user module whose code (or a call from it) is at ``frame`` or above it."""
        while frame is not None:
            filename = frame.f_code.co_filename
            user = self._user.get(filename)
            if user is None:
                user = self._user[filename] = os.path.isabs(filename) and under(
                    filename, self.roots
                )
            if user:
                name = frame.f_globals.get("__name__")
                return name if isinstance(name, str) else None
            frame = frame.f_back
        return None

    # -- files --

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._active or event not in ("open", "os.listdir", "os.scandir"):
            return
        path = args[0] if args else None
        if not isinstance(path, str):
            return  # a descriptor, bytes
        with contextlib.suppress(Exception):  # an audit hook must never break the app
            if event == "open":
                mode, flags = args[1], args[2]
                writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and mode is None and flags & _WRITE_FLAGS
                )
                if writes:  # a generated module too
                    written = os.path.realpath(path)
                    if written not in self.record.wrote:
                        self.record.wrote.add(written)
                        if self.on_write is not None:
                            self.on_write(written)
                    return
                table = self.record.readers
            else:
                table = self.record.listers
            if path.endswith(_SOURCE):
                return  # Python source read: the imports say who needs that
            reader = self._importer(sys._getframe(1))
            if reader is not None:
                table.setdefault(os.path.realpath(path), set()).add(reader)

    def _note_files(self) -> None:
        """The user modules loaded so far, and their files (once the recording ends: resolving
        paths while importing would slow every import)."""
        for name in user_modules(self.roots):
            module = sys.modules[name]
            if name not in self.record.files and name not in self._before:
                self.record.files[name] = os.path.realpath(module.__file__ or "")
                self.record.order.append(name)
        # Who imported a third-party module never matters: only the user's modules change.
        importers = self.record.importers
        for name in [n for n in importers if n not in self.record.files]:
            del importers[name]


@contextlib.contextmanager
def pinning_django(record: Record) -> Iterator[None]:
    """While active, marks the user modules that Django's app registry imports as it populates
    (models, app configs, admin modules: their classes live in the registry) and its settings
    module as pinned. Does nothing where Django was not imported before."""
    registry = sys.modules.get("django.apps.registry")
    if registry is None:
        yield
        return
    apps_class = registry.Apps
    populate = apps_class.populate
    before: set[str] = set()

    def recording_populate(self: Any, installed_apps: Any = None) -> Any:
        loaded = set(sys.modules)
        try:
            return populate(self, installed_apps)
        finally:
            before.update(set(sys.modules) - loaded)

    apps_class.populate = recording_populate
    try:
        yield
    finally:
        apps_class.populate = populate
        for name in before:
            record.pinned.setdefault(name, "Django's app registry holds its classes")
        settings = os.environ.get("DJANGO_SETTINGS_MODULE")
        if settings:
            record.pinned.setdefault(settings, "it is Django's settings module")
