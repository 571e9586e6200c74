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

from crawler._config import (
    AuthConfig,
    ConcurrencyConfig,
    ExtractConfig,
    HttpConfig,
    Job,
    LimitsConfig,
    OAuth2Config,
    OutputConfig,
    Rate,
    RateLimitConfig,
    RetryConfig,
    SaveConfig,
    ScopeConfig,
    TimeoutConfig,
    parse_rate,
    parse_size,
)
from crawler._engine import Crawler, Stage
from crawler._fetch import BodyTooLarge, FetchError
from crawler._frontier import FrontierBackend, MemoryFrontier
from crawler._jobfile import JobError, JobProblem
from crawler._limiter import HostLimiter
from crawler._page import Page
from crawler._request import Request
from crawler._retry import RetryPolicy, parse_retry_after
from crawler._stages import DropPage, StageLoadError
from crawler._stats import Stats
from crawler._url import canonicalize, fingerprint

__version__ = "0.1.0"

if TYPE_CHECKING:
    from crawler._download import DownloadEntry, DownloadResult, download

_LAZY = {"DownloadEntry", "DownloadResult", "download"}


def __getattr__(name: str) -> Any:
    # The downloader loads on first use: a crawl's start-up does not pay for its imports.
    if name in _LAZY:
        from crawler import _download

        value = getattr(_download, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crawler' has no attribute {name!r}")

__all__ = [
    "AuthConfig",
    "BodyTooLarge",
    "ConcurrencyConfig",
    "Crawler",
    "DownloadEntry",
    "DownloadResult",
    "DropPage",
    "ExtractConfig",
    "FetchError",
    "FrontierBackend",
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
