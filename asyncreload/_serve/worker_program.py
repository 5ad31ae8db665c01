"""The worker process of ``asyncreload serve``: the child side.

Started warm, as a standby: the interpreter, uvicorn, its protocol implementations and the
third-party modules the last worker used are imported before any change happens. On ``go`` it
imports the app (fresh code, since this is a fresh process), runs uvicorn on the listening socket
the supervisor bound and passed down, and says ``ready`` once lifespan startup is done. If the
app fails to import or start, it says ``failed`` with a short traceback and exits.

The control channel is a Unix socket (one JSON object per line). The worker dies with the
supervisor: when the supervisor exits, even by SIGKILL, the kernel closes its end of the channel,
and the worker stops (a standby at once, a serving worker after draining). Not PR_SET_PDEATHSIG:
that fires when the *thread* that started the process exits, and trio starts processes from
worker threads that come and go. Whatever the app started goes with the worker, which is a child
subreaper so that not even a double-forked background job escapes.

Run as ``python -m asyncreload._worker CONTROL_FD``; nothing here is public.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from ._guard import PR_SET_CHILD_SUBREAPER, end_descendants, prctl

# What every worker needs: imported while the worker waits, not while the user does.
_WARM_MODULES = (
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
    "uvicorn.middleware.proxy_headers",
    "uvicorn.middleware.wsgi",
    "uvicorn.middleware.asgi2",
    "uvicorn.middleware.message_logger",
)


class _Channel:
    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.file = self.sock.makefile("rwb", buffering=0)

    def send(self, **message: Any) -> None:
        with contextlib.suppress(OSError):
            self.file.write(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, Any] | None:
        line = self.file.readline()
        return json.loads(line) if line else None


def _preload(modules: list[str]) -> None:
    for name in modules:
        # A module that fails to import here will fail (or not be needed) in the app too;
        # the app's own import is what reports errors.
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _third_party_modules(project_dirs: list[str]) -> list[str]:
    """Modules loaded from outside the project: safe to preload in the next standby."""
    roots = tuple(os.path.realpath(d).rstrip("/") + "/" for d in project_dirs)
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or name.startswith("asyncreload"):
            continue
        if not os.path.realpath(path).startswith(roots):
            names.append(name)
    return sorted(names)


def short_traceback(exc: BaseException, app_dirs: list[str]) -> str:
    """The traceback a user needs: their frames and the error, without importlib's."""
    frames = traceback.extract_tb(exc.__traceback__)
    roots = tuple(os.path.realpath(d).rstrip("/") + "/" for d in app_dirs)
    mine = [
        f for f in frames
        if os.path.isabs(f.filename) and os.path.realpath(f.filename).startswith(roots)
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


def _load_app(spec: dict[str, Any]) -> tuple[Any, str]:
    from uvicorn.importer import import_from_string

    for d in reversed(spec["app_dirs"]):
        if d not in sys.path:
            sys.path.insert(0, d)
    app = import_from_string(spec["app"])
    if spec.get("factory"):
        app = app()
    interface = spec.get("interface") or "auto"
    if interface == "auto" and _is_wsgi(app):
        interface = "wsgi"
    return app, interface


def _serve(channel: _Channel, spec: dict[str, Any], listen_fd: int) -> int:
    import uvicorn

    try:
        app, interface = _load_app(spec)
    except BaseException as e:  # the user's code: anything at all can come out of an import
        channel.send(op="failed", error=short_traceback(e, spec["app_dirs"]))
        return 1

    sock = socket.socket(fileno=listen_fd)
    config = uvicorn.Config(
        app,
        interface=interface,  # type: ignore[arg-type]
        lifespan=spec.get("lifespan", "auto"),
        root_path=spec.get("root_path", ""),
        proxy_headers=spec.get("proxy_headers", True),
        forwarded_allow_ips=spec.get("forwarded_allow_ips"),
        log_level=spec.get("log_level"),
        access_log=spec.get("access_log", True),
        timeout_graceful_shutdown=spec.get("timeout_graceful_shutdown"),
        env_file=spec.get("env_file"),
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                channel.send(op="ready", pid=os.getpid())
                channel.send(op="modules", names=_third_party_modules(spec["app_dirs"]))

    server = Server(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The supervisor going away (its end of the channel closed) is a stop request too.
        loop.add_reader(channel.sock.fileno(), _on_control, channel, server)
        await server.serve(sockets=[sock])

    try:
        asyncio.run(main())
    except SystemExit as e:  # uvicorn exits this way when lifespan startup fails
        if not server.started:
            channel.send(op="failed", error="the app's lifespan startup failed (see above)")
        return e.code if isinstance(e.code, int) else 1
    except BaseException as e:
        if not server.started:
            channel.send(op="failed", error=short_traceback(e, spec["app_dirs"]))
            return 1
        raise
    return 0


def _on_control(channel: _Channel, server: Any) -> None:
    try:
        data = channel.sock.recv(4096)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data or b'"stop"' in data:
        loop = asyncio.get_running_loop()
        loop.remove_reader(channel.sock.fileno())
        _draining.add(loop.create_task(_drain_then_exit(server)))


APP_CHILDREN_GRACE = 1.0
"""Seconds the app's own child processes get, after SIGTERM, to exit with the worker."""

_draining: set[asyncio.Task[None]] = set()
DRAIN_S = 1.0


async def _drain_then_exit(server: Any) -> None:
    """Stop accepting, let just-accepted connections deliver their request, then shut down.

    uvicorn's shutdown closes every connection that has no request in progress, including one
    accepted a moment ago whose request is still in the kernel's buffer: that client would see
    its connection dropped. So first stop accepting (the new worker takes the backlog from
    here), and give such connections up to a second to become requests, which uvicorn's
    graceful shutdown then lets finish.
    """
    loop = asyncio.get_running_loop()
    # Stop accepting without closing the asyncio server: Server.close() makes the connections
    # it accepted a moment ago, still being set up in tasks of their own, fail to attach, and
    # asyncio then closes them unanswered. Removing the listening socket's reader stops the
    # accepting and lets those finish; uvicorn's shutdown closes the server later.
    for s in getattr(server, "servers", []):
        for listener in s.sockets:
            loop.remove_reader(listener.fileno())
    await asyncio.sleep(0.05)  # the tasks that set up accepted connections run now
    deadline = loop.time() + DRAIN_S
    while loop.time() < deadline and any(  # noqa: ASYNC110 (uvicorn offers no event for this)
        getattr(c, "cycle", True) is None for c in server.server_state.connections
    ):
        await asyncio.sleep(0.005)
    server.should_exit = True


def main(argv: list[str]) -> int:
    control_fd, listen_fd = int(argv[0]), int(argv[1])
    channel = _Channel(control_fd)
    _preload(list(_WARM_MODULES))
    hello = channel.receive()
    if hello and hello.get("preload"):
        _preload(hello["preload"])
    channel.send(op="standby", pid=os.getpid())
    # SIGTERM while waiting as a standby: just go.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    message = channel.receive()
    if message is None or message.get("op") != "go":
        return 0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own in serve()
    channel.sock.setblocking(False)
    # What the app starts (a task queue, a dev asset watcher) ends with this worker, on a
    # reload or when the supervisor dies, even if it double-forked out of the process group:
    # as a subreaper, the worker inherits such orphans instead of init.
    with contextlib.suppress(OSError):
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        return _serve(channel, message["spec"], listen_fd)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        end_descendants(APP_CHILDREN_GRACE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
