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

from .._exceptions import ConfigError
from .._signals import cancel_on_signals
from .._threads import waiting_for_mounts
from .._watch import (
    BACKEND_VAR,
    ENVIRONMENT,
    OPTIONS,
    QUANTITIES,
    Option,
)

__all__ = [
    "EPILOG",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "WATCHED_PATH",
    "Number",
    "cancel_on_signals",
    "escape",
    "fail",
    "run_async",
    "serve_watcher_options",
    "setup_logging",
    "shown",
    "verbosity_options",
    "watcher_options",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class _WatchedPath(click.Path):
    """A path to watch, taken as it is written: click.Path's own stat() of it would block the
    main thread, deaf to Ctrl-C, if it lies on a hung mount. The watcher checks it, in a thread
    it can abandon."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


WATCHED_PATH = _WatchedPath()
"""The click type of every path option that names something to watch (shell-completes files)."""


EPILOG = (
    """\
\b
Which paths are polled: FUSE and network mounts (sshfs, NFS, SMB, 9p, virtiofs,
Docker Desktop and WSL2 shares) found in the mount table, paths given with
--poll, and everything with --force-polling; all others get kernel events.
'asyncreload explain PATH' shows the decision and the reason for each path.
A polled mount that stops answering (a hung sshfs or NFS server) is named in
one warning after 5 s and one line when it is back; the rest is watched
meanwhile. Ctrl-C ends it at once; only a request the FUSE server has
already taken holds the exit (the kernel's rule, said in one line) until
the server answers or sshfs gives up (-o ServerAliveInterval=15).

\b
Environment (an option given wins):
"""
    + "\n".join(f"  {name}={meaning}" for name, meaning in ENVIRONMENT.items())
    + "\n"
)


class Number(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    """A number checked by the one rule of :data:`~.config.QUANTITIES`, so that the
    error is click's one line, names the option, and speaks in the unit the user typed."""

    name = "number"

    def __init__(self, setting: str) -> None:
        self.quantity = QUANTITIES[setting]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        problem = self.quantity.problem(number)
        if problem is not None:
            self.fail(problem, param, ctx)
        return number


def _click_option(option: Option) -> Callable[[F], F]:
    kind = option.kind
    if kind == "paths":
        return click.option(option.flag, multiple=True, metavar=option.metavar, type=WATCHED_PATH,
                            help=option.help)  # fmt: skip
    if kind == "globs":
        return click.option(option.flag, multiple=True, metavar=option.metavar, help=option.help)
    if kind == "number":
        return click.option(option.flag, type=Number(option.keyword), default=None,
                            metavar=option.metavar, help=option.help)  # fmt: skip
    # A flag left out is None, so that the environment can still set it.
    default = None if kind == "flag" else False
    return click.option(option.flag, is_flag=True, default=default, help=option.help)


def watcher_options(f: F) -> F:
    """The watcher's options (:data:`~asyncreload._watch.OPTIONS`), for ``watch`` and ``run``."""
    for option in reversed(OPTIONS):
        f = _click_option(option)(f)
    return f


def serve_watcher_options(f: F) -> F:
    """Those of the watcher's options that ``serve`` takes as they are."""
    for option in reversed([o for o in OPTIONS if o.serve]):
        f = _click_option(option)(f)
    return f


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e", "\\": "\\\\", "'": "\\'"}


def _escaped(char: str, encoding: str) -> str | None:
    """How ``char`` is written inside ``$'...'``; None when it can be written as it is."""
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that isn't UTF-8, held by Python as a lone surrogate
        return f"\\x{code - 0xDC00:02x}"
    try:
        char.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    if not char.isprintable():
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return None


def shown(path: str, encoding: str | None = None) -> str:
    """``path`` as the text output shows it: as it is, unless it holds a byte that isn't UTF-8, a
    control character (a newline, an ESC that would steer the terminal) or a character the
    output's encoding lacks; then quoted as bash's ``$'...'`` (GNU ls's shell-escape style), which
    a shell turns back into the exact name.

    >>> print(shown("src/app.py"), shown("a\\nb\\x1b[31m.py"), shown(os.fsdecode(b"\\xff.py")))
    src/app.py $'a\\nb\\e[31m.py' $'\\xff.py'
    """
    encoding = encoding or getattr(sys.stdout, "encoding", None) or "utf-8"
    if path.isprintable() and _encodable(path, encoding):
        return path
    return "$'" + "".join(_escaped(c, encoding) or c for c in path) + "'"


def escape(text: str) -> str:
    """``text`` (a log line, a reason) with its control characters and undecodable bytes escaped
    as in :func:`shown`, but not quoted: for text that holds names among other words."""
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    if text.isprintable() and _encodable(text, encoding):
        return text
    return "".join(c if c in "\\'" else (_escaped(c, encoding) or c) for c in text)


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


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
        message = record.getMessage()
        # A record flagged multiline (a traceback) keeps its line breaks, each line escaped on its
        # own; any other message is one line, so a newline in a file name can't split it.
        lines = message.split("\n") if getattr(record, "multiline", False) else [message]
        text = f"asyncreload: {label}" + "\n".join(escape(line) for line in lines)
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"asyncreload: error: {message}", err=True)
    sys.exit(code)


def run_async(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the event loop chosen by ``ASYNCRELOAD_BACKEND`` (asyncio or trio)."""
    backend = os.environ.get(BACKEND_VAR, "asyncio")
    if backend not in ("asyncio", "trio"):
        raise ConfigError(f"{BACKEND_VAR}={backend!r}: expected asyncio or trio")
    try:
        return anyio.run(fn, backend=backend)
    finally:
        _say_what_holds_the_exit()


def _say_what_holds_the_exit() -> None:
    """One line for each thread that waits for a hung FUSE mount as the process ends.

    Such a thread was abandoned, but if the daemon had already taken its request, the kernel
    keeps the process (whatever the signal) until the answer comes: the terminal does not come
    back, and this says why and what ends it."""
    for name in waiting_for_mounts():
        _, _, what = name.partition(" ")
        logging.getLogger("asyncreload").warning(
            "exiting once %s answers: a process can't end while a FUSE request its server has "
            "taken is unanswered (sshfs gives up on a silent server after "
            "-o ServerAliveInterval=15,ServerAliveCountMax=3: 45 s)",
            what or "the hung mount",
        )
