"""``asyncreload serve``: an app served by worker processes that are swapped on change.

The supervisor binds the listening socket once and hands it to each worker, so the socket is
never closed during a reload: a connection that arrives mid-reload waits in the backlog and is
answered by whichever worker accepts it, old code or new, never refused.

Reload, the default way ("overlap"): a standby worker, started ahead of time with uvicorn already
imported, is told to import the app; once its lifespan startup is done the old worker is stopped
gracefully (in-flight requests finish, bounded by the graceful timeout, then SIGKILL of its
process group) and a new standby is started. If the new code fails to import or start, the old
worker keeps serving and the error is printed as a short traceback; the next change tries again.
The "restart" way stops the old worker first, for apps that can't run twice at once.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import Process, TaskStatus, UNIXSocketStream

from ._bytecode import purge_stale_bytecode
from ._exceptions import AsyncReloadError, ConfigError
from ._merge import ChangeBatch
from ._run import fold, summarize
from ._signals import cancel_on_signals
from ._watch import open_watcher

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
    reload_includes: Sequence[str] = ("*.py",)
    reload_excludes: Sequence[str] = ()
    reload_delay: float | None = None
    strategy: ReloadStrategy = ReloadStrategy.OVERLAP
    watcher: dict[str, Any] = field(default_factory=dict)
    """Extra :func:`~asyncreload.open_watcher` arguments (``poll``, ``force_polling``, ...)."""

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
        if self.env_file is not None and not os.path.isfile(self.env_file):
            raise ConfigError(f"--env-file does not exist: {self.env_file}")

    def worker_spec(self) -> dict[str, Any]:
        """What a worker needs to import and serve the app (JSON)."""
        return {
            "app": self.app,
            "factory": self.factory,
            "app_dirs": [os.path.realpath(self.app_dir)],
            "interface": self.interface,
            "lifespan": self.lifespan,
            "root_path": self.root_path,
            "proxy_headers": self.proxy_headers,
            "forwarded_allow_ips": self.forwarded_allow_ips,
            "log_level": self.log_level,
            "access_log": self.access_log,
            "timeout_graceful_shutdown": self.timeout_graceful_shutdown,
            "env_file": self.env_file,
        }


def bind(config: ServeConfig) -> socket.socket:
    """The listening socket, bound once by the supervisor and inherited by every worker."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
    elif config.uds is not None:
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
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Worker:
    """One worker process and its control channel."""

    def __init__(
        self, process: Process, channel: UNIXSocketStream, on_close: Callable[[_Worker], None]
    ) -> None:
        self.on_close = on_close
        self.process = process
        self.channel = channel
        self.pid = process.pid
        self._buffer = b""

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the worker has gone."""
        while b"\n" not in self._buffer:
            try:
                data = await self.channel.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    async def send(self, **message: Any) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.channel.send(json.dumps(message).encode() + b"\n")

    async def stop(self, grace: float) -> int:
        """Ask the worker to finish (it stops accepting, drains, shuts down gracefully); after
        ``grace`` seconds SIGKILL its process group. Reaps it; returns its exit code."""
        code: int | None = None
        with anyio.CancelScope(shield=True):
            # Asked over the channel, not with SIGTERM: uvicorn's signal handler would shut
            # down at once, dropping connections accepted a moment ago.
            await self.send(op="stop")
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
        self.serving: _Worker | None = None
        self.standby: _Worker | None = None
        self.workers: set[_Worker] = set()
        self._spawning: anyio.Event | None = None
        """Every worker started and not yet reaped, whatever its role: stopped at the end."""
        self.preload: list[str] = []
        self.generation = 0

    async def spawn(self) -> _Worker:
        """A new standby worker: warm, waiting for ``go``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.set_inheritable(True)
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "asyncreload._worker",
                 str(theirs.fileno()), str(self.sock.fileno())],
                stdin=subprocess.DEVNULL, stdout=None, stderr=None,
                pass_fds=(theirs.fileno(), self.sock.fileno()),
                start_new_session=True,  # its own group: Ctrl-C is the supervisor's to handle
                cwd=self.config.app_dir,
            )  # fmt: skip
        finally:
            theirs.close()
        with anyio.CancelScope(shield=True):  # from here on, the worker is ours to stop
            channel = await UNIXSocketStream.from_socket(ours)
            worker = _Worker(process, channel, self.workers.discard)
            self.workers.add(worker)
        await worker.send(op="hello", preload=self.preload)
        return worker

    async def take_standby(self) -> _Worker:
        """The warm standby: the one waiting, the one being started, or a new one."""
        while self.standby is None and self._spawning is not None:
            await self._spawning.wait()
        worker = self.standby or await self.spawn()
        self.standby = None
        return worker

    def replenish(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the next standby in the background, unless one is there or on its way."""
        if self.standby is None and self._spawning is None:
            self._spawning = anyio.Event()
            tg.start_soon(self._spawn_standby)

    async def _spawn_standby(self) -> None:
        try:
            self.standby = await self.spawn()
        finally:
            done, self._spawning = self._spawning, None
            if done is not None:
                done.set()

    async def activate(self, worker: _Worker) -> bool:
        """Tell a standby to import and serve the app; True once it is ready."""
        started = time.monotonic()
        await worker.send(op="go", spec=self.config.worker_spec())
        while True:
            message = await worker.receive()
            if message is None:
                code = await worker.kill()
                log.error("the new worker exited (code %s) before it was ready", code)
                return False
            op = message.get("op")
            if op == "ready":
                self.generation += 1
                log.debug(
                    "worker %d ready in %.0f ms", worker.pid, 1000 * (time.monotonic() - started)
                )
                return True
            if op == "failed":
                keeps = "the old version keeps serving" if self.serving else "waiting for a fix"
                log.error("the app failed to load; %s\n%s", keeps, message.get("error", ""))
                await worker.kill()
                return False

    async def watch_worker(self, worker: _Worker) -> None:
        """Collect a serving worker's messages; say so if it dies on its own."""
        while True:
            message = await worker.receive()
            if message is None:
                break
            if message.get("op") == "modules":
                self.preload = list(message.get("names", []))
        code = await worker.process.wait()
        await worker.close()
        if self.serving is worker:
            self.serving = None
            log.error("the app's worker exited (code %s); it is started again on the next change",
                      code)  # fmt: skip

    async def retire(self, worker: _Worker) -> None:
        # The worker's own graceful timeout, plus its drain and lifespan shutdown.
        await worker.stop(self.config.timeout_graceful_shutdown + 2.0)


async def serve_async(
    config: ServeConfig, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``config.app`` with reload until cancelled; ``started`` with the app's URL.

    Works on asyncio and trio (the workers run uvicorn on asyncio in their own processes).
    Raises :class:`ServeError` if the socket can't be bound and :class:`ConfigError` for a bad
    setting. A broken app is not an error: the server keeps watching and tries again.
    """
    config.check()
    sock = bind(config)
    where = url(config, sock)
    supervisor = _Supervisor(config, sock)
    reload_dirs = list(config.reload_dirs) or [config.app_dir]
    watcher_args: dict[str, Any] = {
        "include": config.reload_includes,
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
            standby = await supervisor.spawn()
            if await supervisor.activate(standby):
                supervisor.serving = standby
                tg.start_soon(supervisor.watch_worker, standby)
                log.info("serving %s at %s", config.app, where)
            supervisor.standby = await supervisor.spawn()
            task_status.started(where)
            newer: ChangeBatch | None = None
            while True:
                if newer is None:
                    try:
                        batch = await changes.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    batch, newer = newer, None
                newer = await _reload(supervisor, tg, batch, changes)
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


async def _reload(
    supervisor: _Supervisor,
    tg: anyio.abc.TaskGroup,
    batch: ChangeBatch,
    changes: AsyncIterator[ChangeBatch],
) -> ChangeBatch | None:
    """Reload for ``batch``; return a newer batch that came meanwhile, for the next reload.

    A change that comes while the new worker is still importing the app supersedes it: that
    worker is killed and the next reload starts over with both batches, rather than first
    finishing a slow import (a big Django project: seconds) of code already out of date.
    """
    started = time.monotonic()
    await anyio.to_thread.run_sync(purge_stale_bytecode, [c.path for c in batch])
    old = supervisor.serving
    new = await supervisor.take_standby()
    # The next standby warms up while this one imports the app, so an edit made right after
    # this reload finds one ready (two cores: the two don't wait for each other).
    supervisor.replenish(tg)
    if old is not None and supervisor.config.strategy is ReloadStrategy.RESTART:
        supervisor.serving = None
        await supervisor.retire(old)
        old = None
    newer: ChangeBatch | None = None
    ready = False
    async with anyio.create_task_group() as race:

        async def next_batch() -> None:
            nonlocal newer
            with contextlib.suppress(StopAsyncIteration):
                newer = await changes.__anext__()
                race.cancel_scope.cancel()

        race.start_soon(next_batch)
        ready = await supervisor.activate(new)
        race.cancel_scope.cancel()
    if newer is not None and not ready:
        if new.process.returncode is None:
            await new.kill()
        took = 1000 * (time.monotonic() - started)
        log.info("a newer change came %.0f ms into loading the app; starting over", took)
        return fold(batch, newer)
    if ready:
        supervisor.serving = new
        tg.start_soon(supervisor.watch_worker, new)
        if old is not None:
            tg.start_soon(supervisor.retire, old)
        took = 1000 * (time.monotonic() - started)
        log.info("reloaded in %.0f ms after %s", took, summarize(batch, os.getcwd()))
    return newer


def serve(app: str, **options: Any) -> None:
    """Serve ``app`` ("module:attribute") with reload, blocking: ``uvicorn.run(..., reload=True)``.

    Takes :class:`ServeConfig`'s fields as keyword arguments. Like ``uvicorn.run``, it owns the
    process while it runs: called from the main thread, it handles SIGINT and SIGTERM by stopping
    the workers gracefully and returning (its handlers go when it returns).
    """
    watcher = {k: options.pop(k) for k in WATCHER_KEYS if k in options}
    config = ServeConfig(app=app, watcher=watcher, **options)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            if threading.current_thread() is threading.main_thread():
                tg.start_soon(cancel_on_signals, tg.cancel_scope)
            await serve_async(config)

    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C that came before the handlers
        anyio.run(main)


WATCHER_KEYS = ("poll", "events", "force_polling", "poll_interval", "poll_cpu", "max_wait")
"""The options of :func:`serve` (and ``asyncreload serve``) that go to the watcher."""
