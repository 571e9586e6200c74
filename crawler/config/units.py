"""Units a job is written in: request rates (`20/s`, `100/m`, `unlimited`) and byte sizes (`50MB`, `2GiB`)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

__all__ = ["Rate", "RateValue", "SizeValue", "parse_rate", "parse_size"]


class Rate(BaseModel):
    """A request rate: `count` requests per `period` seconds. `None` in its place means unlimited."""

    model_config = ConfigDict(frozen=True)

    count: float
    period: float

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        return f"{self.count:g}/{self.period:g}s"


# A rate a crawl can keep: at least one request a day, at most a million a second.
_MIN_PER_SECOND = 1 / 86_400
_MAX_PER_SECOND = 1_000_000.0
# A byte size a machine can have: 8 PiB.
_MAX_SIZE = 2**53


def _shown(value: Any) -> str:
    """A value as an error message quotes it: repr, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _rate(count: float, period: float, shown: Any) -> Rate:
    if not (math.isfinite(count) and math.isfinite(period)) or count <= 0 or period <= 0:
        raise ValueError(f"invalid rate {_shown(shown)}: count and period are positive, finite numbers")
    per_second = count / period
    if not _MIN_PER_SECOND <= per_second <= _MAX_PER_SECOND:
        raise ValueError(f"rate {_shown(shown)} is out of range: between one request a day and 1,000,000/s "
                         "(or 'unlimited')")  # fmt: skip
    return Rate(count=count, period=period)


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|sec|m|min|h|hour)?\s*$", re.I)
_PERIODS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(value: Any) -> Rate | None:
    """Parse `20/s`, `100/m`, `5/10s`, a bare number (per second) or `unlimited` (returns None)."""
    if value is None or isinstance(value, Rate):
        return value
    if isinstance(value, dict):
        if set(value) != {"count", "period"}:
            raise ValueError("a rate mapping has exactly the keys count and period (or write it as '20/s')")
        count, period = value["count"], value["period"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in (count, period)):
            raise ValueError("a rate's count and period are positive numbers")
        return _rate(float(count), float(period), value)
    if isinstance(value, bool):
        raise ValueError("a rate is like '20/s', '100/m' or 'unlimited', not a boolean")
    if isinstance(value, int | float):
        if not value > 0:
            raise ValueError("a rate must be positive (or 'unlimited')")
        return _rate(float(value), 1.0, value)
    if isinstance(value, str):
        if value.strip().lower() in {"unlimited", "none", "inf"}:
            return None
        m = _RATE_RE.match(value)
        if m:
            count = float(m.group(1))
            mult = float(m.group(2)) if m.group(2) else 1.0
            unit = _PERIODS[(m.group(3) or "s").lower()]
            if count > 0 and mult > 0:
                return _rate(count, mult * unit, value)
    raise ValueError(f"invalid rate {_shown(value)}: use 'N/s', 'N/m', 'N/h', 'N/10s' or 'unlimited'")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}  # fmt: skip


def parse_size(value: Any) -> int | None:
    """Parse a byte size: an integer or `50MB`, `1.5GiB`, `512k`. None stays None (no cap)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or like '50MB'")
    size: float | None = None
    if isinstance(value, int | float):
        size = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and (m.group(2) or "").lower() in _SIZE_UNITS:
            size = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    if size is not None:
        if size != size:
            raise ValueError("a size is a number of bytes or like '50MB', not NaN")
        if size < 0:
            raise ValueError("a size cannot be negative")
        if size > _MAX_SIZE:
            raise ValueError(f"size {_shown(value)} is too large (at most 8 PiB; null for no cap)")
        return int(size)
    raise ValueError(f"invalid size {_shown(value)}: use a number of bytes or e.g. '512KB', '50MB', '2GiB'")


RateValue = Annotated[
    Rate | None,
    BeforeValidator(parse_rate),
    PlainSerializer(
        lambda r: "unlimited" if r is None else f"{r.count:g}/{'' if r.period == 1 else f'{r.period:g}'}s"
    ),
]
SizeValue = Annotated[int | None, BeforeValidator(parse_size)]
