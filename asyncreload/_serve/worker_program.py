"""The worker process of ``asyncreload serve``: the child side.

Started warm, as a standby: the interpreter, uvicorn, its protocol implementations and the
third-party modules the last worker used are imported before any change happens, and with warm
imports the app's own modules too, under a record of who imported what (:mod:`.imports`). On
``go`` it drops the modules the change reaches and imports the app again over the rest (all of
it, when it had not imported it), runs uvicorn on the listening socket the supervisor bound and
passed down, and says ``ready`` once lifespan startup is done. Every worker is a fresh process:
nothing is forked, so threads, locks and connections made at import are its own. If the app
fails to import or start, it says ``failed`` with a short traceback and exits; if its warm
imports can't be trusted for this change, it says ``stale`` and a fresh worker takes over.

The control channel is a Unix socket (its messages: :mod:`.worker_protocol`), read by a thread of
its own from the worker's first instant. The worker dies with the supervisor: when the supervisor
exits, even by SIGKILL, the kernel closes its end of the channel, and the thread sees it whatever
the main thread is doing (a standby preloading, an import that hangs, an event loop never started):
a worker that is not serving yet goes at once, a serving one after draining. Not PR_SET_PDEATHSIG:
that fires when the *thread* that started the process exits, and trio starts processes from worker
threads that come and go. Whatever the app started goes with the worker, which is a child subreaper
so that not even a double-forked background job escapes.

A reload stops the old worker without failing a request, keep-alive connections included (see
:class:`_Drain`).

Run by the supervisor as ``python -m asyncreload._serve.worker_program CONTROL_FD LISTEN_FD``
(two inherited file descriptors); nothing here is public, and it is not for use by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from .. import _subreaper, _wire
from . import static_dirs, uvicorn_parts
from . import worker_protocol as protocol
from .imports import (
    Full,
    ImportRecorder,
    drop,
    loaded_modules,
    pinning_django,
    plan,
    roots_of,
    under,
)
from .live import LiveReload


class _Channel:
    """The control channel. A daemon thread reads it: ``hello`` and ``go`` are queued for the
    main thread; ``stop`` and the supervisor's death (end of file) are acted on in the thread,
    since the main thread may be stuck in the app's import."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._on_stop: Callable[[bool], None] | None = None
        self._grace: float | None = None
        self.on_live: Callable[[dict[str, Any]], None] | None = None
        """Called (in the reading thread) with each message for the pages (live reload's
        ``broken`` and ``assets``)."""
        threading.Thread(target=self._read, name="asyncreload-control", daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(_wire.encode(message))

    def receive(self) -> dict[str, Any] | None:
        """The next message for the main thread (``hello``, ``go``)."""
        return self.inbox.get()

    def serving(self, on_stop: Callable[[bool], None], grace: float | None) -> None:
        """From now on a stop drains through ``on_stop(handover)`` (called in this thread)
        instead of ending the process; ``grace`` bounds the drain once the supervisor has gone."""
        with self._lock:
            self._on_stop, self._grace = on_stop, grace

    def _read(self) -> None:
        lines = _wire.Lines()
        with contextlib.suppress(OSError, ValueError):
            while data := self.sock.recv(1 << 16):
                lines.feed(data)
                while (message := lines.next()) is not None:
                    if message.get("op") == protocol.STOP:
                        self._stop(handover=bool(message.get("handover")))
                    elif message.get("op") in (protocol.BROKEN, protocol.ASSETS):
                        if self.on_live is not None:
                            self.on_live(message)
                    else:
                        self.inbox.put(message)
        self._stop(handover=False, orphaned=True)

    def _stop(self, *, handover: bool, orphaned: bool = False) -> None:
        with self._lock:
            on_stop, grace = self._on_stop, self._grace
        if on_stop is None:  # a standby, or an import under way: nothing to finish
            _exit_now(0)
        on_stop(handover)
        if orphaned:
            # Nobody is left to SIGKILL us if the drain never ends (an event loop that a
            # handler blocks): bound it here, as the supervisor would.
            time.sleep((10.0 if grace is None else grace) + APP_CHILDREN_GRACE + 2.0)
            _exit_now(1)


def _exit_now(code: int) -> NoReturn:
    """End the process from any thread: what the app started first, then this process."""
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
        _subreaper.end_descendants(APP_CHILDREN_GRACE)
    os._exit(code)


def _preload(modules: list[str]) -> None:
    for name in modules:
        # A module that fails to import here will fail (or not be needed) in the app too;
        # the app's own import is what reports errors.
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except Exception:
            # What the failed import did load goes too: Python drops only the modules that
            # failed, so a package whose __init__ failed would come back without the attributes
            # of the submodules it had imported (an import that met the app dir on a mount that
            # just died, ENOTCONN, left uvicorn without uvicorn.logging: every later worker
            # failed in uvicorn.Config).
            for loaded in set(sys.modules) - before:
                del sys.modules[loaded]


def _stale_modules(changed: list[str]) -> list[str]:
    """Modules this standby has loaded from a file in ``changed``: it must not serve them.

    The preload list leaves the user's code out, but a preloaded module may import some of it,
    or a changed file may lie outside every watched directory the list was made with."""
    changed_files = {os.path.realpath(p) for p in changed}
    names = {os.path.basename(p) for p in changed_files}
    stale = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        # The name first: resolving every module's path would cost milliseconds on each reload.
        if path and os.path.basename(path) in names and os.path.realpath(path) in changed_files:
            stale.append(name)
    return sorted(stale)


def _in_changed_file(exc: BaseException, changed: list[str]) -> bool:
    """True for a syntax error in one of the ``changed`` files: the new code's own fault."""
    if not isinstance(exc, SyntaxError) or not exc.filename:
        return False
    return os.path.realpath(exc.filename) in {os.path.realpath(p) for p in changed}


def short_traceback(exc: BaseException, user_dirs: list[str]) -> str:
    """The traceback a user needs: their frames (under the app dir or a watched directory) and
    the error, without importlib's."""
    frames = traceback.extract_tb(exc.__traceback__)
    roots = roots_of(user_dirs)
    mine = [
        f for f in frames
        if os.path.isabs(f.filename) and under(f.filename, roots)
    ]  # fmt: skip
    lines = traceback.format_list(mine) if mine else []
    return "".join(lines + traceback.format_exception_only(type(exc), exc)).rstrip()


def _is_wsgi(app: Callable[..., Any]) -> bool:
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.isclass(app):
        return False
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 2  # (environ, start_response); ASGI 2 takes (scope)


def _prepare(spec: dict[str, Any]) -> None:
    """What the app's import needs first: its directories on the path, and its env file read
    (uvicorn reads it only once the app is imported, too late for what is read at import)."""
    for d in reversed(spec["app_dirs"]):
        if d not in sys.path:
            sys.path.insert(0, d)
    # A path that could not be read as this worker started (its mount dead for a moment, as
    # the third-party modules were imported) is remembered as having no modules at all, and
    # the app would not be found there once it is back.
    importlib.invalidate_caches()
    if spec.get("env_file"):
        from dotenv import load_dotenv

        load_dotenv(spec["env_file"])


class _WarmImports:
    """The app's own modules, imported by a standby before any change (warm imports)."""

    def __init__(self, channel: _Channel, spec: dict[str, Any], names: list[str]) -> None:
        self.spec = spec
        user_dirs = spec.get("user_dirs") or spec["app_dirs"]
        self.recorder = ImportRecorder(user_dirs, lambda p: channel.send(protocol.wrote(p)))
        self.failed: str | None = None
        _prepare(spec)
        # The app's module first, as the serving worker did: the list is in the order the
        # imports *ended* (a module is filed once it has run), so the modules a Django
        # project's WSGI module loads through django.setup() come before it, and could not be
        # imported before it.
        first = spec["app"].partition(":")[0]
        with self.recorder, pinning_django(self.recorder.record):
            for name in [first, *names]:
                try:
                    importlib.import_module(name)
                except Exception as e:  # the user's code: anything (the app dir just went)
                    self.failed = f"the standby failed to import {name} ({type(e).__name__})"
                    break

    def plan(self, changed: list[str]) -> Any:
        """:class:`.imports.Warm` or :class:`.imports.Full` for ``changed``."""
        if self.failed is not None:
            return Full(self.failed)
        env_file = self.spec.get("env_file")
        if env_file and os.path.realpath(env_file) in {os.path.realpath(p) for p in changed}:
            return Full(f"{os.path.basename(env_file)} changed")
        return plan(self.recorder.record, changed, root=_cwd())


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def _load_app(spec: dict[str, Any]) -> tuple[Any, str]:
    _prepare(spec)
    app = uvicorn_parts.import_app(spec["app"])
    if spec.get("factory"):
        app = app()
    interface = spec.get("interface") or "auto"
    if interface == "auto" and _is_wsgi(app):
        interface = "wsgi"
    if interface == "wsgi":
        # a2wsgi, not uvicorn's own WSGI middleware: that one is deprecated and joins repeated
        # headers into one illegal value, so every Django response that sets a cookie failed.
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(app), "asgi3"
    return app, interface


def _asgi3(app: Any, interface: str) -> tuple[Any, str]:
    """``app`` as an ASGI 3 app, for a middleware to wrap (uvicorn's test of the interface)."""
    if interface == "auto":
        if inspect.isclass(app):
            asgi3 = hasattr(app, "__await__")
        elif inspect.isfunction(app):
            asgi3 = inspect.iscoroutinefunction(app)
        else:
            asgi3 = inspect.iscoroutinefunction(type(app).__call__)
        interface = "asgi3" if asgi3 else "asgi2"
    if interface == "asgi2":
        return uvicorn_parts.as_asgi3(app), "asgi3"
    return app, interface


def _serve(
    channel: _Channel,
    spec: dict[str, Any],
    listen_fd: int,
    again: tuple[str, ...] | None = None,
    changed: list[str] | None = None,
) -> int:
    """Import and serve the app; ``again``: the modules a warm standby dropped for ``changed``
    (None: a cold import)."""
    user_dirs = spec.get("user_dirs") or spec["app_dirs"]
    try:
        app, interface = _load_app(spec)
    except BaseException as e:  # the user's code: anything at all can come out of an import
        if again is not None and not _in_changed_file(e, changed or []):
            # It may be the kept modules' doing (a table defined twice on a kept MetaData):
            # a fresh worker says whether the new code fails on its own.
            channel.send(protocol.stale(reason=f"the import over the kept modules failed "
                                               f"({type(e).__name__})"))  # fmt: skip
            return 0
        channel.send(protocol.failed(short_traceback(e, user_dirs)))
        return 1

    live = None
    static: list[static_dirs.Place] = []
    if spec.get("live_reload"):
        static = static_dirs.find(app)
        app, interface = _asgi3(app, interface)
        app = live = LiveReload(app, static_urls=[p.url for p in static])
    sock = socket.socket(fileno=listen_fd)
    config = uvicorn_parts.make_config(app, interface, spec)

    def started() -> None:
        # Before this task yields, so before the first request is answered: an edit made once
        # the new code was seen comes after it (see LoopGuard.settled).
        channel.send(protocol.ready(os.getpid(), time.time(), again))
        report = asyncio.get_running_loop().create_task(report_modules())
        reporting.add(report)  # held: the loop keeps only a weak reference
        if live is not None:
            channel.send(protocol.static(p.directory for p in static))

    reporting: set[asyncio.Task[None]] = set()

    async def report_modules() -> None:
        """The modules the app has loaded, for the next standby: a second after it is ready
        (not before the first requests: the new code is what the user waits for), and again
        whenever it has loaded more (Django imports its URLconf and views at the first
        request)."""
        known = 0
        while True:
            await asyncio.sleep(1.0)
            if len(sys.modules) != known:
                known = len(sys.modules)
                users, third_party = loaded_modules(roots)
                channel.send(protocol.modules(third_party, users))

    roots = roots_of(user_dirs)

    # (A lambda: the drain is made with the server, and wraps the app only at its startup.)
    server = uvicorn_parts.make_server(config, lambda app: drain.wrap(app), started)  # noqa: PLW0108
    drain = _Drain(server, config.timeout_graceful_shutdown)
    drain.live = live

    async def main() -> None:
        loop = asyncio.get_running_loop()
        channel.serving(lambda handover: drain.start(loop, handover), drain.grace)
        if live is not None:
            shown = live

            def tell_pages(message: dict[str, Any]) -> None:
                if message["op"] == protocol.BROKEN:
                    loop.call_soon_threadsafe(shown.show_error, str(message.get("error", "")))
                else:
                    loop.call_soon_threadsafe(shown.assets_changed, str(message.get("kind")))

            channel.on_live = tell_pages
        await server.serve(sockets=[sock])

    try:
        uvicorn_parts.run_on_uvicorns_loop(config, main)
    except SystemExit as e:  # uvicorn exits this way when lifespan startup fails
        if not server.started:
            channel.send(protocol.failed("the app's lifespan startup failed (see above)"))
        return e.code if isinstance(e.code, int) else 1
    except BaseException as e:
        if not server.started:
            channel.send(protocol.failed(short_traceback(e, user_dirs)))
            return 1
        raise
    return 0


APP_CHILDREN_GRACE = 1.0
"""Seconds the app's own child processes get, after SIGTERM, to exit with the worker."""


STOP_WAIT_S = 1.0
"""Seconds a stopping worker waits, at most, for just-accepted connections to hold a request."""


class _Drain:
    """Retiring a serving worker without failing a request, keep-alive connections included.

    uvicorn's own shutdown closes every connection with no request in progress, including one
    whose next request is on the wire, and lets the others finish without telling their client
    to go elsewhere: a busy keep-alive client then gets a reset or an empty reply. On a reload
    (``handover``) this worker instead stops accepting (the new one takes the backlog from
    here), answers every request that reaches it from then on with ``Connection: close``
    (so its connection closes after that response, with the client told), and waits, up to the
    graceful timeout, for every open connection to get such an answer. A busy client sends
    within milliseconds; only connections that stayed idle all that time are left for uvicorn's
    shutdown to close. Any other stop (the restart strategy's reload, Ctrl-C) is uvicorn's
    shutdown, once the connections accepted a moment ago hold their request (:meth:`_stop`).
    """

    def __init__(self, server: Any, grace: float | None) -> None:
        self.server = server
        self.grace = grace
        self.live: LiveReload | None = None
        """Its events streams end as the stop begins: they must never hold it up."""
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()

    def wrap(self, app: Any) -> Any:
        """``app`` with ``Connection: close`` on every response started while draining."""

        async def closing(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return

            async def send_closing(message: Any) -> None:
                if self.draining and message["type"] == "http.response.start":
                    kept = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                    message = {**message, "headers": [*kept, (b"connection", b"close")]}
                await send(message)

            await app(scope, receive, send_closing)

        return closing

    def start(self, loop: asyncio.AbstractEventLoop, handover: bool) -> None:
        """Begin (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop has ended: the worker is exiting
            loop.call_soon_threadsafe(self._begin, handover)

    def _begin(self, handover: bool) -> None:
        if not handover and self.draining:
            self.server.should_exit = True  # stopped for good while handing over: at once
            return
        if self._tasks:
            return  # already on its way out
        if self.live is not None:
            if handover:
                # Before the pages are told to reload: their requests must reach the new worker.
                self._stop_accepting(asyncio.get_running_loop())
            self.live.end_streams(handed_over=handover)
        task = asyncio.get_running_loop().create_task(
            self._hand_over() if handover else self._stop()
        )
        self._tasks.add(task)  # held: the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    async def _stop(self) -> None:
        """uvicorn's graceful shutdown, once the connections accepted a moment ago hold their
        request: uvicorn closes a connection with no request in progress, so a request still on
        the wire would get no answer (the restart strategy's reload, Ctrl-C). Waits for them at
        most STOP_WAIT_S; new connections wait in the backlog for the next worker."""
        loop = asyncio.get_running_loop()
        self._stop_accepting(loop)
        await asyncio.sleep(0.05)  # the tasks that set up accepted connections run
        deadline = loop.time() + STOP_WAIT_S
        while loop.time() < deadline and any(  # noqa: ASYNC110 (uvicorn offers no event for it)
            uvicorn_parts.waiting_for_a_request(c)
            for c in uvicorn_parts.open_connections(self.server)
        ):
            await asyncio.sleep(0.005)
        self.server.should_exit = True

    def _stop_accepting(self, loop: asyncio.AbstractEventLoop) -> None:
        # Stop accepting without closing the asyncio server: Server.close() makes the connections
        # it accepted a moment ago, still being set up in tasks of their own, fail to attach, and
        # asyncio then closes them unanswered. Removing the listening socket's reader stops the
        # accepting and lets those finish; uvicorn's shutdown closes the server later.
        selector_loop = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        for s in uvicorn_parts.listeners(self.server):
            if not selector_loop:
                # uvloop accepts in libuv, not through a reader, and sets a connection up at once
                # (no task to fail): closing its server just stops the accepting.
                s.close()
                continue
            for listener in s.sockets:
                loop.remove_reader(listener.fileno())

    async def _hand_over(self) -> None:
        loop = asyncio.get_running_loop()
        self.draining = True
        self._stop_accepting(loop)
        grace = math.inf if self.grace is None else self.grace
        deadline = loop.time() + grace
        await asyncio.sleep(min(0.05, grace))  # the tasks that set up accepted connections run
        # uvicorn offers no event for a connection's end: poll its set.
        while uvicorn_parts.open_connections(self.server) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.grace is not None:
            # What is still running (a stream, a WebSocket) gets what is left of the grace.
            self.server.config.timeout_graceful_shutdown = max(0.0, deadline - loop.time())
        self.server.should_exit = True


USAGE = (
    "usage: python -m asyncreload._serve.worker_program CONTROL_FD LISTEN_FD\n"
    "(a worker of 'asyncreload serve', which starts it; not for use by hand)"
)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(a.isdigit() for a in argv):
        print(USAGE, file=sys.stderr)
        return 2
    control_fd, listen_fd = int(argv[0]), int(argv[1])
    channel = _Channel(control_fd)
    _preload(list(uvicorn_parts.WARM_MODULES))
    hello = channel.receive() or {}
    if hello.get("preload"):
        _preload(hello["preload"])
    warm = _WarmImports(channel, hello["spec"], hello["user"]) if hello.get("user") else None
    channel.send(protocol.standby(os.getpid()))
    # SIGTERM while waiting as a standby: just go.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    message = channel.receive()
    if message is None or message.get("op") != protocol.GO:
        return 0
    changed = message.get("changed", [])
    again = None
    if warm is not None:
        decided = warm.plan(changed)
        if isinstance(decided, Full):
            channel.send(protocol.stale(reason=decided.reason))
            return 0
        again = decided.again
        drop(again)
    stale = _stale_modules(changed)  # loaded from a changed file, and not by the app itself
    if stale:
        channel.send(protocol.stale(stale))
        return 0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own in serve()
    # What the app starts (a task queue, a dev asset watcher) ends with this worker, on a
    # reload or when the supervisor dies, even if it double-forked out of the process group:
    # as a subreaper, the worker inherits such orphans instead of init.
    with contextlib.suppress(OSError):
        _subreaper.prctl(_subreaper.PR_SET_CHILD_SUBREAPER, 1)
    try:
        return _serve(channel, message["spec"], listen_fd, again, changed)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _subreaper.end_descendants(APP_CHILDREN_GRACE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
