"""``asyncreload serve``: an app served by worker processes that are swapped on change.

The supervisor binds the listening socket once and hands it to each worker, so the socket is
never closed during a reload: a connection that arrives mid-reload waits in the backlog and is
answered by whichever worker accepts it, old code or new, never refused.

Reload, the default way ("overlap"): a standby worker, started ahead of time with uvicorn already
imported, is told to import the app; once its lifespan startup is done the old worker hands
over (it stops accepting, answers what still reaches it on its open connections with
``Connection: close`` and exits once they are closed, bounded by the graceful timeout, then
SIGKILL of its process group) and a new standby is started. If the new code fails to import or
start, the old worker keeps serving and the error is printed as a short traceback; the next
change tries again. The start is such a reload too, and so is the death of the serving worker.
The "restart" way stops the old worker first, for apps that can't run twice at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import importlib
import logging
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from anyio.abc import Process, TaskStatus

from .._bytecode import purge_stale_bytecode
from .._channel import Channel
from .._exceptions import AsyncReloadError, ConfigError
from .._loopguard import LoopGuard, changed_at, muted_line
from .._platform import process_trees_missing
from .._signals import cancel_on_signals
from .._threads import run_sync
from .._watch import (
    OPTIONS,
    ChangeBatch,
    WatcherOptions,
    fold,
    open_watcher,
    relative_to,
    summarize,
    take_watcher_options,
)
from . import worker_protocol as protocol
from .standbys import Standbys
from .static_watch import StaticWatch

__all__ = ["ReloadStrategy", "ServeConfig", "ServeError", "serve", "serve_async"]

log = logging.getLogger("asyncreload.serve")


class ServeError(AsyncReloadError, OSError):
    """The app can't be served: the address is in use, the socket can't be bound."""


class ReloadStrategy(str, enum.Enum):
    """How a new worker replaces the old one."""

    OVERLAP = "overlap"
    """Start the new worker, then stop the old one once the new one is ready (the default)."""
    RESTART = "restart"
    """Stop the old worker first: for apps that can't run two copies at once."""


DEFAULT_RELOAD_INCLUDES = ("*.py", "*.html", "*.jinja", "*.jinja2", "*.j2")
"""What serve reloads on by default: Python code and templates (Jinja's, Django's), which
neither framework re-reads with debug off. The ``--env-file`` is watched too."""


@dataclass
class ServeConfig:
    """What to serve and how; the names follow uvicorn's options."""

    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    factory: bool = False
    app_dir: str = "."
    env_file: str | None = None
    interface: str = "auto"
    lifespan: str = "auto"
    root_path: str = ""
    proxy_headers: bool = True
    forwarded_allow_ips: str | None = None
    log_level: str | None = None
    access_log: bool = True
    timeout_graceful_shutdown: float = 3.0
    backlog: int = 2048
    reload_dirs: Sequence[str] = ()
    reload_includes: Sequence[str] = DEFAULT_RELOAD_INCLUDES
    reload_excludes: Sequence[str] = ()
    reload_delay: float | None = None
    strategy: ReloadStrategy = ReloadStrategy.OVERLAP
    warm_imports: bool = True
    """Standbys import the app's own modules ahead of time, and a change imports again only
    the modules it reaches (see ``_serve/imports.py``). Never with the restart strategy, whose
    app must not run twice at once."""
    live_reload: bool = False
    """Refresh the browser's pages after each reload (see ``_serve/live.py``)."""
    static_dirs: Sequence[str] = ()
    """With live reload, directories of static files besides those the app's framework names:
    a change there updates the pages without a new worker."""
    watcher: WatcherOptions = field(default_factory=WatcherOptions)
    """Extra :func:`~asyncreload.open_watcher` arguments (``poll``, ``force_polling``, ...)."""
    uvicorn: dict[str, Any] = field(default_factory=dict)
    """More ``uvicorn.Config`` arguments for each worker, as uvicorn names them (``loop``,
    ``http``, ``ws``, ``headers``, ``ssl_certfile``, ``timeout_keep_alive``, ...)."""

    def check(self) -> None:
        """Raise :class:`ConfigError` for what uvicorn would refuse later, in a worker."""
        if ":" not in self.app:
            raise ConfigError(
                f"app must be given as MODULE:ATTRIBUTE, e.g. main:app, not {self.app!r}"
            )
        if self.interface not in ("auto", "asgi3", "asgi2", "wsgi"):
            raise ConfigError(
                f"interface must be auto, asgi3, asgi2 or wsgi, not {self.interface!r}"
            )
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be auto, on or off, not {self.lifespan!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if not os.path.isdir(self.app_dir):
            raise ConfigError(f"--app-dir is not a directory: {self.app_dir}")
        for directory in self.static_dirs:
            if not os.path.isdir(directory):
                raise ConfigError(f"--static-dir is not a directory: {directory}")
        if self.env_file is not None and not os.path.isfile(self.env_file):
            raise ConfigError(f"--env-file does not exist: {self.env_file}")
        if self.uvicorn:
            _check_uvicorn_options(self.uvicorn)
        if self.env_file is not None:
            _require("dotenv", "--env-file needs python-dotenv (pip install python-dotenv)")
        for name in ("timeout_graceful_shutdown", "reload_delay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} must be a number of seconds >= 0, not {value}")
        if self.fd is not None:
            _check_fd(self.fd)
        if self.uds is not None:
            _check_uds(self.uds)

    def worker_spec(self) -> dict[str, Any]:
        """What a worker needs to import and serve the app (JSON)."""
        return {
            "app": self.app,
            "factory": self.factory,
            "app_dirs": [os.path.realpath(self.app_dir)],
            # The user's code: what is never preloaded, and whose frames tracebacks keep. Reload
            # dirs as written, made absolute without a syscall: one may lie on a mount that hangs,
            # and a stat of it here would stop the supervisor, or the worker, with it.
            "user_dirs": [
                os.path.realpath(self.app_dir),
                *(os.path.abspath(d) for d in self.reload_dirs),
            ],
            "interface": self.interface,
            "lifespan": self.lifespan,
            "root_path": self.root_path,
            "proxy_headers": self.proxy_headers,
            "forwarded_allow_ips": self.forwarded_allow_ips,
            "log_level": self.log_level,
            "access_log": self.access_log,
            "timeout_graceful_shutdown": self.timeout_graceful_shutdown,
            "live_reload": self.live_reload,
            "env_file": None if self.env_file is None else os.path.abspath(self.env_file),
            # Paths as the user meant them: the workers run in the app dir.
            "uvicorn": {
                k: os.path.abspath(v) if k in _UVICORN_PATHS else v for k, v in self.uvicorn.items()
            },
        }


_UVICORN_PATHS = frozenset({"log_config", "ssl_keyfile", "ssl_certfile", "ssl_ca_certs"})
# What the supervisor does itself, or ServeConfig's own fields say: not for ServeConfig.uvicorn.
_NOT_PASSED = frozenset({"app", "reload", "reload_dirs", "reload_delay", "reload_includes",
                         "reload_excludes", "workers", "callback_notify", "timeout_notify",
                         "ssl_context_factory"})  # fmt: skip


def _check_uvicorn_options(options: dict[str, Any]) -> None:
    import inspect
    from importlib.metadata import version

    import uvicorn

    known = inspect.signature(uvicorn.Config).parameters
    ours = {f.name for f in dataclasses.fields(ServeConfig)}
    for name in options:
        if name in ours or name in _NOT_PASSED:
            raise ConfigError(f"{name} is not one of the worker's uvicorn options (use serve's)")
        if name not in known:
            option = "--header" if name == "headers" else "--" + name.replace("_", "-")
            raise ConfigError(
                f"{option} is not an option of the installed uvicorn {version('uvicorn')}"
            )


def _require(module: str, message: str) -> None:
    """ConfigError(message) if ``module`` can't be imported (checked here, not in a worker)."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(message) from None


def _check_fd(fd: int) -> None:
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise ConfigError(f"--fd {fd} is not an open file descriptor: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--fd {fd} is not a socket")


def _check_uds(path: str) -> None:
    """A socket file at ``path`` (a stale one is replaced) or nothing; never another file,
    which binding would have to delete."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"--uds {path}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"--uds {path} is a directory, not a socket")
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--uds {path} exists and is not a socket (it is left as it is)")


def bind(config: ServeConfig) -> socket.socket:
    """The listening socket, bound once by the supervisor and inherited by every worker."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
    elif config.uds is not None:
        _check_uds(config.uds)  # again: only ever a socket file is unlinked
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(config.uds) and not _is_listening_unix(config.uds):
                os.unlink(config.uds)  # a stale socket file left by a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(config.uds)
        except OSError as e:
            sock.close()
            raise _serve_error(e, f"can't listen on {config.uds}: {e.strerror}") from None
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError as e:
            sock.close()
            what = "is in use" if e.errno == errno.EADDRINUSE else f"can't be bound: {e.strerror}"
            raise _serve_error(e, f"{config.host}:{config.port} {what}") from None
    sock.listen(config.backlog)
    sock.set_inheritable(True)
    return sock


def _serve_error(cause: OSError, message: str) -> ServeError:
    error = ServeError(message)  # one argument: str() is the message alone, for the CLI's line
    error.errno = cause.errno
    return error


def _is_listening_unix(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def url(config: ServeConfig, sock: socket.socket) -> str:
    """Where the app answers, for the log."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    scheme = "https" if config.uvicorn.get("ssl_certfile") else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _Worker:
    """One worker process and its control channel."""

    def __init__(
        self, process: Process, channel: Channel, on_close: Callable[[_Worker], None]
    ) -> None:
        self.on_close = on_close
        self.process = process
        self.channel = channel
        self.pid = process.pid
        self.ready_at: float | None = None
        self.user: list[str] = []
        """The app's modules it was told to import as a standby (warm imports)."""
        self.started = time.monotonic()
        self.warmed: anyio.Event | None = None
        """Set once a background task has read its "standby" (None: no task reads it)."""
        self.said_standby = False
        """It got as far as waiting for ``go`` (its interpreter and imports worked)."""

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the worker has gone."""
        try:
            return await self.channel.receive_message()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return None

    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.channel.send_message(message)

    async def stop(self, grace: float, *, handover: bool = False) -> int:
        """Ask the worker to finish (it stops accepting, drains, shuts down gracefully); after
        ``grace`` seconds SIGKILL its process group. Reaps it; returns its exit code.

        With ``handover`` (a new worker serves now), it first gets every open connection's
        next request and answers it with ``Connection: close``, so no keep-alive client fails."""
        code: int | None = None
        with anyio.CancelScope(shield=True):
            # Asked over the channel, not with SIGTERM: uvicorn's signal handler would shut
            # down at once, dropping connections accepted a moment ago.
            await self.send(protocol.stop(handover=handover))
            with anyio.move_on_after(grace):
                code = await self.process.wait()
            if code is None:
                log.warning("worker %d still busy after %.1f s; killing it", self.pid, grace)
                code = await self.kill()
            await self.close()
        assert code is not None  # the shielded scope can't have swallowed anything
        return code

    async def kill(self) -> int:
        self._signal_group(signal.SIGKILL)
        with anyio.CancelScope(shield=True):
            code = await self.process.wait()
            await self.close()
        return code

    async def close(self) -> None:
        """Release the control channel and the process's pipes (it must have exited)."""
        self.on_close(self)
        with anyio.CancelScope(shield=True):
            await self.channel.aclose()
            await self.process.aclose()

    def _signal_group(self, sig: signal.Signals) -> None:
        # Its own process group, so whatever the app started goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


class _Supervisor:
    def __init__(self, config: ServeConfig, sock: socket.socket) -> None:
        self.config = config
        self.sock = sock
        self.where = url(config, sock)
        self.serving: _Worker | None = None
        self.workers: set[_Worker] = set()
        """Every worker started and not yet reaped, whatever its role: stopped at the end."""
        self.died = anyio.Event()
        """Set when the serving worker exited on its own: its standby takes over at once."""
        self.wrote: set[str] = set()
        """Files the standbys' warm imports wrote: a reload's doing, for the loop guard."""
        self.standbys = Standbys(
            self.spawn,
            warm=config.warm_imports and config.strategy is ReloadStrategy.OVERLAP,
            where=config.app_dir,
            serving=lambda: self.serving is not None,
            wrote=self.wrote,
        )
        self.standbys_doing = False
        """The last admitted batch holds only files that standbys wrote."""
        self.generation = 0
        # Only a change made while a new worker loaded counts as one a reload caused: an app
        # writes at import or startup, while a script (or a quick hand) may well save again a
        # moment after each reload, and must never be muted.
        self.guard = LoopGuard(follow=0.0)
        self.roots: list[str] = []
        """The watched directories, for the loop guard's line."""
        self.announced = False
        self.loading: _Worker | None = None
        """The worker :meth:`activate` is waiting for."""
        self.how = ""
        """How the last reload's worker got the app's modules, for its log line."""
        self.tg: anyio.abc.TaskGroup | None = None
        """Where standbys are started in the background."""
        self.ready_wall: float | None = None
        """When the last reload's new worker said it was ready, on its wall clock (None: it
        did not get that far)."""
        self.static = StaticWatch(config.live_reload, config.static_dirs)
        """With live reload, the static files, watched apart from the code."""

    def admit(self, batch: ChangeBatch) -> ChangeBatch | None:
        """``batch``, or None when it holds only paths that keep reloading the app (say so)."""
        batch = self.static.strip(batch)
        # What a standby wrote as it imported the app counts as caused by the reload that
        # started it, however late it came (-inf: before any reload's end).
        times = {c.path: -math.inf if c.path in self.wrote else changed_at(c) for c in batch}
        self.standbys_doing = bool(times) and all(p in self.wrote for p in times)
        self.wrote.difference_update(times)
        verdict = self.guard.admit(times)
        cwd = _cwd()
        roots = [os.path.join(cwd, d) for d in self.roots]
        for path in verdict.muted:
            shown = relative_to(path, cwd)
            log.warning(muted_line(path, shown, roots, "--reload-exclude", "reloads"))
        return batch if verdict.paths else None

    async def spawn(self, preload: list[str], user: list[str]) -> _Worker:
        """A new worker, which imports ``preload`` (third-party modules) and ``user`` (the
        app's own, with warm imports) and waits for ``go``. OSError if it can't be started."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.set_inheritable(True)
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "asyncreload._serve.worker_program",
                 str(theirs.fileno()), str(self.sock.fileno())],
                stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                pass_fds=(theirs.fileno(), self.sock.fileno()),
                start_new_session=True,  # its own group: Ctrl-C is the supervisor's to handle
                cwd=self.config.app_dir,
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # From here on, the worker is ours to stop.
        worker = _Worker(process, Channel(ours), self.workers.discard)
        self.workers.add(worker)
        worker.user = user
        spec = self.config.worker_spec() if user else None
        await worker.send(protocol.hello(preload, user, spec))
        return worker

    async def activate(self, worker: _Worker, batch: ChangeBatch) -> _Worker | None:
        """Tell a standby to import and serve the app; the worker serving it once it is ready
        (``worker``, or a fresh one if it had preloaded a module that ``batch`` changed)."""
        started = time.monotonic()
        changed = [c.path for c in batch]
        self.loading = worker
        self.how = ""
        if worker.warmed is not None:
            await worker.warmed.wait()  # its messages are read there until then
        await worker.send(protocol.go(self.config.worker_spec(), changed))
        retried = False
        while True:
            message = await worker.receive()
            if message is None:
                # Its exit code, not the SIGKILL we would give it: it is on its way out.
                code: int | None = None
                with anyio.move_on_after(1.0):
                    code = await worker.process.wait()
                code = await worker.kill() if code is None else code
                await worker.close()
                if not worker.said_standby and not retried:
                    # It died before it was warm, so not of the app's code: started as the app
                    # dir's mount died, its own interpreter could not import (ENOTCONN). Once.
                    log.debug("the standby exited (code %s) before it was warm; starting a "
                              "fresh one", code)  # fmt: skip
                    retried = True
                    fresh = await self.standbys.start()
                    if fresh is None:
                        return None
                    worker = self.loading = fresh
                    await worker.send(protocol.go(self.config.worker_spec(), changed))
                    continue
                log.error("the new worker exited (code %s) before it was ready", code)
                return None
            op = message.get("op")
            if op == protocol.STANDBY:
                worker.said_standby = True
            if op == protocol.READY:
                self.generation += 1
                worker.ready_at = time.monotonic()
                self.ready_wall = float(message.get("at", time.time()))
                again = message.get("again")
                if again is not None:
                    self.how = _again_words(again)
                elif not self.how:
                    self.how = "full re-import: the app's modules were not known yet"
                log.debug(
                    "worker %d ready in %.0f ms", worker.pid, 1000 * (worker.ready_at - started)
                )
                return worker
            if op == protocol.WROTE:
                self.wrote.add(str(message.get("path")))
            if op == protocol.STALE:
                # Never serve code older than the change: a worker that preloads nothing (a
                # third-party module had loaded changed code) or only the third-party modules.
                names, reason = message.get("names", []), message.get("reason", "")
                if names:
                    reason = f"{', '.join(names)} had been loaded by third-party code"
                self.how = f"full re-import: {reason}"
                log.debug("the standby can't serve this change (%s); starting a fresh one", reason)
                await worker.kill()
                fresh = await self.standbys.start(preload=[] if names else None, warm=False)
                if fresh is None:
                    return None
                worker = self.loading = fresh
                await worker.send(protocol.go(self.config.worker_spec()))
            if op == protocol.FAILED:
                keeps = "the old version keeps serving" if self.serving else "waiting for a fix"
                error = message.get("error", "")
                log.error("the app failed to load; %s\n%s", keeps, error, extra={"multiline": True})
                if self.config.live_reload and self.serving is not None:
                    await self.serving.send(protocol.broken(error))
                await worker.kill()
                return None

    async def watch_worker(self, worker: _Worker) -> None:
        """Collect a serving worker's messages; if it dies on its own, the standby takes over."""
        while True:
            message = await worker.receive()
            if message is None:
                break
            if message.get("op") == protocol.MODULES:
                self.standbys.preload = list(message.get("names", []))
                if worker is self.serving:
                    await self.standbys.learned(list(message.get("user", [])), self.tg)
            elif message.get("op") == protocol.STATIC and worker is self.serving:
                self.static.named([str(d) for d in message.get("dirs", [])])
        code = await worker.process.wait()
        await worker.close()
        if self.serving is worker:
            self.serving = None
            lived = time.monotonic() - (worker.ready_at or 0.0)
            if lived < CRASH_LOOP_S:  # it would only die again: wait for a fix
                log.error("the app's worker exited (code %s) %.1f s after it started; it is "
                          "started again on the next change", code, lived)  # fmt: skip
            else:
                log.error("the app's worker exited (code %s); a new one takes over", code)
                self.died.set()

    async def next_batch(self, changes: AsyncIterator[ChangeBatch]) -> ChangeBatch | None:
        """The next batch of changes; ``()`` when the serving worker died on its own (serve the
        same code again, now); None once the watcher has ended."""
        got: list[ChangeBatch | None] = []
        async with anyio.create_task_group() as race:

            async def change() -> None:
                batch: ChangeBatch | None = None
                with contextlib.suppress(StopAsyncIteration):  # the watcher ended: None
                    while batch is None:  # a batch of muted paths only (a loop) is passed over
                        batch = self.admit(await changes.__anext__())
                got.append(batch)
                race.cancel_scope.cancel()

            async def death() -> None:
                await self.died.wait()
                got.append(())
                race.cancel_scope.cancel()

            race.start_soon(change)
            race.start_soon(death)
        return got[0]

    async def assets_changed(self, batch: ChangeBatch) -> None:
        """Static files changed: the pages swap stylesheets in place, or reload for the rest."""
        if self.serving is None:
            return
        css = all(c.path.endswith(".css") for c in batch)
        does = "the pages swap their stylesheets" if css else "the pages reload"
        log.info("%s: %s (the worker keeps serving)", summarize(batch, _cwd()), does)
        await self.serving.send(protocol.assets("css" if css else "page"))

    async def retire(self, worker: _Worker, *, handover: bool = False) -> None:
        # The worker's own graceful timeout, plus its drain and lifespan shutdown.
        await worker.stop(self.config.timeout_graceful_shutdown + 2.0, handover=handover)


CRASH_LOOP_S = 1.0
"""A serving worker that dies sooner than this after it started is not replaced until the next
change: its replacement would only die the same way."""


async def serve_async(
    config: ServeConfig, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``config.app`` with reload until cancelled; ``started`` with the app's URL.

    ``started`` comes once the socket listens and the watcher is ready; the app may still be
    loading then (connections wait in the backlog). The start is a reload like any other: a
    change during it starts over with the new code, so even an import that hangs is cured by
    a fix. Works on asyncio and trio (the workers run uvicorn, on the loop it picks, in
    processes of their own). Raises :class:`ServeError` if the socket can't be bound and
    :class:`ConfigError` for a bad setting. A broken app is not an error: the server keeps
    watching and tries again.
    """
    missing = process_trees_missing("serve")
    if missing is not None:
        raise ServeError(missing)
    config.check()
    sock = bind(config)
    supervisor = _Supervisor(config, sock)
    reload_dirs, includes = _watched(config)
    supervisor.roots = reload_dirs
    watcher_args: WatcherOptions = {
        "include": includes,
        "exclude": config.reload_excludes,
        **config.watcher,
    }
    if config.reload_delay is not None:
        watcher_args["debounce"] = config.reload_delay
    try:
        async with (
            anyio.create_task_group() as tg,
            open_watcher(*reload_dirs, **watcher_args) as changes,
        ):
            if config.live_reload:
                static_options: WatcherOptions = {"exclude": config.reload_excludes}
                static_options.update(config.watcher)
                if config.reload_delay is not None:
                    static_options["debounce"] = config.reload_delay
                tg.start_soon(supervisor.static.follow, static_options, supervisor.assets_changed)
            supervisor.tg = tg
            task_status.started(supervisor.where)
            batch: ChangeBatch | None = ()  # the start: a reload with no change yet
            while batch is not None:
                supervisor.ready_wall = None
                newer = await _reload(supervisor, tg, batch, changes)
                supervisor.guard.settled(at=supervisor.ready_wall)
                batch = newer if newer is not None else await supervisor.next_batch(changes)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            # Including one that was starting when we were cancelled.
            for worker in list(supervisor.workers):
                await supervisor.retire(worker)
        sock.close()
        if config.uds is not None:
            with contextlib.suppress(OSError):
                os.unlink(config.uds)


def _watched(config: ServeConfig) -> tuple[list[str], list[str]]:
    """The directories to watch and the globs that reload: the env file's too, so that an edit
    of it reloads (each worker reads it afresh)."""
    dirs = list(config.reload_dirs) or [config.app_dir]
    includes = list(config.reload_includes)
    if config.env_file is not None:
        env_file = os.path.realpath(config.env_file)
        for d in dirs:
            root = os.path.realpath(d)
            if env_file.startswith(root.rstrip("/") + "/"):
                includes.append(os.path.relpath(env_file, root))
                break
        else:  # outside them: its directory is watched too
            dirs.append(os.path.dirname(env_file))
            includes.append(os.path.basename(env_file))
    return dirs, includes


async def _reload(
    supervisor: _Supervisor,
    tg: anyio.abc.TaskGroup,
    batch: ChangeBatch,
    changes: AsyncIterator[ChangeBatch],
) -> ChangeBatch | None:
    """Reload for ``batch`` (``()``: the start, or a worker that died); return a newer batch that
    came meanwhile, for the next reload.

    A change that comes while the new worker is still importing the app supersedes it: that
    worker is killed and the next reload starts over with both batches, rather than first
    finishing a slow import (a big Django project: seconds) of code already out of date.
    """
    started = time.monotonic()
    await anyio.to_thread.run_sync(purge_stale_bytecode, [c.path for c in batch])
    problem = await _unreadable(supervisor.config.app_dir)
    if problem is not None:
        supervisor.standbys.warn(problem)
        return None
    supervisor.standbys.trouble = None
    old = supervisor.serving
    new = await supervisor.standbys.take()
    if new is None:
        return None
    if old is not None and supervisor.config.strategy is ReloadStrategy.RESTART:
        supervisor.serving = None
        await supervisor.retire(old)
        old = None
    newer: ChangeBatch | None = None
    ready: _Worker | None = None
    async with anyio.create_task_group() as race:

        async def next_batch() -> None:
            nonlocal newer
            with contextlib.suppress(StopAsyncIteration):
                while newer is None:
                    newer = supervisor.admit(await changes.__anext__())
                if supervisor.standbys_doing:
                    # The next standby's imports wrote it (an app that writes at import): no
                    # edit, so it waits for this reload to end rather than undo it; the loop
                    # guard counts the reloads it causes, as when a worker writes at start.
                    return
                race.cancel_scope.cancel()

        race.start_soon(next_batch)
        ready = await supervisor.activate(new, batch)
        race.cancel_scope.cancel()
    # The next standby starts once this one serves: started sooner, its imports (seconds, for a
    # big app) would take the CPU from this one's, and from its first answers, which are what
    # the user waits for; with warm imports a reload needs only milliseconds of it.
    supervisor.standbys.replenish(tg)
    loading, supervisor.loading = supervisor.loading, None
    if newer is not None and ready is None:
        if loading is not None and loading.process.returncode is None:
            await loading.kill()  # it was importing the superseded code
        took = 1000 * (time.monotonic() - started)
        log.info("a newer change came %.0f ms into loading the app; starting over", took)
        return fold(batch, newer)
    if ready is not None:
        supervisor.serving = ready
        supervisor.died = anyio.Event()  # whatever died before, this one serves now
        tg.start_soon(supervisor.watch_worker, ready)
        if old is not None:
            tg.start_soon(partial(supervisor.retire, old, handover=True))
        took = 1000 * (time.monotonic() - started)
        if not supervisor.announced:
            supervisor.announced = True
            log.info("serving %s at %s", supervisor.config.app, supervisor.where)
        elif batch:
            how = f" ({supervisor.how})" if supervisor.how and supervisor.standbys.warm else ""
            log.info("reloaded in %.0f ms after %s%s", took, summarize(batch, _cwd()), how)
        else:
            log.info("a new worker serves the app, %.0f ms after the last one exited", took)
    return newer


def _again_words(names: Sequence[str]) -> str:
    """``names`` (the modules imported again) for the reload's log line."""
    if not names:
        return "no module imported again"
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{len(names)} module{'s' if len(names) > 1 else ''} imported again: {shown}"


async def _unreadable(directory: str) -> str | None:
    """Why ``directory`` can't be used now (moved away, its mount dead), or None."""

    def check() -> str | None:
        try:
            os.stat(directory)
        except OSError as e:
            return f"the app dir {directory} can't be read: {e.strerror}"
        return None

    # Abandonable, in a daemon thread: a hung mount must not hold the reload loop, Ctrl-C, nor
    # the interpreter's exit.
    return await run_sync(check)


def _cwd() -> str:
    """The working directory, for log lines; "" once it is gone (deleted, its mount dead)."""
    try:
        return os.getcwd()
    except OSError:
        return ""


def serve(app: str, **options: Any) -> None:
    """Serve ``app`` ("module:attribute") with reload, blocking: ``uvicorn.run(..., reload=True)``.

    Takes :class:`ServeConfig`'s fields as keyword arguments. Like ``uvicorn.run``, it owns the
    process while it runs: called from the main thread, it handles SIGINT and SIGTERM by stopping
    the workers gracefully and returning (its handlers go when it returns).
    """
    watcher = take_watcher_options(options, WATCHER_KEYS)
    # uvicorn.run()'s other arguments (ws=, http=, headers=, ...) go to the workers' Config.
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    passed = {k: options.pop(k) for k in list(options) if k not in fields}
    config = ServeConfig(app=app, watcher=watcher, uvicorn=passed, **options)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            if threading.current_thread() is threading.main_thread():
                await tg.start(cancel_on_signals, tg.cancel_scope)
            await serve_async(config)

    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C that came before the handlers
        anyio.run(main)


WATCHER_KEYS = tuple(o.keyword for o in OPTIONS if o.serve)
"""The options of :func:`serve` (and ``asyncreload serve``) that go to the watcher."""
