"""The watcher's options, once: as typed keyword arguments, and as the one table that every
front end (the command line's flags, ``[tool.asyncreload]``'s keys, ``serve``) is made from.

:func:`~asyncreload.open_watcher` takes them by name; :func:`~asyncreload.awatch`,
:class:`~asyncreload.ProcessRunner` and :func:`~asyncreload.run_process` forward them with
``**options: Unpack[WatcherOptions]``, so that mypy checks each name and type at every call.
:data:`OPTIONS` says how each is written outside Python, with its help; tests hold the
TypedDict, :func:`open_watcher`'s signature and the table equal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from ..filters import PathFilter
from .config import DEFAULTS
from .merge import BURST_DEBOUNCE, BURST_PATHS

__all__ = [
    "OPTIONS",
    "Option",
    "StrPath",
    "WatcherOptions",
    "keywords_from",
    "take_watcher_options",
]

StrPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
"""A path as the library takes it (bytes for names that aren't valid in the file system's
encoding)."""


class WatcherOptions(TypedDict, total=False):
    """:func:`~asyncreload.open_watcher`'s keyword arguments (see it for what each means)."""

    poll: Iterable[StrPath]
    events: Iterable[StrPath]
    force_polling: bool | None
    poll_interval: float | None
    poll_cpu: float | None
    debounce: float | None
    max_wait: float | None
    include: Iterable[str]
    exclude: Iterable[str]
    default_ignores: bool
    path_filter: PathFilter | None


def take_watcher_options(options: MutableMapping[str, Any], names: Iterable[str]) -> WatcherOptions:
    """Take the watcher's options among ``names`` out of untyped ``options`` (a command line's,
    ``serve(**options)``); None and empty values are left out, so they keep their defaults.

    >>> rest = {"poll_interval": 0.5, "poll": (), "port": 8000}
    >>> take_watcher_options(rest, ["poll", "poll_interval", "max_wait"]), rest
    ({'poll_interval': 0.5}, {'port': 8000})
    """
    unknown = set(names) - set(WatcherOptions.__annotations__)
    assert not unknown, f"not watcher options: {sorted(unknown)}"
    taken = {k: options.pop(k) for k in names if k in options}
    return cast("WatcherOptions", {k: v for k, v in taken.items() if v not in (None, ())})


Kind = Literal["paths", "flag", "number", "globs", "negated flag"]
"""How an option is written: repeated paths, a flag, a number, repeated globs, or a flag that
turns a default off (``--no-default-ignores`` sets ``default_ignores=False``)."""


@dataclass(frozen=True)
class Option:
    """One watcher option as the user writes it: its flag (and the ``[tool.asyncreload]`` key
    of the same name), what it takes, its help, and how its value becomes the keyword's."""

    keyword: str
    """The :class:`WatcherOptions` key."""
    flag: str
    kind: Kind
    help: str
    metavar: str | None = None
    in_ms: bool = False
    """Written in milliseconds, given to the watcher in seconds."""
    env: str | None = None
    """The environment variable that sets it too, and beats ``[tool.asyncreload]``."""
    serve: bool = True
    """Whether ``serve`` takes it under this flag (it has --reload-* for the others)."""

    @property
    def name(self) -> str:
        """The flag as a Python name (click's parameter, the TOML key with ``_``)."""
        return self.flag.removeprefix("--").replace("-", "_")

    def keyword_value(self, value: Any) -> Any:
        """The keyword's value for what the user gave (None, or ``()``: not given)."""
        if self.kind == "negated flag":
            return not value
        if self.in_ms and value is not None:
            return value / 1000
        return value


OPTIONS: tuple[Option, ...] = (
    Option(
        "poll",
        "--poll",
        "paths",
        "Stat-poll PATH and everything below it (repeatable). For mounts the mount table "
        "doesn't reveal, e.g. a bind mount of a network share.",
        metavar="PATH",
    ),
    Option(
        "events",
        "--events",
        "paths",
        "Use kernel events for PATH even on a FUSE/network mount (repeatable): only right "
        "when every change is made on this machine.",
        metavar="PATH",
    ),
    Option(
        "force_polling",
        "--force-polling",
        "flag",
        "Stat-poll everything (also ASYNCRELOAD_FORCE_POLLING=1).",
        env="ASYNCRELOAD_FORCE_POLLING",
    ),
    Option(
        "poll_interval",
        "--poll-interval",
        "number",
        "How often a polled tree is swept (never more than half the time: the pause is at "
        f"least as long as the last sweep).  [default: {DEFAULTS.poll_interval:g}]",
        metavar="SECONDS",
        env="ASYNCRELOAD_POLL_INTERVAL",
    ),
    Option(
        "poll_cpu",
        "--poll-cpu",
        "number",
        "Cap the sweeps at PERCENT of one CPU core, counted in CPU time: a big or slow tree "
        "is then swept less often (detected later) instead of costing more. "
        "[default: no cap beyond half the time]",
        metavar="PERCENT",
        env="ASYNCRELOAD_POLL_CPU",
    ),
    Option(
        "debounce",
        "--debounce",
        "number",
        f"Quiet time that ends a batch of changes; a burst of {BURST_PATHS} or more paths "
        f"(a checkout, a build) waits for {BURST_DEBOUNCE * 1000:g} ms of quiet.  "
        f"[default: {DEFAULTS.debounce * 1000:g}]",
        metavar="MS",
        in_ms=True,
        env="ASYNCRELOAD_DEBOUNCE",
        serve=False,  # --reload-delay, in seconds as uvicorn's
    ),
    Option(
        "max_wait",
        "--max-wait",
        "number",
        "Hand out a batch at the latest this long after its first change, even if changes "
        f"keep coming.  [default: {DEFAULTS.max_wait * 1000:g}]",
        metavar="MS",
        in_ms=True,
    ),
    Option(
        "include",
        "--include",
        "globs",
        "Only report files whose name matches GLOB (repeatable), e.g. '*.py'. A GLOB with "
        "'/' matches the path relative to the watched directory.",
        metavar="GLOB",
        serve=False,  # --reload-include
    ),
    Option(
        "exclude",
        "--exclude",
        "globs",
        "Ignore names (files or directories, at any depth) matching GLOB (repeatable), e.g. "
        "'build' or '*.log'; with '/' it matches the relative path.",
        metavar="GLOB",
        serve=False,  # --reload-exclude
    ),
    Option(
        "default_ignores",
        "--no-default-ignores",
        "negated flag",
        "Also watch what is ignored by default: VCS and virtualenv directories, __pycache__, "
        "node_modules, tool caches, editor swap and backup files.",
        serve=False,
    ),
)
"""Every watcher option the command line and ``[tool.asyncreload]`` take, in ``--help``'s order
(``path_filter`` is the library's alone)."""


def keywords_from(values: Mapping[str, Any], options: Iterable[Option] = OPTIONS) -> WatcherOptions:
    """The :func:`open_watcher` keywords for what a front end parsed (``values`` by
    :attr:`Option.name`); one not given (missing, None, empty) is left out, to keep its default.

    >>> keywords_from({"debounce": 80.0, "poll": (), "no_default_ignores": True})
    {'debounce': 0.08, 'default_ignores': False}
    """
    keywords = {}
    for option in options:
        value = values.get(option.name)
        if value not in (None, ()):
            keywords[option.keyword] = option.keyword_value(value)
    return cast("WatcherOptions", keywords)
