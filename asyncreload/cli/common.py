"""What every ``asyncreload`` command shares: the watcher's options, logging set-up, signals,
the event loop, and the one-line error. Only the CLI modules use these."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import anyio
import click

from ._exceptions import ConfigError
from ._signals import cancel_on_signals

__all__ = [
    "EPILOG",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "cancel_on_signals",
    "fail",
    "run_async",
    "setup_logging",
    "verbosity_options",
    "watcher_kwargs",
    "watcher_options",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


EPILOG = """\
\b
Which paths are polled: FUSE and network mounts (sshfs, NFS, SMB, 9p, virtiofs,
Docker Desktop and WSL2 shares) found in the mount table, paths given with
--poll, and everything with --force-polling; all others get kernel events.
'asyncreload explain PATH' shows the decision and the reason for each path.

\b
Environment: ASYNCRELOAD_FORCE_POLLING=1, ASYNCRELOAD_POLL=PATH:PATH,
ASYNCRELOAD_POLL_INTERVAL=SECONDS, ASYNCRELOAD_DEBOUNCE=MS (options win),
ASYNCRELOAD_EVENTS_BACKEND=inotify|watchfiles (what reads kernel events).
"""


def watcher_options(f: F) -> F:
    """The options every command that watches takes (``watch``, ``run``, ``serve``)."""
    options = [
        click.option(
            "--poll",
            "poll",
            multiple=True,
            metavar="PATH",
            type=click.Path(),
            help="Stat-poll PATH and everything below it (repeatable). For mounts the "
            "mount table doesn't reveal, e.g. a bind mount of a network share.",
        ),
        click.option(
            "--events",
            "events",
            multiple=True,
            metavar="PATH",
            type=click.Path(),
            help="Use kernel events for PATH even on a FUSE/network mount (repeatable): only "
            "right when every change is made on this machine.",
        ),
        click.option(
            "--force-polling",
            is_flag=True,
            default=None,
            help="Stat-poll everything (also ASYNCRELOAD_FORCE_POLLING=1).",
        ),
        click.option(
            "--poll-interval",
            type=float,
            default=None,
            metavar="SECONDS",
            help="How often a polled tree is swept (never more than half the time: the pause "
            "is at least as long as the last sweep).  [default: 0.3]",
        ),
        click.option(
            "--poll-cpu",
            type=float,
            default=None,
            metavar="PERCENT",
            help="Cap the sweeps at PERCENT of one CPU core, counted in CPU time: a big or slow "
            "tree is then swept less often (detected later) instead of costing more. "
            "[default: no cap beyond half the time]",
        ),
        click.option(
            "--debounce",
            type=float,
            default=None,
            metavar="MS",
            help="Quiet time that ends a batch of changes; a burst of 16 or more paths (a "
            "checkout, a build) waits for 150 ms of quiet.  [default: 20]",
        ),
        click.option(
            "--max-wait",
            type=float,
            default=None,
            metavar="MS",
            help="Hand out a batch at the latest this long after its first change, even if "
            "changes keep coming.  [default: 1000]",
        ),
        click.option(
            "--include",
            multiple=True,
            metavar="GLOB",
            help="Only report files whose name matches GLOB (repeatable), e.g. '*.py'. "
            "A GLOB with '/' matches the path relative to the watched directory.",
        ),
        click.option(
            "--exclude",
            multiple=True,
            metavar="GLOB",
            help="Ignore names (files or directories, at any depth) matching GLOB "
            "(repeatable), e.g. 'build' or '*.log'; with '/' it matches the relative path.",
        ),
        click.option(
            "--no-default-ignores",
            is_flag=True,
            help="Also watch what is ignored by default: VCS and virtualenv directories, "
            "__pycache__, node_modules, tool caches, editor swap and backup files.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def watcher_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """The :func:`open_watcher` arguments from the parsed :func:`watcher_options`."""
    ms = 1000.0
    return {
        "poll": opts["poll"],
        "events": opts["events"],
        "force_polling": opts["force_polling"],
        "poll_interval": opts["poll_interval"],
        "poll_cpu": opts["poll_cpu"],
        "debounce": None if opts["debounce"] is None else opts["debounce"] / ms,
        "max_wait": None if opts["max_wait"] is None else opts["max_wait"] / ms,
        "include": opts["include"],
        "exclude": opts["exclude"],
        "default_ignores": not opts["no_default_ignores"],
    }


def verbosity_options(f: F) -> F:
    """``-v/--verbose`` and ``-q/--quiet``."""
    f = click.option("-q", "--quiet", count=True, help="Say less (warnings and errors only).")(f)
    return click.option("-v", "--verbose", count=True, help="Say more (-vv: debug).")(f)


def setup_logging(verbose: int, quiet: int) -> None:
    """Log lines to stderr as ``asyncreload: warning: ...``; only the CLI does this."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("asyncreload")
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, min(level, logging.ERROR)))
    root.propagate = False


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        label = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"asyncreload: {label}{record.getMessage()}"
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"asyncreload: error: {message}", err=True)
    sys.exit(code)


def run_async(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the event loop chosen by ASYNCRELOAD_BACKEND (asyncio or trio)."""
    backend = os.environ.get("ASYNCRELOAD_BACKEND", "asyncio")
    if backend not in ("asyncio", "trio"):
        raise ConfigError(f"ASYNCRELOAD_BACKEND={backend!r}: expected asyncio or trio")
    return anyio.run(fn, backend=backend)
