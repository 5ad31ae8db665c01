"""Live reload, the worker's side: the browser follows the code.

Wrapped around the app in each worker when ``serve --live-reload`` is on. Every full HTML page the
app returns gets one small script (``<script src=".../__asyncreload__/live.js">``, before
``</body>``, else before ``</head>``), which names the worker that served the page. The script
listens to ``/__asyncreload__/events`` (server-sent events) on the app's own host and port. Each
worker answers there with its own name, and ends every such stream the moment it begins to stop,
so no stream ever holds up a reload. The browser then reconnects, which reaches the next worker
only once it serves; and a page whose worker is not the one answering reloads. So a page
refreshes after a reload, never before the new code answers, and a tab opened before the server
started reloads when the server comes up. When new code fails to load, the old worker serves on
and tells its streams the short traceback, which the pages show in a small overlay (not a
refresh); the fix's worker makes them reload, which removes it.

Static files (the directories :mod:`.static_dirs` finds, or ``--static-dir``) don't restart the
worker: the supervisor watches them itself and tells the serving worker, whose streams pass it
on. A change of stylesheets only swaps each of the page's own stylesheets in place (scroll
position and what was typed stay); any other static file reloads the page. Responses under the
static URLs get ``Cache-Control: no-cache`` when they have none, so that the browser asks for
them again rather than guessing they are fresh.

What is not a full HTML page passes through as it was: other types, compressed bodies, fragments
without ``</body>`` or ``</head>``, and an HTML body longer than :data:`MAX_BUFFERED` (its first
part is sent as it came, then the rest). ``Content-Length`` is set again for the pages that grow.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .._browser_script import EVENTS, JAVASCRIPT, SCRIPT, event

__all__ = ["LiveReload"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BUFFERED = 2 << 20
"""The longest HTML body held back to add the script to (2 MiB)."""
KEEPALIVE_S = 15.0
"""Seconds between comments on an idle events stream, so that proxies keep it open."""

_END_OF_BODY = re.compile(rb"</body\s*>", re.IGNORECASE)
_END_OF_HEAD = re.compile(rb"</head\s*>", re.IGNORECASE)


class LiveReload:
    """The ASGI app ``app`` with live reload; :meth:`end_streams` when the worker stops."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], static_urls: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.worker = f"{os.getpid()}-{time.time_ns()}"
        """This worker's name, as pages and streams give it: new with each worker."""
        self._static_urls = tuple(u for u in static_urls if u)
        self._ending = asyncio.Event()
        self._handed_over = False
        self._error: str | None = None
        self._streams: set[asyncio.Queue[bytes]] = set()

    def show_error(self, error: str) -> None:
        """Tell every page (those that connect later too) that new code failed to load (call it
        in the worker's event loop)."""
        self._error = error
        self._tell(event("broken", json.dumps(error)))

    def assets_changed(self, kind: str) -> None:
        """Tell every page that static files changed: ``"css"`` (only stylesheets: swap them),
        else ``"page"`` (reload). Call it in the worker's event loop."""
        self._tell(event("css" if kind == "css" else "page", kind))

    def end_streams(self, *, handed_over: bool = False) -> None:
        """End every events stream now, and each one opened from now on at once (call it in the
        worker's event loop). ``handed_over``: a new worker serves already, and this one no
        longer accepts: the pages reload now, rather than after reconnecting."""
        if handed_over:
            self._handed_over = True
            self._tell(event("page", "handed over"))
        self._ending.set()

    def _tell(self, event: bytes) -> None:
        for stream in self._streams:
            stream.put_nowait(event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if path in (EVENTS, root + EVENTS):
            await self._events(receive, send)
        elif path in (SCRIPT, root + SCRIPT):
            await _respond(send, b"application/javascript", JAVASCRIPT.encode())
        elif self._handed_over and _navigates(scope):
            # A page asked for on a connection the browser kept open to this worker, which
            # has handed over: to the same URL again, on a new connection, so the new worker.
            await _redirect_to_itself(scope, send)
        else:
            # A static file is asked for again after each change: without a Cache-Control of
            # its own, the browser may take it as fresh from its cache for a while (it guesses
            # from Last-Modified), and the reload would show the old one.
            static = any(path.startswith(u) for u in self._static_urls)
            injecting = _Injecting(send, self._tag(root), revalidate=static)
            await self.app(scope, receive, injecting.send)

    def _tag(self, root: str) -> bytes:
        src = json.dumps(root + SCRIPT)
        return f"<script src={src} data-worker={json.dumps(self.worker)}></script>".encode()

    async def _events(self, receive: Receive, send: Send) -> None:
        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        events: asyncio.Queue[bytes] = asyncio.Queue()
        if self._error is not None:
            events.put_nowait(event("broken", json.dumps(self._error)))
        self._streams.add(events)
        client, ending = asyncio.ensure_future(gone()), asyncio.ensure_future(self._ending.wait())
        coming = asyncio.ensure_future(events.get())
        try:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-store"),
                    # Each stream ends when its worker stops: the next one must not be asked
                    # over this connection, which leads to the worker that is going.
                    (b"connection", b"close"),
                ],
            })  # fmt: skip
            hello = b"retry: 250\n" + event("hello", self.worker)
            await send({"type": "http.response.body", "body": hello, "more_body": True})
            while True:
                done, _ = await asyncio.wait(
                    (client, ending, coming),
                    timeout=KEEPALIVE_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if client in done:
                    return  # nobody to tell
                told = [coming.result()] if coming in done else []
                if ending in done:
                    # What was told before the end goes first (a hand-over's "page").
                    while not events.empty():
                        told.append(events.get_nowait())
                elif coming in done:
                    coming = asyncio.ensure_future(events.get())
                for data in told or [b": \n\n"]:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                if ending in done:
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # uvicorn's ClientDisconnected: the browser went as we wrote
        finally:
            self._streams.discard(events)
            for waiting in (client, ending, coming):
                waiting.cancel()


class _Injecting:
    """The ``send`` of one response, adding the script to it if it is a full HTML page."""

    def __init__(self, send: Send, tag: bytes, *, revalidate: bool = False) -> None:
        self._send = send
        self._tag = tag
        self._revalidate = revalidate
        self._start: Message | None = None
        self._body: list[bytes] = []
        self._size = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self._revalidate:
                message = _revalidated(message)
            if _is_page(message.get("headers", ())):
                self._start = message  # held until the body is whole
                return
        elif kind == "http.response.body" and self._start is not None:
            chunk = bytes(message.get("body", b""))
            self._body.append(chunk)
            self._size += len(chunk)
            if message.get("more_body", False):
                if self._size > MAX_BUFFERED:  # too long to hold: as it came, from here on
                    await self._flush(b"".join(self._body), more=True)
                return
            await self._flush(_inject(b"".join(self._body), self._tag), more=False)
            return
        await self._send(message)

    async def _flush(self, body: bytes, *, more: bool) -> None:
        assert self._start is not None
        start, self._start, self._body = self._start, None, []
        if not more:
            headers = [
                (k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"
            ]
            start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self._send(start)
        await self._send({"type": "http.response.body", "body": body, "more_body": more})


def _is_page(headers: Any) -> bool:
    kind = encoding = b""
    for name, value in headers:
        if name.lower() == b"content-type":
            kind = value.lower()
        elif name.lower() == b"content-encoding":
            encoding = value.lower()
    return kind.startswith(b"text/html") and encoding in (b"", b"identity")


def _navigates(scope: Scope) -> bool:
    """True for a browser's GET of a page to show (not a fetch, an image, a form's POST)."""
    if scope.get("method") != "GET":
        return False
    return (b"sec-fetch-mode", b"navigate") in [
        (name.lower(), value.lower()) for name, value in scope.get("headers", ())
    ]


async def _redirect_to_itself(scope: Scope, send: Send) -> None:
    path = scope.get("root_path", "") + scope.get("path", "/")
    query = scope.get("query_string", b"")
    location = path.encode() + (b"?" + query if query else b"")
    headers = [(b"location", location), (b"content-length", b"0"), (b"connection", b"close"),
               (b"cache-control", b"no-store")]  # fmt: skip
    await send({"type": "http.response.start", "status": 307, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _revalidated(start: Message) -> Message:
    """The response start with ``Cache-Control: no-cache`` if it had no Cache-Control."""
    headers = list(start.get("headers", ()))
    if any(name.lower() == b"cache-control" for name, _ in headers):
        return start
    return {**start, "headers": [*headers, (b"cache-control", b"no-cache")]}


def _inject(body: bytes, tag: bytes) -> bytes:
    """``body`` with ``tag`` before its last ``</body>`` (else ``</head>``); as it was without."""
    for end in (_END_OF_BODY, _END_OF_HEAD):
        found = None
        for found in end.finditer(body):  # noqa: B007 (the last one is wanted)
            pass
        if found is not None:
            return body[: found.start()] + tag + body[found.start() :]
    return body


async def _respond(send: Send, kind: bytes, body: bytes) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]  # fmt: skip
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
