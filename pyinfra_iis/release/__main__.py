"""Command line: build a release artifact on the controller.

    python -m pyinfra_iis.release build APP_DIR --version V --python 3.12 --out DIST
    python -m pyinfra_iis.release broken APP_DIR --mode import-error --out DIR

``build`` prints ``<zip path> sha256=<hex>`` on stdout. Exit codes:

* 0: success.
* 1: the input cannot make a release: lock error, a requirement without a Windows wheel, an
  incomplete lock, an app folder problem. Fixing the input is needed; retrying will not help.
* 2: usage error (argparse) or an invalid version / Python version / name / entry point.
* 3: pip failed for another reason (network, index): retrying may help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from pydantic import ValidationError

from .artifact import AppError, build_release
from .lock import LockError
from .variants import BROKEN_MODES, make_broken_app
from .wheelhouse import IncompleteLockError, NoWindowsWheelError, WheelhouseError, default_cache_dir

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m pyinfra_iis.release``."""

    parser = argparse.ArgumentParser(prog="python -m pyinfra_iis.release", description="Build pyinfra-iis release artifacts.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build <out>/<name>-<version>.zip from an app folder")
    build.add_argument("app_dir", type=Path, help="the app folder (with requirements.txt locked for Windows)")
    build.add_argument("--version", required=True, help="release version, e.g. 1.4.2 (PEP 440, safe as a folder name)")
    build.add_argument("--python", required=True, help="target CPython on the hosts, 3.10 to 3.14 (e.g. 3.12)")
    build.add_argument("--out", required=True, type=Path, help="output folder for the zip")
    build.add_argument("--name", help="app name (default: the app folder's name)")
    build.add_argument("--lock", type=Path, help="lock file (default: APP_DIR/requirements.txt)")
    build.add_argument("--entry-point", default="main:app", help="ASGI app as module:attribute (default: main:app)")
    build.add_argument("--cache-dir", type=Path, help=f"wheel cache (default: {default_cache_dir()})")

    broken = commands.add_parser("broken", help="copy an app folder into a deliberately broken variant (for tests)")
    broken.add_argument("app_dir", type=Path)
    broken.add_argument("--mode", choices=BROKEN_MODES, default="import-error")
    broken.add_argument("--out", required=True, type=Path, help="the new folder (must not exist)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""

    args = build_parser().parse_args(argv)
    try:
        if args.command == "broken":
            print(make_broken_app(args.app_dir, args.out, args.mode))
            return EXIT_OK
        result = build_release(
            args.app_dir,
            args.version,
            args.python,
            args.out,
            name=args.name,
            lock_path=args.lock,
            entry_point=args.entry_point,
            cache_dir=args.cache_dir,
        )
    except ValidationError as exc:
        return _fail(EXIT_USAGE, "; ".join(_short(e) for e in exc.errors()))
    except (AppError, LockError, NoWindowsWheelError, IncompleteLockError) as exc:
        return _fail(EXIT_INPUT, str(exc))
    except WheelhouseError as exc:
        return _fail(EXIT_ENVIRONMENT, str(exc))
    print(f"{result.path} sha256={result.sha256}")
    return EXIT_OK


def _short(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error['msg']}" if where else error["msg"]


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
