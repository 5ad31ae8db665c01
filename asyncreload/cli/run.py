"""``asyncreload run``: the command line of the managed, restarted command."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from typing import Any

import anyio
import click
from anyio.abc import TaskStatus

from .._exceptions import (
    CommandError,
    CommandNotExecutableError,
    CommandNotFoundError,
    ConfigError,
)
from .._run import (
    DEFAULT_GRACE,
    LiveServer,
    OnExit,
    ProcessRunner,
    parse_signal,
    returncode_to_status,
    terminal_hung_up,
)
from .._watch import keywords_from
from .common import (
    EPILOG,
    WATCHED_PATH,
    Number,
    fail,
    run_async,
    setup_logging,
    verbosity_options,
    watcher_options,
)
from .pyproject import with_config

__all__ = ["run_command"]

log = logging.getLogger("asyncreload")

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
Live reload (--live-reload-port 35729): a page that includes
  <script src="http://127.0.0.1:35729/__asyncreload__/live.js"></script>
reloads once the restarted COMMAND (or a process it started) listens on a
TCP port again.

\b
Exit status: the command's (128+N when signal N ended it); 127 when it is not
found, 126 when it can't be executed; 2 for bad usage; 1 for other failures.

"""
    + EPILOG
)


@click.command(
    name="run",
    epilog=_RUN_EPILOG,
    short_help="Run a command; restart it on change.",
    context_settings={"allow_interspersed_args": False},
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[--] COMMAND [ARGS]...")
@click.option(
    "-w",
    "--watch",
    multiple=True,
    metavar="PATH",
    type=WATCHED_PATH,
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
    type=Number("grace"),
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
@click.option(
    "--shell",
    is_flag=True,
    help="Run COMMAND as a /bin/sh -c script (pipes, &&, $VARS). Give the script as one "
    "word; several words are joined with spaces into one script first, as ssh does.",
)
@click.option("--clear", is_flag=True, help="Clear the screen before each start.")
@click.option(
    "--live-reload-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve live reload on 127.0.0.1:PORT for the pages of the server COMMAND runs: "
    "they reload once the restarted COMMAND listens again. See below.",
)
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
      asyncreload run -- flask --app app run --no-reload
      asyncreload run -- python manage.py runserver --noreload
      asyncreload run --include '*.py' -- pytest -x
      asyncreload run --exclude build --shell -- 'make && build/server'

    \b
    A restart sends the stop signal to the command's process group (and to any
    process that left it), waits up to --grace seconds, SIGKILLs what is left,
    and starts COMMAND again. Changes made meanwhile are never lost: they cause
    one more restart. Nothing COMMAND started outlives asyncreload, even if
    asyncreload itself, or the guard process between it and COMMAND, is
    killed with SIGKILL. COMMAND always starts in the directory asyncreload
    was started in; if it is removed, asyncreload says so once, keeps running,
    and starts COMMAND again once a directory by that name is back.
    """
    setup_logging(verbose, quiet)
    opts = with_config(
        ctx, {**opts, "command": ()}, "run", needed=not command, params={"signal": "stop_signal"}
    )
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
        **keywords_from(opts),
    )
    received: list[int] = []
    failures: list[CommandError] = []
    had_terminal = os.isatty(0)
    live_port = opts["live_reload_port"]
    unserved: list[str] = []

    async def main() -> int | None:
        async with anyio.create_task_group() as tg:
            if live_port is not None:
                live = LiveServer(live_port)
                try:
                    await tg.start(live.serve)
                except OSError as e:
                    unserved.append(f"can't serve live reload on {live.host}:{live_port}: "
                                    f"{e.strerror}")  # fmt: skip
                    return None
                runner.on_start = live.command_started
                log.info("live reload: pages that include %s reload after each restart",
                         live.tag())  # fmt: skip
            await tg.start(_steer, runner, received, had_terminal)
            try:
                returncode = await runner.run()
            except CommandError as e:
                failures.append(e)
                returncode = None
            tg.cancel_scope.cancel()
        return returncode

    returncode = run_async(main)
    for problem in unserved:
        fail(problem, 1)
    for failure in failures:
        fail(str(failure), _CANT_RUN.get(type(failure), 1))
    if returncode is not None:
        sys.exit(returncode_to_status(returncode))
    sys.exit(128 + received[-1] if received else 0)


_CANT_RUN = {CommandNotFoundError: 127, CommandNotExecutableError: 126}
"""The shell's exit statuses for a command it can't run."""


async def _steer(
    runner: ProcessRunner,
    received: list[int],
    had_terminal: bool,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """SIGHUP restarts the command; SIGINT/SIGTERM stop it (a second one: SIGKILL it now).

    Started once the handlers are in place, before the command: see ``cancel_on_signals``."""
    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with anyio.open_signal_receiver(*wanted) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP and not (had_terminal and terminal_hung_up()):
                log.debug("SIGHUP: restarting")
                runner.restart()
                continue
            # A hang-up of our terminal is a reason to stop, not to restart.
            runner.stop(force=bool(received))
            received.append(signum)
