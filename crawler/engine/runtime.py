"""Process plumbing shared by the CLI and the child processes of a crawl: logging set-up, the event loop
(uvloop where installed), and Ctrl-C / SIGTERM handling."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["configure_logging", "install_stop_signals", "mask_secrets_in_logs", "run_async"]

T = TypeVar("T")


def configure_logging(level: str = "INFO", log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")  # fmt: skip
    # httpx logs every request at INFO: far too chatty for a crawler.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("hpack").setLevel(logging.WARNING)


def mask_secrets_in_logs(secrets: frozenset[str]) -> None:
    """Every handler configured so far shows the job's secrets as *** (crawler.config.secrets)."""
    if not secrets:
        return
    from crawler.config.secrets import SecretFilter

    secret_filter = SecretFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(secret_filter)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` on uvloop where installed, else asyncio's default loop. The command line turns the garbage
    collector off while it starts up: it goes back on here, with what start-up built moved out of its way."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-CPython or Windows
        return asyncio.run(main())
    return uvloop.run(main())


def install_stop_signals(stop: Callable[[], None], on_force: Callable[[], None] | None = None) -> None:
    """First SIGINT/SIGTERM: `stop()` (finish cleanly). Second: `on_force()` then exit 130 at once."""
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def handler(signame: str) -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            logging.getLogger("crawler").warning("%s: stopping (finishing in-flight requests; again to quit now)",
                                                 signame)  # fmt: skip
            stop()
        else:
            if on_force is not None:
                try:
                    on_force()
                finally:
                    os._exit(130)
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig.name)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: handler("signal"))
