"""Apps shared by the live-reload tests and the benchmark's live measurement (plain text, so
that the benchmark can import it without pytest)."""

FASTAPI_SITE = """\
from pathlib import Path
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

VERSION = {version!r}
HERE = Path(__file__).parent
app = FastAPI()
app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
templates = Jinja2Templates(directory=HERE / "templates")

@app.get("/", response_class=HTMLResponse)
def index(request: Request):
    return templates.TemplateResponse(request, "page.html", {{"version": VERSION}})

@app.get("/api")
def api():
    return {{"version": VERSION}}
"""
