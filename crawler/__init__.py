"""crawler: a high-throughput async crawling and download engine.

```python
from crawler import Crawler, Job

job = Job.from_yaml("configs/demo.yaml")
async with Crawler(job) as crawler:
    async for page in crawler.crawl():
        print(page.url, page.status, page.http_version, page.item)
```
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from crawler.config.job import (
        AuthConfig,
        ConcurrencyConfig,
        ExtractConfig,
        FieldRule,
        HttpConfig,
        Job,
        LimitsConfig,
        OAuth2Config,
        OutputConfig,
        RateLimitConfig,
        RetryConfig,
        RouteConfig,
        SaveConfig,
        ScopeConfig,
        TimeoutConfig,
    )
    from crawler.config.jobfile import JobError, JobProblem
    from crawler.config.units import Rate, parse_rate, parse_size
    from crawler.downloader import DownloadEntry, DownloadProgress, DownloadResult, download
    from crawler.engine.crawler import Crawler
    from crawler.engine.stages import ErrorHook, Stage
    from crawler.frontier.base import FrontierBackend, FrontierBase
    from crawler.frontier.memory import MemoryFrontier
    from crawler.model.errors import BodyTooLarge, DropPage, FetchError, StageLoadError
    from crawler.model.failure import Failure
    from crawler.model.page import Page
    from crawler.model.request import Request
    from crawler.model.url import canonicalize, fingerprint
    from crawler.output.stats import Stats
    from crawler.politeness.limiter import HostLimiter
    from crawler.politeness.retry import RetryPolicy, parse_retry_after

# Every public name loads on first use (PEP 562): `python -m crawler download` never imports the engine or
# pydantic, `crawler run` only what a crawl needs, and `import crawler` alone costs nothing.
_LAZY = {
    "AuthConfig": "crawler.config.job",
    "BodyTooLarge": "crawler.model.errors",
    "ConcurrencyConfig": "crawler.config.job",
    "Crawler": "crawler.engine.crawler",
    "DownloadEntry": "crawler.downloader",
    "DownloadProgress": "crawler.downloader",
    "DownloadResult": "crawler.downloader",
    "DropPage": "crawler.model.errors",
    "ErrorHook": "crawler.engine.stages",
    "ExtractConfig": "crawler.config.job",
    "Failure": "crawler.model.failure",
    "FetchError": "crawler.model.errors",
    "FieldRule": "crawler.config.job",
    "FrontierBackend": "crawler.frontier.base",
    "FrontierBase": "crawler.frontier.base",
    "HostLimiter": "crawler.politeness.limiter",
    "HttpConfig": "crawler.config.job",
    "Job": "crawler.config.job",
    "JobError": "crawler.config.jobfile",
    "JobProblem": "crawler.config.jobfile",
    "LimitsConfig": "crawler.config.job",
    "MemoryFrontier": "crawler.frontier.memory",
    "OAuth2Config": "crawler.config.job",
    "OutputConfig": "crawler.config.job",
    "Page": "crawler.model.page",
    "Rate": "crawler.config.units",
    "RateLimitConfig": "crawler.config.job",
    "Request": "crawler.model.request",
    "RetryConfig": "crawler.config.job",
    "RetryPolicy": "crawler.politeness.retry",
    "RouteConfig": "crawler.config.job",
    "SaveConfig": "crawler.config.job",
    "ScopeConfig": "crawler.config.job",
    "Stage": "crawler.engine.stages",
    "StageLoadError": "crawler.model.errors",
    "Stats": "crawler.output.stats",
    "TimeoutConfig": "crawler.config.job",
    "canonicalize": "crawler.model.url",
    "download": "crawler.downloader",
    "fingerprint": "crawler.model.url",
    "parse_rate": "crawler.config.units",
    "parse_retry_after": "crawler.politeness.retry",
    "parse_size": "crawler.config.units",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'crawler' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AuthConfig",
    "BodyTooLarge",
    "ConcurrencyConfig",
    "Crawler",
    "DownloadEntry",
    "DownloadProgress",
    "DownloadResult",
    "DropPage",
    "ErrorHook",
    "ExtractConfig",
    "Failure",
    "FetchError",
    "FieldRule",
    "FrontierBackend",
    "FrontierBase",
    "HostLimiter",
    "HttpConfig",
    "Job",
    "JobError",
    "JobProblem",
    "LimitsConfig",
    "MemoryFrontier",
    "OAuth2Config",
    "OutputConfig",
    "Page",
    "Rate",
    "RateLimitConfig",
    "Request",
    "RetryConfig",
    "RetryPolicy",
    "RouteConfig",
    "SaveConfig",
    "ScopeConfig",
    "Stage",
    "StageLoadError",
    "Stats",
    "TimeoutConfig",
    "__version__",
    "canonicalize",
    "download",
    "fingerprint",
    "parse_rate",
    "parse_retry_after",
    "parse_size",
]
