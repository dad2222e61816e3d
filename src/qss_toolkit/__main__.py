"""`python -m qss_toolkit COMMAND ...`: the entry point that every nox session calls."""

from __future__ import annotations

import importlib
import logging
import sys

from qss_toolkit import settings
from qss_toolkit.errors import FatalError

# Command name -> module whose `main(argv) -> int` implements it. One module per concern.
COMMANDS: dict[str, str] = {
    "packages": "qss_toolkit.build.packages",
    "sources": "qss_toolkit.build.sources",
    "distro-files": "qss_toolkit.build.distro_files",
    "rebuild": "qss_toolkit.build.rebuild",
    "dep8": "qss_toolkit.build.dep8",
    "lint": "qss_toolkit.build.lint",
    "smoke": "qss_toolkit.smoke.runner",
    "repo": "qss_toolkit.repo.publish",
    "bench": "qss_toolkit.bench.runner",
    "pipelines": "qss_toolkit.build.pipelines",
}

USAGE = "usage: python -m qss_toolkit [--debug] {" + ",".join(COMMANDS) + "} [ARGS...]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        debug = debug or settings.settings().debug
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.return_code
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    settings.warn_unknown()
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        # Inside the handler: modules derive names from packaging/nfpm/ when they load.
        module = importlib.import_module(COMMANDS[args[0]])
        return int(module.main(args[1:]))
    except FatalError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.return_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
