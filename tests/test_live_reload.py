"""``serve --live-reload``: a real headless Chromium follows real reloads; the middleware's rules
(which responses get the script, and how) are tested alone below, on asyncio (the workers')."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncreload._serve import live

from .browser import Browser, Page
from .test_serve import FLASK_APP, write_app
from .test_serve import serving as serve_with

pytestmark = pytest.mark.anyio

HTML_APP = """\
import os
VERSION = {version!r}
PAGE = '''<!doctype html><html><head><title>{{version}}</title></head><body>
<script>sessionStorage.loads = Number(sessionStorage.loads || 0) + 1</script>
<h1>{{version}}</h1></body></html>'''

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/api":
        body, kind = b'{{"version": "' + VERSION.encode() + b'"}}', b"application/json"
    else:
        body, kind = PAGE.format(version=VERSION).encode(), b"text/html; charset=utf-8"
    length = str(len(body)).encode()
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", kind), (b"content-length", length)]}})
    await send({{"type": "http.response.body", "body": body}})
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    chromium = Browser(tmp_path / "profile")
    try:
        page = chromium.page()
        try:
            yield page
        finally:
            page.close()
    finally:
        chromium.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serving(app_dir: Path, port: int = 0) -> AbstractAsyncContextManager[str]:
    return serve_with(app_dir, port=port, live_reload=True)


async def in_thread(function: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)


async def test_the_page_refreshes_once_the_new_code_answers(tmp_path: Path, browser: Page) -> None:
    write_app(tmp_path, "v1", HTML_APP)
    async with serving(tmp_path) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "v1")
        await in_thread(browser.wait_for, "sessionStorage.loads", "1")
        for version, loads in (("v2", "2"), ("v3", "3")):
            write_app(tmp_path, version, HTML_APP)
            await in_thread(browser.wait_for, "document.title", version)
            # Once per reload: never before the new code answers (it would show the old page
            # again, or an error page), never twice.
            assert await in_thread(browser.evaluate, "sessionStorage.loads") == loads
        # What is not a page is as the app made it.
        async with httpx.AsyncClient(timeout=30) as client:
            api = await client.get(where + "/api")
        assert api.json() == {"version": "v3"}
        assert api.headers["content-length"] == str(len(api.content))


async def test_a_failed_reload_shows_the_error_over_the_old_page_until_the_fix(
    tmp_path: Path, browser: Page
) -> None:
    overlay = "document.getElementById('__asyncreload_error')"
    write_app(tmp_path, "good", HTML_APP)
    async with serving(tmp_path) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "good")
        (tmp_path / "main.py").write_text("def broken(:\n")
        await in_thread(browser.wait_for, f"{overlay} !== null", True)
        shown = await in_thread(browser.evaluate, f"{overlay}.textContent")
        assert "SyntaxError" in shown and "main.py" in shown
        # Not a refresh: the old version's page, loaded once.
        assert await in_thread(browser.evaluate, "sessionStorage.loads") == "1"
        assert await in_thread(browser.evaluate, "document.title") == "good"
        write_app(tmp_path, "fixed", HTML_APP)
        await in_thread(browser.wait_for, "document.title", "fixed")
        assert await in_thread(browser.evaluate, f"{overlay} === null") is True


async def test_a_tab_left_open_reloads_when_the_server_is_back(
    tmp_path: Path, browser: Page
) -> None:
    write_app(tmp_path, "first run", HTML_APP)
    port = free_port()
    async with serving(tmp_path, port) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "first run")
    # The server is gone; the tab keeps trying. The next one serves other code.
    write_app(tmp_path, "second run", HTML_APP)
    async with serving(tmp_path, port):
        await in_thread(browser.wait_for, "document.title", "second run")


async def test_a_wsgi_page_gets_the_script_too(tmp_path: Path, browser: Page) -> None:
    flask_page = FLASK_APP.replace(
        'return f"{{VERSION}} {{os.getpid()}}"',
        'return f"<html><head><title>{{VERSION}}</title></head><body>{{VERSION}}</body></html>"',
    )
    write_app(tmp_path, "flask 1", flask_page)
    async with serving(tmp_path) as where:
        await in_thread(browser.open, where)
        await in_thread(browser.wait_for, "document.title", "flask 1")
        write_app(tmp_path, "flask 2", flask_page)
        await in_thread(browser.wait_for, "document.title", "flask 2")


# -- the middleware alone ---------------------------------------------------------------------


async def respond(headers: list[tuple[bytes, bytes]], *chunks: bytes) -> list[dict[str, Any]]:
    """What the client gets when the app sends ``headers`` and ``chunks`` through live reload."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": i < len(chunks) - 1})  # fmt: skip

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    await live.LiveReload(app)({"type": "http", "path": "/"}, receive, send)
    return sent


def body(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def header(sent: list[dict[str, Any]], name: bytes) -> bytes | None:
    return dict(sent[0]["headers"]).get(name)


HTML = [(b"content-type", b"text/html; charset=utf-8")]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_page_gets_the_script_before_its_last_body_end_and_a_right_length() -> None:
    page = b"<html><body><p>a</p><!-- </body> in a comment --></BODY ></html>"
    sent = await respond(
        [*HTML, (b"content-length", str(len(page)).encode())], page[:20], page[20:]
    )
    got = body(sent)
    assert got.startswith(page[: page.rindex(b"</BODY")] + b"<script src=")
    assert got.endswith(b"</script></BODY ></html>")
    assert header(sent, b"content-length") == str(len(got)).encode()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_page_without_a_body_end_gets_it_before_the_head_end() -> None:
    got = body(await respond(HTML, b"<html><head><title>t</title></head>"))
    assert b"<script src=" in got and got.endswith(b"</script></head>")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    ("headers", "chunks"),
    [
        ([(b"content-type", b"application/json")], [b'{"a": "</body>"}']),
        ([*HTML, (b"content-encoding", b"gzip")], [b"\x1f\x8b</body>"]),
        (HTML, [b"<div hx-swap-oob='true'>a fragment</div>"]),
        ([(b"content-type", b"text/plain")], [b"</body>"]),
    ],
    ids=["json", "compressed", "fragment", "text"],
)
async def test_what_is_not_a_whole_page_passes_through_as_it_was(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    assert body(await respond(headers, *chunks)) == b"".join(chunks)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_page_too_long_to_hold_streams_on_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "MAX_BUFFERED", 10)
    chunks = [b"<html><body>", b"0123456789", b"more", b"</body></html>"]
    sent = await respond(HTML, *chunks)
    assert body(sent) == b"".join(chunks)
    assert header(sent, b"content-length") is None  # not a length it could know
