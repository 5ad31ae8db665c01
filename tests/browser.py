"""A real headless Chromium for the live-reload tests and the benchmark, driven over its
DevTools protocol (JSON over a WebSocket, with the ``websockets`` the tests have anyway): open a
page, read what it shows. Started in a profile directory of its own, stopped by its PID."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

DEADLINE = 30.0


class NoBrowser(RuntimeError):
    """No Chromium is installed."""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    def __init__(self, profile: Path) -> None:
        exe = chromium()
        if exe is None:
            raise NoBrowser("chromium is not installed (apt-get install chromium)")
        profile.mkdir(parents=True, exist_ok=True)
        # Its scratch directories in one of ours, removed at the end (else each run leaves
        # /tmp/org.chromium.Chromium.* behind); short, since a socket's path is made in it.
        self.scratch = tempfile.mkdtemp(prefix="cr-")
        self.process = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-extensions", "--no-first-run",
             "--disable-breakpad", "--disable-crash-reporter",
             "--no-default-browser-check", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self.scratch},
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + DEADLINE
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise AssertionError("chromium did not start its DevTools server")
            time.sleep(0.05)
        self.port = int(port_file.read_text().splitlines()[0])

    def page(self) -> Page:
        """The tab the browser started with."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        target = next(t for t in targets if t["type"] == "page")
        return Page(target["webSocketDebuggerUrl"])

    def new_page(self) -> Page:
        """Another tab."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            target = json.load(r)
        return Page(target["webSocketDebuggerUrl"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.scratch, ignore_errors=True)


class Page:
    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(url, max_size=None, open_timeout=10)
        )
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:  # events come in between: only the answer is wanted
            message = json.loads(self.ws.recv(timeout=DEADLINE))
            if message.get("id") == n:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page; None while it can't be had (loading)."""
        try:
            result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        except AssertionError:
            return None
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, expected: Any, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.evaluate(expression)
            if seen == expected:
                return
            time.sleep(0.05)
        raise AssertionError(f"{expression} is {seen!r}, not {expected!r}, after {timeout} s")

    def close(self) -> None:
        self._stack.close()
