"""The ``asyncreload`` command: argument parsing, logging, signals and exit codes live here
(and in ``cli.common``, ``cli.run``, ``cli.serve``) only; ``watch`` and ``explain`` are here.

Exit codes: 0 done, 1 runtime failure, 2 bad usage (an unknown option, a missing path, a bad
value), 130 interrupted, 141 (128 + SIGPIPE, as for any Unix tool) the reader of stdout went away.
"""

from __future__ import annotations

import json
import logging
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NoReturn

import anyio
import click

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .. import __version__
from .._exceptions import (
    AsyncReloadError,
    ConfigError,
    PathNotFoundError,
    WatchPathError,
)
from .._threads import run_sync
from .._types import Backend, Change, ChangeKind, Source
from .._watch import (
    ChangeBatch,
    Target,
    cache_delay,
    current_directory,
    explain,
    inotify_limits,
    keywords_from,
    open_watcher,
    relative_to,
    resolve,
)
from .common import (
    EPILOG,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    WATCHED_PATH,
    cancel_on_signals,
    escape,
    fail,
    run_async,
    setup_logging,
    shown,
    verbosity_options,
    watcher_options,
)
from .run import run_command
from .serve import serve_command

__all__ = ["cli", "main", "watcher_options"]

log = logging.getLogger("asyncreload")

EXIT_PIPE_CLOSED = 141
"""What the shell reports for a tool ended by SIGPIPE (``yes | head -n1``): 128 + 13."""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.version_option(__version__, "-V", "--version", prog_name="asyncreload")
def cli() -> None:
    """Watch files with kernel events where they work and stat polling where they don't.

    \b
    Examples:
      asyncreload watch                       print what changes under the current directory
      asyncreload watch src --json            one JSON object per batch, for scripts
      asyncreload explain src /mnt/share      which paths get events, which are polled, and why
      asyncreload run -- python app.py        restart a command on every change
      asyncreload serve main:app              a uvicorn --reload that never refuses a request
    """


def _print_batch(batch: ChangeBatch, *, as_json: bool, cwd: str | None) -> None:
    if as_json:
        line = json.dumps({"changes": [c.to_json() for c in batch]})
    else:
        stamp = time.strftime("%H:%M:%S")
        count = f"{len(batch)} change{'s' if len(batch) != 1 else ''}"
        rows = [
            f"  {c.kind.value:<8}  {shown(relative_to(c.path, cwd) if cwd else c.path)}"
            f"  ({c.source.value})"
            for c in batch
        ]
        line = "\n".join([f"[{stamp}] {count}", *rows])
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@cli.command(epilog=EPILOG, short_help="Print every batch of changes.")
@click.argument("paths", nargs=-1, type=WATCHED_PATH)
@watcher_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per batch.")
@verbosity_options
def watch(paths: Sequence[str], as_json: bool, verbose: int, quiet: int, **opts: Any) -> None:
    """Print every batch of changes under PATHS (default: the current directory).

    \b
    Each line: the kind of change, the path, and which way it was seen:
    "events" (kernel events) or "stat" (polling).
    With --json, each batch is one line:
      {"changes": [{"change": "modified", "path": "/abs/p", "source": "stat"}]}

    A name that isn't UTF-8, or holds a control character, is shown quoted as
    bash's $'...' (e.g. $'\\xff.py'); in the JSON, its bad bytes are U+FFFD in
    "path" and the exact name is in an added "path_bytes" (base64). When the
    reader of stdout goes away (watch | head -n1), watch ends at once, with
    status 141.
    """
    setup_logging(verbose, quiet)
    kwargs = keywords_from(opts)
    try:
        cwd: str | None = current_directory()
    except PathNotFoundError:
        cwd = None  # absolute paths still work; paths are then shown whole (none given: one line)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(cancel_on_signals, tg.cancel_scope)
            tg.start_soon(_until_stdout_closed)
            async with open_watcher(*paths, **kwargs) as changes:
                log.info("watching %s", ", ".join(paths) if paths else cwd)
                async for batch in changes:
                    _print_batch(batch, as_json=as_json, cwd=cwd)

    run_async(main)


async def _until_stdout_closed() -> None:
    """Raise BrokenPipeError as soon as nobody reads stdout any more (``watch | head -n1``), not at
    the next batch, which may never come.

    A pipe whose reader is gone raises EPOLLERR, which epoll always reports; our own epoll
    instance is readable once it has, so the event loop waits on it like on any descriptor.
    Elsewhere (no epoll, or stdout not a pipe) the next write finds out instead.
    """
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        is_pipe = False
    if not is_pipe or not hasattr(select, "epoll"):
        await anyio.sleep_forever()
    with select.epoll() as ep:
        ep.register(sys.stdout.fileno(), 0)
        try:
            await anyio.wait_readable(ep.fileno())
        finally:
            anyio.notify_closing(ep.fileno())
    raise BrokenPipeError(32, "stdout closed")


def _stdout_closed() -> NoReturn:
    # Whatever is still buffered can't be written either: point stdout at /dev/null, or the
    # interpreter's flush at exit prints a BrokenPipeError of its own.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EXIT_PIPE_CLOSED)


@cli.command(
    name="explain", epilog=EPILOG, short_help="Show which way each path is watched, and why."
)
@click.argument("paths", nargs=-1, type=WATCHED_PATH)
@click.option("--poll", multiple=True, metavar="PATH", type=WATCHED_PATH, help="As for watch.")
@click.option("--events", multiple=True, metavar="PATH", type=WATCHED_PATH, help="As for watch.")
@click.option("--force-polling", is_flag=True, default=None, help="As for watch.")
@click.option("--include", multiple=True, metavar="GLOB", help="As for watch.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="As for watch.")
@click.option("--no-default-ignores", is_flag=True, help="As for watch.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def explain_command(  # noqa: PLR0917 - click passes every option by name and position
    paths: Sequence[str],
    poll: Sequence[str],
    events: Sequence[str],
    force_polling: bool | None,
    include: Sequence[str],
    exclude: Sequence[str],
    no_default_ignores: bool,
    as_json: bool,
) -> None:
    """Show which backend each path gets, and why: "why didn't it reload?".

    Lists every watched root and every mount nested inside it with the way it is
    watched (events or stat), the file system type, and the reason (mount type,
    override, inotify watch limit). Event paths are tried for real, so a tree
    too big for the inotify watch limit shows up as polled: give the same
    --include, --exclude and --no-default-ignores as to watch or run, since
    what is ignored takes no watches. For a polled network or FUSE mount whose
    caches delay what stat() sees (sshfs: 20 s by default, NFS, SMB, FUSE), it
    says how late a far-side change may show and which mount option removes
    the delay.

    \b
    This is the plan at the moment: a watcher follows the mount table as it
    changes (a mount made or removed later is re-planned, with one line), and
    a root given through a symlink is followed when the link is re-pointed.
    """
    setup_logging(0, 0)
    make_plan = partial(
        explain,
        *paths,
        poll=poll,
        events=events,
        force_polling=force_polling,
        include=include,
        exclude=exclude,
        default_ignores=not no_default_ignores,
    )
    targets = run_async(partial(_abandonable, make_plan))
    if targets is None:
        sys.exit(EXIT_INTERRUPTED)
    backend = resolve().events_backend
    limits = inotify_limits()
    if as_json:
        plan = [
            {
                "path": _unicode(t.path),
                "backend": t.backend.value,
                "fstype": t.fstype,
                "reason": _unicode(t.reason),
                "excludes": [_unicode(x) for x in t.excludes],
                "delay": _delay(t),
                **({"path_bytes": p} if (p := _bytes_if_needed(t.path)) else {}),
            }
            for t in targets
        ]
        _echo(json.dumps({"targets": plan, "events_backend": backend, "inotify": limits}))
        return
    width = max(len(shown(t.path)) for t in targets)
    for t in targets:
        _echo(f"{shown(t.path):<{width}}  {t.backend.value:<6}  {escape(t.reason)}")
        if (delay := _delay(t)) is not None:
            _echo(f"{'':<{width}}  {'':<6}  {delay}")
        for x in t.excludes:
            _echo(f"{'':<{width}}  {'':<6}  except {shown(x)}, watched on its own (below)")
    _echo(f"kernel events read by: {backend}")
    if limits:
        _echo("inotify limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()))


SLOW_PLAN = 5.0
"""Seconds of planning after which ``explain`` says why it may be waiting (as the watcher says
of a hung mount)."""


async def _abandonable(plan: Callable[[], list[Target]]) -> list[Target] | None:
    """``plan()`` in a thread that Ctrl-C abandons (None then): the stats of a path on a hung
    mount block in the kernel, and on the main thread they would be deaf to Ctrl-C."""
    async with anyio.create_task_group() as tg:
        await tg.start(cancel_on_signals, tg.cancel_scope)
        tg.start_soon(_say_if_slow)
        targets = await run_sync(plan, name="explain")
        tg.cancel_scope.cancel()
        return targets
    return None  # interrupted


async def _say_if_slow() -> None:
    await anyio.sleep(SLOW_PLAN)
    log.warning(
        "no answer yet after %g s: a path may lie on a mount whose server does not answer "
        "(a hung sshfs or NFS server); Ctrl-C ends this",
        SLOW_PLAN,
    )


def _echo(line: str) -> None:
    try:
        click.echo(line)
    except BrokenPipeError:
        _stdout_closed()  # click would say nothing and exit 1; we exit as watch does


def _unicode(text: str) -> str:
    """``text`` as strict JSON can hold it: bytes that aren't UTF-8 shown as U+FFFD."""
    return os.fsencode(text).decode("utf-8", "replace")


def _bytes_if_needed(path: str) -> str | None:
    """The exact name, base64-encoded, when :func:`_unicode` had to replace a byte of it."""
    return Change(ChangeKind.ADDED, path, Source.EVENTS).to_json().get("path_bytes")


def _delay(target: Target) -> str | None:
    # Only where far-side changes are looked for at all: events never see them.
    if target.backend is not Backend.STAT or target.mount is None:
        return None
    return cache_delay(target.mount)


cli.add_command(run_command)
cli.add_command(serve_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``asyncreload`` and ``python -m asyncreload``."""
    try:
        cli.main(args=argv, prog_name="asyncreload", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(EXIT_USAGE)
    except click.UsageError as e:
        hint = f" (see 'asyncreload {e.ctx.info_name} --help')" if e.ctx and e.ctx.parent else ""
        if e.ctx and not e.ctx.parent:
            hint = " (see 'asyncreload --help')"
        fail(f"{e.format_message()}{hint}", EXIT_USAGE)
    except (WatchPathError, ConfigError) as e:
        fail(str(e), EXIT_USAGE)
    except AsyncReloadError as e:
        fail(str(e), 1)
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _stdout_closed()
    except BaseExceptionGroup as group:
        _exit_for_group(group)


def _exit_for_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    _interrupted, rest = group.split(KeyboardInterrupt)
    if rest is None:
        # A Ctrl-C raised inside a task (on trio, before the signal handlers are in place)
        # comes wrapped in its task group: it is still just a Ctrl-C.
        sys.exit(EXIT_INTERRUPTED)
    closed, _rest = group.split(BrokenPipeError)
    if closed is not None:
        _stdout_closed()
    usage, _rest = group.split((WatchPathError, ConfigError))
    if usage is not None:
        fail(str(_first_leaf(usage)), EXIT_USAGE)
    known, _rest = group.split(AsyncReloadError)
    if known is not None:
        fail(str(_first_leaf(known)), 1)
    raise group


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
