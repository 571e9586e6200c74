"""The `demo` extra: hypercorn serves the loopback sites, trustme makes their certificates. Neither is a
dependency of the crawler itself, so every entry point checks for them and says how to install them."""

from __future__ import annotations

import importlib.util

__all__ = ["DEMO_EXTRA", "MissingDemoExtra", "missing_demo_packages", "require_demo_extra"]

DEMO_EXTRA = ("hypercorn", "trustme")


class MissingDemoExtra(ModuleNotFoundError):
    """hypercorn or trustme is not installed; the message says how to install them."""


def missing_demo_packages(*names: str) -> list[str]:
    """Which of `names` (default: the whole extra) cannot be imported."""
    return [name for name in names or DEMO_EXTRA if importlib.util.find_spec(name) is None]


def require_demo_extra(*names: str) -> None:
    """Raise MissingDemoExtra naming what is missing and the install command."""
    missing = missing_demo_packages(*names)
    if missing:
        raise MissingDemoExtra(
            f"{' and '.join(missing)} not installed: the demo site and the loopback test servers need the "
            "'demo' extra: pip install 'crawler[demo]' (or, in a clone, pip install -e '.[demo]')",
            name=missing[0],
        )
