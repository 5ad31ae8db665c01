"""The uvicorn internals a worker relies on (``_serve/uvicorn_parts.py``), against the installed
uvicorn: a real server on a real socket, with each HTTP implementation it has."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import socket
from typing import Any

import pytest
import uvicorn

from asyncreload._serve import uvicorn_parts

HTTP = ["h11", *(["httptools"] if importlib.util.find_spec("httptools") else [])]


def test_the_warm_modules_are_uvicorns_own_and_import() -> None:
    for name in uvicorn_parts.WARM_MODULES:
        if name == "uvicorn.loops.uvloop" and importlib.util.find_spec("uvloop") is None:
            continue
        importlib.import_module(name)


def test_the_loop_is_picked_as_uvicorn_picks_it() -> None:
    config = uvicorn.Config("x:app")
    if hasattr(config, "get_loop_factory"):
        assert callable(importlib.import_module("uvicorn._compat").asyncio_run)
    else:
        assert callable(config.setup_event_loop)
    assert "sockets" in inspect.signature(uvicorn.Server.startup).parameters


def test_the_app_is_found_and_an_asgi2_app_adapted() -> None:
    assert uvicorn_parts.import_app("asyncreload:__version__")
    scopes: list[Any] = []

    def asgi2(scope: Any) -> Any:
        scopes.append(scope)

        async def instance(receive: Any, send: Any) -> None:
            pass

        return instance

    asyncio.run(uvicorn_parts.as_asgi3(asgi2)({"type": "http"}, None, None))
    assert scopes == [{"type": "http"}]


@pytest.mark.parametrize("http", HTTP)
def test_connections_listeners_and_the_wrapped_app_on_a_real_server(http: str) -> None:
    release = asyncio.Event()
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await release.wait()  # holds the request: its connection is mid-request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wrap(inner: Any) -> Any:
        seen["wrapped"] = True
        return inner

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    spec = {"lifespan": "off", "log_level": "warning", "uvicorn": {"http": http}}
    config = uvicorn_parts.make_config(app, "asgi3", spec)
    started = asyncio.Event()
    server = uvicorn_parts.make_server(config, wrap, started.set)

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        await asyncio.wait_for(started.wait(), 30)
        assert seen == {"wrapped": True}
        assert [s.sockets for s in uvicorn_parts.listeners(server)]
        _, writer = await asyncio.open_connection(*sock.getsockname())
        await until(lambda: len(uvicorn_parts.open_connections(server)) == 1)
        (connection,) = uvicorn_parts.open_connections(server)
        assert uvicorn_parts.waiting_for_a_request(connection)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(lambda: not uvicorn_parts.waiting_for_a_request(connection))
        release.set()
        writer.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 30)

    try:
        asyncio.run(main())
    finally:
        sock.close()


async def until(condition: Any, timeout: float = 30) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)
