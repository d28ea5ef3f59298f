"""Deliberately broken copies of an app, for tests of the release health check and rollback.

The example app stays clean; tests (and the end-to-end demo) generate a variant folder with
:func:`make_broken_app` and build a release from it like from any app:

* ``import-error``: ``main.py`` raises at import, so uvicorn exits at once (HttpPlatformHandler
  answers 502.3 "process failed to start" and, after ``startupRetryCount`` tries, gives up).
* ``unhealthy``: the app starts and serves, but ``/healthz`` and ``/readyz`` answer 500, so the
  health check through the IIS binding fails while the process is alive.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .artifact import AppError, collect_app_files

BROKEN_MODES = ("import-error", "unhealthy")

# Appended, not prepended: a module may start with a docstring and ``from __future__`` imports.
_IMPORT_ERROR = '\n\nraise RuntimeError("deliberately broken release (pyinfra-iis test variant): fails at import")\n'

_UNHEALTHY = '''

# --- pyinfra-iis test variant: health checks fail with 500 -------------------------------
from starlette.responses import JSONResponse as _BrokenJSONResponse  # noqa: E402


@app.middleware("http")
async def _broken_health(request, call_next):
    if request.url.path in ("/healthz", "/readyz"):
        return _BrokenJSONResponse({"status": "broken"}, status_code=500)
    return await call_next(request)
'''


def make_broken_app(app_dir: Path, dest: Path, mode: str = "import-error", module: str = "main") -> Path:
    """Copy ``app_dir`` to ``dest`` (which must not exist) and break ``<module>.py`` as ``mode`` says.

    Args:
        app_dir: a clean app folder (e.g. ``examples/app``).
        dest: the new folder; its parent is created if needed.
        mode: ``"import-error"`` or ``"unhealthy"`` (see module docstring).
        module: the entry module file to change, ``main`` for ``main:app``; for ``unhealthy`` it
            must define a FastAPI/Starlette ``app``.

    Returns:
        ``dest``.

    Raises:
        ValueError: unknown ``mode``.
        AppError: ``dest`` exists, or ``<module>.py`` is missing.
    """

    if mode not in BROKEN_MODES:
        raise ValueError(f"unknown broken mode {mode!r}; choose one of {', '.join(BROKEN_MODES)}")
    dest = Path(dest)
    if dest.exists():
        raise AppError(f"{dest} already exists")
    for arcname, path in collect_app_files(Path(app_dir)):
        target = dest / arcname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    entry = dest / f"{module}.py"
    if not entry.is_file():
        raise AppError(f"{app_dir} has no {module}.py to break")
    source = entry.read_text(encoding="utf-8")
    entry.write_text(source + (_IMPORT_ERROR if mode == "import-error" else _UNHEALTHY), encoding="utf-8")
    return dest
