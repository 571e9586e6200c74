"""The `crawler` command line. Each subcommand lives in its own module with `add_parser` and `main`.

Exit codes: 0 ok, 1 finished with errors (crawl error rate above `max_error_rate`, or a failed
download), 2 bad config or usage, 130 interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import types
from collections.abc import Sequence

# pydantic looks for plugins through every installed distribution's entry points the first time a model is
# built: ~40 ms of start-up for plugins a command-line crawl never uses. Library users keep their plugins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
if os.environ["PYDANTIC_DISABLE_PLUGINS"] in ("__all__", "1", "true") and "pydantic" not in sys.modules:
    # With plugins off, pydantic's loader still imports importlib.metadata (zipfile, email, ...) at the first
    # model: ~10% of start-up. This stand-in answers what the real loader answers when plugins are off.
    # Anything else asked of it (a later pydantic) loads the real loader instead: never an ImportError.
    _loader = types.ModuleType("pydantic.plugin._loader")
    _loader.get_plugins = lambda: ()  # type: ignore[attr-defined]

    def _real_loader(name: str) -> object:
        if name.startswith("__"):  # the import system's probes (__path__, __file__...): a plain module's answer
            raise AttributeError(name)
        sys.modules.pop("pydantic.plugin._loader", None)
        return getattr(importlib.import_module("pydantic.plugin._loader"), name)

    _loader.__getattr__ = _real_loader  # type: ignore[method-assign]
    sys.modules.setdefault("pydantic.plugin._loader", _loader)
# httpx imports its own command line (click, rich's syntax highlighting, pygments) whenever click is installed:
# ~1/3 of httpx's import time. A None entry makes that import fail the way httpx expects when click is missing.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

__all__ = ["main"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_COMMANDS = ("run", "check", "download", "status", "fetch", "shell", "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """`--version`: reads the installed version only when asked (every other run skips the lookup)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import version

        print(f"crawler {version('crawler')}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command`, only that subcommand's parser (start-up: `crawler download` then
    never imports what `crawler run` or `crawler check` need, and the help and errors it prints are the same)."""
    parser = _Parser(prog="crawler", description="High-throughput async crawler and downloader.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="examples:\n  crawler run configs/demo.yaml\n  crawler check job.yaml\n"
                            "  crawler download -i urls.txt -d out/")  # fmt: skip
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in (command,) if command in _COMMANDS else _COMMANDS:
        try:
            module = importlib.import_module(f"crawler.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"crawler.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up allocates ~100k long-lived objects (modules, pydantic schemas) and no garbage worth collecting:
    # the collector stays off until `run_async` starts the event loop, which freezes them out of its way.
    gc.disable()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
