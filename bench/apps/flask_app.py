"""The Flask app: its body is its version and the serving process's pid."""

from __future__ import annotations

import os

from flask import Flask

VERSION = "v0"

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"{VERSION} {os.getpid()}"
