"""What a worker takes from uvicorn: every uvicorn name and internal the worker program relies
on, in one module, so that a new uvicorn breaks here, where ``tests/test_uvicorn_parts.py``
checks each of them against the installed uvicorn, and not in a user's reload.

Public API: ``uvicorn.Config``, ``uvicorn.Server`` and its ``serve(sockets=)``, ``started``,
``should_exit``; ``uvicorn.importer.import_from_string``; ``ASGI2Middleware``. Internals (no
promise from uvicorn, hence the test): ``Server.startup(sockets)``, ``Server.servers``,
``Server.server_state.connections``, a connection's ``cycle`` (None between requests),
``Config.loaded_app``, ``Config.get_loop_factory`` (0.36 and later) or ``setup_event_loop``,
and ``uvicorn._compat.asyncio_run``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["WARM_MODULES", "as_asgi3", "import_app", "listeners", "make_config", "make_server",
           "open_connections", "run_on_uvicorns_loop", "waiting_for_a_request"]  # fmt: skip

# What every worker needs: imported while the worker waits, not while the user does. uvicorn's
# own "auto" modules pick the HTTP and WebSocket implementations (httptools or h11; websockets'
# sans-I/O one or wsproto) and the event loop (uvloop or asyncio) exactly as uvicorn does, so
# nothing is imported that uvicorn would not import (importing its deprecated legacy
# websockets module, say, prints a deprecation warning at every start).
WARM_MODULES = (
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",  # imported by uvicorn.loops.auto when called, if uvloop is there
    "uvicorn.middleware.proxy_headers",
    "uvicorn.middleware.asgi2",
    "uvicorn.middleware.message_logger",
    "a2wsgi",
)


def import_app(path: str) -> Any:
    """The object at ``path`` ("module:attribute"), as uvicorn finds it."""
    from uvicorn.importer import import_from_string

    return import_from_string(path)


def as_asgi3(app: Any) -> Any:
    """An ASGI 2 ``app`` as an ASGI 3 one."""
    from uvicorn.middleware.asgi2 import ASGI2Middleware

    return ASGI2Middleware(app)


def make_config(app: Any, interface: str, spec: dict[str, Any]) -> Any:
    """``uvicorn.Config`` for ``app``, from the worker spec (see ``ServeConfig.worker_spec``)."""
    import uvicorn

    return uvicorn.Config(
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
        **spec.get("uvicorn", {}),
    )


def make_server(config: Any, wrap: Callable[[Any], Any], on_started: Callable[[], None]) -> Any:
    """A ``uvicorn.Server`` whose loaded app is ``wrap(app)``, and which calls ``on_started()``
    once lifespan startup is done, before it answers any request."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self.config.loaded_app = wrap(self.config.loaded_app)
            await super().startup(sockets)
            if self.started:
                on_started()

    return Server(config)


def open_connections(server: Any) -> set[Any]:
    """The server's open HTTP and WebSocket connections (protocol objects)."""
    connections: set[Any] = server.server_state.connections
    return connections


def waiting_for_a_request(connection: Any) -> bool:
    """True for a connection accepted but holding no request yet (uvicorn's shutdown would
    close it, and a request on its way would get no answer)."""
    return getattr(connection, "cycle", True) is None


def listeners(server: Any) -> Iterable[Any]:
    """The asyncio servers (``asyncio.Server``) that accept on the listening sockets."""
    servers: list[Any] = getattr(server, "servers", [])
    return servers


def run_on_uvicorns_loop(config: Any, main: Callable[[], Any]) -> None:
    """Run ``main()`` on the event loop uvicorn would pick (``--loop``: uvloop when installed)."""
    get_loop_factory = getattr(config, "get_loop_factory", None)
    if get_loop_factory is None:  # uvicorn < 0.36 sets an event loop policy instead
        config.setup_event_loop()
        asyncio.run(main())
        return
    from uvicorn._compat import asyncio_run  # asyncio.run with loop_factory, on Python 3.10 too

    asyncio_run(main(), loop_factory=get_loop_factory())
