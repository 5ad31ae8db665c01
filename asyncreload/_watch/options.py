"""The watcher's keyword arguments as one typed set, for everything that passes them on.

:func:`~asyncreload.open_watcher` takes them by name; :func:`~asyncreload.awatch`,
:class:`~asyncreload.ProcessRunner` and :func:`~asyncreload.run_process` forward them with
``**options: Unpack[WatcherOptions]``, so that mypy checks each name and type at every call,
and a test holds the two lists equal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from typing import Any, TypedDict, cast

from ..filters import PathFilter

__all__ = ["StrPath", "WatcherOptions", "take_watcher_options"]

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
