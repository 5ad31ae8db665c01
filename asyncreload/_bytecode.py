"""Stale bytecode: a module edited twice within a second could be imported as its old self.

CPython's ``__pycache__/*.pyc`` files are checked against the source's mtime in whole seconds and
its size. An edit that keeps the size (``v1`` -> ``v2``) within the same second as the previous
one leaves the cached bytecode looking valid, and a fresh process imports the OLD code: a reload
that silently didn't happen. Before a reload, the cached bytecode of every changed ``.py`` file is
removed, so the next import compiles it from source.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable

__all__ = ["purge_stale_bytecode"]


def purge_stale_bytecode(paths: Iterable[str]) -> int:
    """Remove ``__pycache__`` entries of the ``.py`` files in ``paths``; return how many.

    >>> purge_stale_bytecode(["/nonexistent/app.py", "/srv/static/site.css"])
    0
    """
    removed = 0
    for path in paths:
        directory, name = os.path.split(path)
        stem, ext = os.path.splitext(name)
        if ext != ".py":
            continue
        pattern = os.path.join(glob.escape(directory), "__pycache__", glob.escape(stem) + ".*.pyc")
        for cached in glob.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cached)
                removed += 1
    return removed
