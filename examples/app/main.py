"""Example FastAPI app shipped by pyinfra-iis and served by IIS through HttpPlatformHandler.

Routes:
    GET /            a greeting with the release version.
    GET /healthz     liveness: the process answers (200 {"status": "ok", "version": ...}).
    GET /readyz      readiness: startup finished (200), else 503.
    GET /info        version, Python, and the client address and scheme the app sees. Behind
                     IIS these are the forwarded ones: uvicorn runs with --proxy-headers
                     --forwarded-allow-ips 127.0.0.1 and takes them from X-Forwarded-For /
                     X-Forwarded-Proto, which HttpPlatformHandler sets.
    GET /items/{id}  a small typed route.
    POST /echo       returns the JSON body it received.

Version: read from the release manifest, ``manifest.json`` in the release folder, i.e. the
parent of this app folder (a release unpacks to ``<root>\\releases\\<version>\\{app,
wheelhouse,manifest.json}``). The version therefore always matches the code that runs; run
from a source checkout (no manifest) it is ``0+unreleased``.

Every answer carries ``X-Release-Version``: the ``PYINFRA_IIS_RELEASE`` variable web.config sets
(else the manifest's version). pyinfra-iis's health check after a switch requires it, so an old
worker process still answering cannot pass for the new release.
"""

from __future__ import annotations

import json
import os
import platform
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

#: ``<release>\\manifest.json`` (written by ``python -m pyinfra_iis.release build``).
MANIFEST = Path(__file__).resolve().parent.parent / "manifest.json"
UNRELEASED = "0+unreleased"


def release_version(manifest: Path = MANIFEST) -> str:
    """Return the ``version`` field of the release manifest, or ``0+unreleased`` without one."""

    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return UNRELEASED


VERSION = release_version()


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Mark the app ready once startup has run (the place to open pools, warm caches)."""

    app.state.ready = True
    yield
    app.state.ready = False


app = FastAPI(title="pyinfra-iis example", version=VERSION, lifespan=lifespan)
app.state.ready = False
#: The release this process serves, as web.config names it.
RELEASE = os.environ.get("PYINFRA_IIS_RELEASE") or VERSION


@app.middleware("http")
async def release_header(request: Request, call_next):
    """Add ``X-Release-Version`` to every answer."""

    response = await call_next(request)
    response.headers["X-Release-Version"] = RELEASE
    return response


class Item(BaseModel):
    """An item of the demo catalogue."""

    id: int
    name: str


@app.get("/")
def root() -> dict:
    """A greeting with the version."""

    return {"app": "pyinfra-iis example", "version": VERSION}


@app.get("/healthz")
def healthz() -> dict:
    """Liveness: the process is up and answering."""

    return {"status": "ok", "version": RELEASE}


@app.get("/readyz")
def readyz(request: Request, response: Response) -> dict:
    """Readiness: 200 once startup ran, 503 before."""

    if not getattr(request.app.state, "ready", False):
        response.status_code = 503
        return {"status": "starting"}
    return {"status": "ready", "version": VERSION}


@app.get("/info")
def info(request: Request) -> dict:
    """Version, Python, and the client address and scheme as the app sees them."""

    return {
        "version": VERSION,
        "python": platform.python_version(),
        "client": {"host": request.client.host if request.client else None, "scheme": request.url.scheme},
        "host": request.headers.get("host"),
    }


@app.get("/items/{item_id}")
def read_item(item_id: int) -> Item:
    """Return item ``item_id`` (ids >= 1)."""

    return Item(id=item_id, name=f"item {item_id}")


@app.post("/echo")
async def echo(request: Request) -> dict:
    """Return the JSON body received."""

    return {"received": await request.json()}
