"""Stage plumbing: dropping a page, and loading user stages from `package.module:callable` paths."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["DropPage", "StageLoadError", "load_stage"]


class DropPage(Exception):
    """Raise from a stage to drop the page: no item is written and it is not yielded by `crawl()`.
    Requests the page already queued with `follow()` are still crawled."""


class StageLoadError(ImportError):
    pass


def load_stage(path: str) -> Any:
    """Import `package.module:callable`. A class is instantiated with no arguments."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageLoadError(f"stage {path!r}: cannot import {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise StageLoadError(f"stage {path!r}: {module_name!r} has no attribute {attr!r}") from None
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise StageLoadError(f"stage {path!r} is not callable")
    return obj
