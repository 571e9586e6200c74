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

__version__ = "0.1.0"

if TYPE_CHECKING:
    from crawler.downloader import DownloadEntry, DownloadProgress, DownloadResult, download

_LAZY = {"DownloadEntry", "DownloadProgress", "DownloadResult", "download"}


def __getattr__(name: str) -> Any:
    # The downloader loads on first use: a crawl's start-up does not pay for its imports.
    if name in _LAZY:
        import crawler.downloader

        value = getattr(crawler.downloader, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crawler' has no attribute {name!r}")


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
