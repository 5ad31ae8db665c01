"""The ``asyncreload`` command: argument parsing, logging, signals and exit codes live here
(and in ``_cli_common``, ``_cli_run``, ``_cli_serve``) only; ``watch`` and ``explain`` are here.

Exit codes: 0 done, 1 runtime failure, 2 bad usage (an unknown option, a missing path, a bad
value), 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import anyio
import click

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from . import __version__
from ._cli_common import (
    EPILOG,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    cancel_on_signals,
    fail,
    run_async,
    setup_logging,
    verbosity_options,
    watcher_kwargs,
    watcher_options,
)
from ._cli_run import run_command
from ._cli_serve import serve_command
from ._config import resolve
from ._exceptions import (
    AsyncReloadError,
    ConfigError,
    WatchPathError,
)
from ._inotify import inotify_limits
from ._merge import ChangeBatch
from ._run import relative_to
from ._watch import explain, open_watcher

__all__ = ["cli", "main", "watcher_options"]

log = logging.getLogger("asyncreload")


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


def _print_batch(batch: ChangeBatch, *, as_json: bool, cwd: str) -> None:
    if as_json:
        line = json.dumps({"changes": [c.to_json() for c in batch]})
    else:
        stamp = time.strftime("%H:%M:%S")
        count = f"{len(batch)} change{'s' if len(batch) != 1 else ''}"
        rows = [
            f"  {c.kind.value:<8}  {relative_to(c.path, cwd)}  ({c.source.value})" for c in batch
        ]
        line = "\n".join([f"[{stamp}] {count}", *rows])
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@cli.command(epilog=EPILOG)
@click.argument("paths", nargs=-1, type=click.Path())
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
    """
    setup_logging(verbose, quiet)
    kwargs = watcher_kwargs(opts)
    cwd = os.getcwd()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_on_signals, tg.cancel_scope)
            async with open_watcher(*paths, **kwargs) as changes:
                log.info("watching %s", ", ".join(paths) if paths else cwd)
                async for batch in changes:
                    _print_batch(batch, as_json=as_json, cwd=cwd)

    run_async(main)


@cli.command(name="explain", epilog=EPILOG)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--poll", multiple=True, metavar="PATH", type=click.Path(), help="As for watch.")
@click.option("--events", multiple=True, metavar="PATH", type=click.Path(), help="As for watch.")
@click.option("--force-polling", is_flag=True, default=None, help="As for watch.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def explain_command(
    paths: Sequence[str],
    poll: Sequence[str],
    events: Sequence[str],
    force_polling: bool | None,
    as_json: bool,
) -> None:
    """Show which backend each path gets, and why: "why didn't it reload?".

    Lists every watched root and every mount nested inside it with the way it is
    watched (events or stat), the file system type, and the reason (mount type,
    override, inotify watch limit). Event paths are tried for real, so a tree
    too big for the inotify watch limit shows up as polled.
    """
    targets = explain(*paths, poll=poll, events=events, force_polling=force_polling)
    backend = resolve().events_backend
    limits = inotify_limits()
    if as_json:
        plan = [
            {
                "path": t.path,
                "backend": t.backend.value,
                "fstype": t.fstype,
                "reason": t.reason,
                "excludes": list(t.excludes),
            }
            for t in targets
        ]
        click.echo(json.dumps({"targets": plan, "events_backend": backend, "inotify": limits}))
        return
    width = max(len(t.path) for t in targets)
    for t in targets:
        click.echo(f"{t.path:<{width}}  {t.backend.value:<6}  {t.reason}")
        for x in t.excludes:
            click.echo(f"{'':<{width}}  {'':<6}  except {x}, watched on its own (below)")
    click.echo(f"kernel events read by: {backend}")
    if limits:
        click.echo("inotify limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()))


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
    except BaseExceptionGroup as group:
        _exit_for_group(group)


def _exit_for_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
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
