"""The ``asyncreload`` command: argument parsing, logging, signals and exit codes live here only.

Exit codes: 0 done, 1 runtime failure, 2 bad usage (an unknown option, a missing path, a bad
value), 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import anyio
import click
from click.core import ParameterSource

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from . import __version__
from ._events import inotify_limits
from ._exceptions import (
    AsyncReloadError,
    CommandError,
    CommandNotExecutableError,
    CommandNotFoundError,
    ConfigError,
    WatchPathError,
)
from ._merge import ChangeBatch
from ._process import DEFAULT_GRACE, returncode_to_status
from ._pyproject import load_config
from ._run import OnExit, ProcessRunner, parse_signal
from ._watch import explain, open_watcher

__all__ = ["cli", "main", "watcher_options"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("asyncreload")

_EPILOG = """\
\b
Which paths are polled: FUSE and network mounts (sshfs, NFS, SMB, 9p, virtiofs,
Docker Desktop and WSL2 shares) found in the mount table, paths given with
--poll, and everything with --force-polling; all others get kernel events.
'asyncreload explain PATH' shows the decision and the reason for each path.

\b
Environment: ASYNCRELOAD_FORCE_POLLING=1, ASYNCRELOAD_POLL=PATH:PATH,
ASYNCRELOAD_POLL_INTERVAL=SECONDS, ASYNCRELOAD_DEBOUNCE=MS (options win).
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
            help="Pause between two sweeps of a polled tree.  [default: 0.3]",
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


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"asyncreload: error: {message}", err=True)
    sys.exit(code)


async def cancel_on_signals(scope: anyio.CancelScope) -> None:
    """Turn SIGINT/SIGTERM into a clean cancellation of ``scope``."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def run_async(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the event loop chosen by ASYNCRELOAD_BACKEND (asyncio or trio)."""
    backend = os.environ.get("ASYNCRELOAD_BACKEND", "asyncio")
    if backend not in ("asyncio", "trio"):
        raise ConfigError(f"ASYNCRELOAD_BACKEND={backend!r}: expected asyncio or trio")
    return anyio.run(fn, backend=backend)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
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


def _relative(path: str, cwd: str) -> str:
    return path[len(cwd) + 1 :] if path.startswith(cwd + "/") else path


def _print_batch(batch: ChangeBatch, *, as_json: bool, cwd: str) -> None:
    if as_json:
        line = json.dumps({"changes": [c.to_json() for c in batch]})
    else:
        stamp = time.strftime("%H:%M:%S")
        count = f"{len(batch)} change{'s' if len(batch) != 1 else ''}"
        rows = [f"  {c.kind.value:<8}  {_relative(c.path, cwd)}  ({c.source.value})" for c in batch]
        line = "\n".join([f"[{stamp}] {count}", *rows])
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@cli.command(epilog=_EPILOG)
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


@cli.command(name="explain", epilog=_EPILOG)
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
        click.echo(json.dumps({"targets": plan, "inotify": limits}))
        return
    width = max(len(t.path) for t in targets)
    for t in targets:
        click.echo(f"{t.path:<{width}}  {t.backend.value:<6}  {t.reason}")
        for x in t.excludes:
            click.echo(f"{'':<{width}}  {'':<6}  except {x}, watched on its own (below)")
    if limits:
        click.echo("inotify limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()))


_RUN_EPILOG = (
    """\
\b
The command gets ASYNCRELOAD_CHANGES (a JSON list of the changes that caused
this start, [] at first) and ASYNCRELOAD_RESTART (0, 1, 2, ...). SIGHUP
restarts it; SIGINT and SIGTERM stop it and exit with its status; so does
Ctrl-C, which goes to the command while it holds the terminal. Defaults come
from [tool.asyncreload] in the nearest pyproject.toml (same names as the long
options, plus command = "..."); options given here win.

\b
Exit status: the command's (128+N when signal N ended it); 127 when it is not
found, 126 when it can't be executed; 2 for bad usage; 1 for other failures.

"""
    + _EPILOG
)


@cli.command(
    name="run",
    epilog=_RUN_EPILOG,
    context_settings={"allow_interspersed_args": False},
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[--] COMMAND [ARGS]...")
@click.option(
    "-w",
    "--watch",
    multiple=True,
    metavar="PATH",
    type=click.Path(),
    help="Watch PATH (repeatable).  [default: the current directory]",
)
@watcher_options
@click.option(
    "--signal",
    "stop_signal",
    default="TERM",
    show_default=True,
    metavar="NAME",
    help="The signal that asks the command to stop (TERM, INT, HUP, QUIT, ...).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE,
    show_default=True,
    metavar="SECONDS",
    help="Time between the stop signal and SIGKILL.",
)
@click.option(
    "--on-exit",
    type=click.Choice([e.value for e in OnExit]),
    default=OnExit.WAIT.value,
    show_default=True,
    help="When the command exits by itself: restart it on the next change (wait), "
    "restart it now, backing off while it keeps failing (restart), or exit with its "
    "status (exit).",
)
@click.option("--shell", is_flag=True, help="Run COMMAND with /bin/sh -c (pipes, &&, $VARS).")
@click.option("--clear", is_flag=True, help="Clear the screen before each start.")
@verbosity_options
@click.pass_context
def run_command(
    ctx: click.Context,
    /,
    command: tuple[str, ...],
    verbose: int,
    quiet: int,
    **opts: Any,
) -> None:
    """Run COMMAND; restart it whenever a watched file changes.

    \b
    Examples:
      asyncreload run -- python app.py
      asyncreload run -w src -- flask --app app run --no-reload
      asyncreload run -- python manage.py runserver --noreload
      asyncreload run --include '*.py' -- pytest -x
      asyncreload run --shell -- 'make && ./server'

    \b
    A restart sends the stop signal to the command's process group (and to any
    process that left it), waits up to --grace seconds, SIGKILLs what is left,
    and starts COMMAND again. Changes made meanwhile are never lost: they cause
    one more restart. Nothing COMMAND started outlives asyncreload, even if
    asyncreload itself is killed with SIGKILL.
    """
    opts = _with_config(ctx, opts)
    setup_logging(verbose, quiet)
    argv = command or opts["command"]
    if not argv:
        raise click.UsageError("missing COMMAND: asyncreload run [OPTIONS] -- COMMAND [ARGS]...")
    if isinstance(argv, str):
        argv = [argv] if opts["shell"] else shlex.split(argv)
    try:
        stop_signal = parse_signal(opts["stop_signal"])
    except ConfigError as e:
        raise click.BadParameter(str(e), ctx=ctx, param_hint="'--signal'") from None
    runner = ProcessRunner(
        argv,
        *opts["watch"],
        shell=opts["shell"],
        stop_signal=stop_signal,
        grace=opts["grace"],
        on_exit=opts["on_exit"],
        clear=opts["clear"],
        foreground=True,
        **watcher_kwargs(opts),
    )
    received: list[int] = []
    failures: list[CommandError] = []
    had_terminal = os.isatty(0)

    async def main() -> int | None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_steer, runner, received, had_terminal)
            try:
                returncode = await runner.run()
            except CommandError as e:
                failures.append(e)
                returncode = None
            tg.cancel_scope.cancel()
        return returncode

    returncode = run_async(main)
    for failure in failures:
        _fail(str(failure), _CANT_RUN.get(type(failure), 1))
    if returncode is not None:
        sys.exit(returncode_to_status(returncode))
    sys.exit(128 + received[-1] if received else 0)


_CONFIG_PARAMS = {"signal": "stop_signal"}
_CANT_RUN = {CommandNotFoundError: 127, CommandNotExecutableError: 126}
"""The shell's exit statuses for a command it can't run."""


def _with_config(ctx: click.Context, opts: dict[str, Any]) -> dict[str, Any]:
    """The options with ``[tool.asyncreload]`` filled in where the command line gave none."""
    values = {**opts, "command": ()}
    config = load_config()
    if config is None:
        return values
    for name, value in config.values.items():
        param = _CONFIG_PARAMS.get(name, name)
        if name == "command" or ctx.get_parameter_source(param) is ParameterSource.DEFAULT:
            values[param] = value
    log.debug("options from %s: %s", config.path, ", ".join(config.values))
    return values


async def _steer(runner: ProcessRunner, received: list[int], had_terminal: bool) -> None:
    """SIGHUP restarts the command; SIGINT/SIGTERM stop it (a second one: SIGKILL it now)."""
    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with anyio.open_signal_receiver(*wanted) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP and not (had_terminal and _terminal_hung_up()):
                log.debug("SIGHUP: restarting")
                runner.restart()
                continue
            # A hang-up of our terminal is a reason to stop, not to restart.
            runner.stop(force=bool(received))
            received.append(signum)


def _terminal_hung_up() -> bool:
    try:
        os.tcgetpgrp(0)
    except OSError:
        return True
    return False


_SERVE_EPILOG = """\
\b
An existing uvicorn command line works after swapping the program name:
  uvicorn main:app --reload --reload-dir src
  asyncreload serve main:app --reload-dir src
--reload is accepted and always on. Not supported under reload, as in
uvicorn: --workers.

\b
Reload strategies:
  overlap  (default) the new code is imported in a fresh worker while the
           old one keeps serving; the old one is stopped once the new one
           is ready. A broken edit never takes the app down.
  restart  stop the old worker first, then start the new one. Use it for
           apps that can't run two copies at once: ones that bind a second
           port of their own, hold an exclusive lock, or run a scheduler
           that must not fire twice.
"""


@cli.command(name="serve", epilog=_SERVE_EPILOG)
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind to this address.")
@click.option("--port", type=int, default=8000, show_default=True, help="Bind to this port.")
@click.option("--uds", metavar="PATH", help="Bind to a Unix domain socket instead.")
@click.option("--fd", type=int, help="Serve on this already-open listening socket.")
@click.option("--factory", is_flag=True, help="APP is a factory: call it to get the app.")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Import APP from DIR (added to sys.path); also watched by default.",
)
@click.option("--env-file", metavar="PATH", help="Environment file for the app (python-dotenv).")
@click.option(
    "--interface",
    type=click.Choice(["auto", "asgi3", "asgi2", "wsgi"]),
    default="auto",
    show_default=True,
    help="auto tells WSGI apps (Flask, Django) from ASGI ones.",
)
@click.option(
    "--lifespan",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="ASGI lifespan events.",
)
@click.option("--root-path", default="", help="ASGI root_path, for an app behind a path prefix.")
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=True,
    show_default=True,
    help="Trust X-Forwarded-Proto/For from --forwarded-allow-ips.",
)
@click.option("--forwarded-allow-ips", metavar="IPS", help="Proxies to trust (uvicorn's).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug",
              "trace"]), help="uvicorn's log level in the workers.")  # fmt: skip
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--timeout-graceful-shutdown",
    type=float,
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long an old worker may finish in-flight requests (an open stream, "
    "a WebSocket) before it is killed.",
)
@click.option("--reload", is_flag=True, hidden=True)  # accepted for uvicorn's sake; always on
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    metavar="DIR",
    type=click.Path(),
    help="Watch DIR (repeatable).  [default: --app-dir]",
)
@click.option(
    "--reload-include",
    "reload_includes",
    multiple=True,
    metavar="GLOB",
    help="Also reload on files matching GLOB (repeatable); *.py always does.",
)
@click.option(
    "--reload-exclude",
    "reload_excludes",
    multiple=True,
    metavar="GLOB",
    help="Never reload on paths matching GLOB (repeatable).",
)
@click.option(
    "--reload-delay",
    type=float,
    metavar="SECONDS",
    help="Quiet time that ends a batch of changes.  [default: 0.02]",
)
@click.option(
    "--reload-strategy",
    type=click.Choice(["overlap", "restart"]),
    default="overlap",
    show_default=True,
    help="See below.",
)
@click.option(
    "--poll",
    multiple=True,
    metavar="PATH",
    type=click.Path(),
    help="Stat-poll PATH (repeatable), as for 'watch'.",
)
@click.option(
    "--events",
    multiple=True,
    metavar="PATH",
    type=click.Path(),
    help="Kernel events for PATH (repeatable), as for 'watch'.",
)
@click.option("--force-polling", is_flag=True, default=None, help="Stat-poll everything.")
@click.option("--poll-interval", type=float, metavar="SECONDS", help="As for 'watch'.")
@verbosity_options
def serve_command(app: str, verbose: int, quiet: int, **options: Any) -> None:
    """Serve an ASGI or WSGI APP ("module:attribute") and reload it on change.

    \b
    Examples:
      asyncreload serve main:app                      FastAPI / Starlette
      asyncreload serve app:app --port 5000           Flask (served as WSGI)
      asyncreload serve mysite.wsgi:application       Django
      asyncreload serve main:app --reload-dir src --poll /mnt/share

    The listening socket is bound once and never closed during a reload, so
    no request is refused; if the new code fails to import, the old version
    keeps serving and the error is shown.
    """
    from ._serve import ReloadStrategy, ServeConfig, serve_async

    setup_logging(verbose, quiet)
    del options["reload"]  # uvicorn's flag, accepted; reloading is what serve does
    watcher = {k: options.pop(k) for k in ("poll", "events", "force_polling", "poll_interval")}
    config = ServeConfig(
        app=app,
        reload_includes=("*.py", *options.pop("reload_includes")),
        strategy=ReloadStrategy(options.pop("reload_strategy")),
        watcher={k: v for k, v in watcher.items() if v not in (None, ())},
        **options,
    )
    config.check()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_on_signals, tg.cancel_scope)
            await serve_async(config)

    run_async(main)


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
        _fail(f"{e.format_message()}{hint}", EXIT_USAGE)
    except (WatchPathError, ConfigError) as e:
        _fail(str(e), EXIT_USAGE)
    except AsyncReloadError as e:
        _fail(str(e), 1)
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.exit(EXIT_INTERRUPTED)
    except BaseExceptionGroup as group:
        _exit_for_group(group)


def _exit_for_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    usage, _rest = group.split((WatchPathError, ConfigError))
    if usage is not None:
        _fail(str(_first_leaf(usage)), EXIT_USAGE)
    known, _rest = group.split(AsyncReloadError)
    if known is not None:
        _fail(str(_first_leaf(known)), 1)
    raise group


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
