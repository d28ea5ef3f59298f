"""The ``pyinfra-iis`` console script: one name for the project's command-line entry points.

    pyinfra-iis demo [--hosts N] [--version V] [--workdir DIR] [--keep-running]
    pyinfra-iis init DIR [--force]
    pyinfra-iis release build APP_DIR --name api --version 1.0.0 --python 3.12 --out dist
    pyinfra-iis sim serve|show ...
    pyinfra-iis --version

Each subcommand is also a module: ``python -m pyinfra_iis.demo``, ``python -m
pyinfra_iis.release``, ``python -m pyinfra_iis.sim``; their options are the same. Deploys run
through pyinfra itself (``pyinfra inventories/prod.py deploys/site.py``); ``init`` writes those
files into a new project folder, from the copy an installed wheel carries.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__

#: What ``init`` copies from the project files into a new folder.
INIT_FOLDERS = ("inventories", "deploys", "templates", "examples/app")

USAGE = """usage: pyinfra-iis COMMAND [ARGS...]

commands:
  demo      the main job on simulated Windows hosts (python -m pyinfra_iis.demo)
  init      write inventories/, deploys/, templates/ and examples/app/ into a new project folder
  release   build release artifacts (python -m pyinfra_iis.release)
  sim       run or inspect simulated hosts (python -m pyinfra_iis.sim)

'pyinfra-iis COMMAND --help' describes each command.
"""


def _demo(argv: Sequence[str]) -> int:
    from .demo import main

    return main(list(argv))


def _release(argv: Sequence[str]) -> int:
    from .release.__main__ import main

    return main(list(argv))


def _sim(argv: Sequence[str]) -> int:
    from .sim.__main__ import main

    return main(list(argv))


def init(target: Path, force: bool = False, source: Path | None = None) -> list[Path]:
    """Copy the project files (:data:`INIT_FOLDERS`) into ``target``.

    Args:
        target: the new project folder (created if missing).
        force: overwrite files that exist; without it an existing file stops the copy before
            anything is written.
        source: where the project files are; default the checkout or the installed wheel's copy
            (:data:`pyinfra_iis.demo.PROJECT`).

    Returns:
        the files written, relative to ``target``.

    Raises:
        FileExistsError: a file exists and ``force`` is false (names the first one).
        FileNotFoundError: ``source`` lacks one of the folders.
    """

    from .demo import PROJECT

    source = PROJECT if source is None else source
    files: list[Path] = []
    for folder in INIT_FOLDERS:
        if not (source / folder).is_dir():
            raise FileNotFoundError(f"{source / folder} is missing")
        files += [p.relative_to(source) for p in sorted((source / folder).rglob("*"))
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    if not force:
        existing = [f for f in files if (target / f).exists()]
        if existing:
            raise FileExistsError(f"{target / existing[0]} exists (and {len(existing) - 1} more): use --force to overwrite")
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)
    return files


def _init(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pyinfra-iis init", description=init.__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="the new project folder")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    try:
        files = init(args.directory, force=args.force)
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"pyinfra-iis init: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files into {args.directory}; next: edit inventories/prod.py and "
          "inventories/group_data/all.py, then run pyinfra inventories/prod.py deploys/site.py")
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"demo": _demo, "init": _init, "release": _release, "sim": _sim}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pyinfra-iis COMMAND ARGS...``; return the command's exit code."""

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(f"pyinfra-iis {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"pyinfra-iis: unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return int(command(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
