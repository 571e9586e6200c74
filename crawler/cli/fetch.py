"""`crawler fetch URL [--job JOB]`: fetch one page the way a job would and print what the job would make of
it: the status, the headers, the item's fields and the links it would follow.

`PageProbe` is the shared half of the development loop (`crawler shell` uses it too): the job's client
(its HTTP cache included), fetcher and pipeline stages, applied to one URL at a time, without a frontier,
a writer or politeness delays.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

from crawler.cli import EXIT_ERRORS, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    import httpx

    from crawler.config.job import Job
    from crawler.engine.stages import Stage
    from crawler.fetch.fetcher import Fetcher
    from crawler.model.page import Page

__all__ = ["PageProbe", "add_parser", "load_probe_job", "main"]

_EPILOG = """\
examples:
  crawler fetch https://example.com/
  crawler fetch https://example.com/post/1 --job job.yaml       # the fields and links job.yaml would get
  crawler fetch https://example.com/ --job job.yaml --json | jq .item

With --job, the page goes through the job's HTTP settings (its http.cache too), its routes, built-in stages
and own stages, exactly as in a crawl. Exit 0 when the page was fetched (whatever its status), 1 when the
fetch failed, 2 on a bad job or usage.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fetch", help="fetch one URL and show what a job extracts from it",
                       description="Fetch one page as a job would; print status, headers, fields and links.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("url", help="the page to fetch (absolute http(s) URL)")
    p.add_argument("--job", help="the job file whose settings, fields and stages apply (default: none)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, as with crawler run (repeatable)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--body", action="store_true", help="also print the decoded body")
    p.set_defaults(handler=main)


def load_probe_job(url: str, job_path: str | None, overrides: list[str]) -> Job:
    """The job a probe applies: the job file's (start URLs replaced by `url`), or a default job."""
    from crawler.config.job import load_job, load_job_text

    if job_path:
        job = load_job(job_path, overrides)
    else:
        job = load_job_text(f"start_urls: [{json.dumps(url)}]\n", "<fetch>", overrides)
    job.start_urls = [url]  # validated on assignment: an absolute http(s) URL
    return job


class PageProbe:
    """The job's client, fetcher and stages, applied to one URL at a time.

    ```python
    async with PageProbe(job) as probe:
        page = await probe.fetch("https://example.com/")
        print(page.item, [r.url for r in page.requests])
    ```
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self._client: httpx.AsyncClient | None = None
        self._fetcher: Fetcher | None = None
        self._stages: list[Stage] = []
        self.dropped: str | None = None

    async def __aenter__(self) -> PageProbe:
        from crawler.engine.stages import build_stages
        from crawler.fetch.fetcher import Fetcher
        from crawler.http.client import build_client

        self._client = build_client(self.job.http)
        # No retry statuses: a 503 is shown as it came, body included.
        self._fetcher = Fetcher.for_job(self._client, self.job, retry_statuses=frozenset())
        self._stages = build_stages(self.job)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        for stage in self._stages:
            close = getattr(stage, "close", None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result
        if self._client is not None:
            await self._client.aclose()

    def runs_stages_on(self, status: int) -> bool:
        """Whether a crawl of this job runs its stages on a page answering `status`."""
        return status < 400 or status in self.job.handle_statuses

    async def fetch(self, url: str) -> Page:
        """Fetch `url` and run the job's stages on it (when a crawl would). `dropped` says why a stage
        dropped the page, else None. Raises httpx errors and `FetchError` as a crawl's fetch does."""
        from crawler.model.errors import DropPage
        from crawler.model.page import Page
        from crawler.model.request import Request

        assert self._fetcher is not None, "use `async with PageProbe(job)`"
        self.dropped = None
        page = await self._fetcher.fetch(Request.make(url))
        if not self.runs_stages_on(page.status):
            return page
        for stage in self._stages:
            try:
                result: Any = stage(page)
                if inspect.isawaitable(result):
                    result = await result
            except DropPage as exc:
                self.dropped = str(exc) or "DropPage"
                break
            if isinstance(result, Page):
                page = result
        return page

    def report(self, page: Page) -> dict[str, Any]:
        """What `crawler fetch --json` prints for `page`."""
        return {
            "url": page.url,
            "status": page.status,
            "http_version": page.http_version,
            "headers": dict(page.headers.multi_items()),
            "encoding": page.encoding if page.body else None,
            "stages_ran": self.runs_stages_on(page.status),
            "dropped": self.dropped,
            "item": page.item,
            "items": page.items,
            "links": [r.url for r in page.requests],
        }


def render_text(report: dict[str, Any]) -> str:
    lines = [f"{report['http_version']} {report['status']}  {report['url']}"]
    lines += [f"{k}: {v}" for k, v in report["headers"].items()]
    lines.append("")
    if not report["stages_ran"]:
        lines.append(f"(a crawl runs no stages on an HTTP {report['status']} page: see handle_statuses)")
        return "\n".join(lines)
    if report["dropped"]:
        lines.append(f"dropped by a stage: {report['dropped']}")
    lines.append("fields:")
    lines += [f"  {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in report["item"].items()] or ["  (none)"]
    if report["items"] is not None:
        lines.append(f"items ({len(report['items'])}):")
        lines += [f"  {json.dumps(i, ensure_ascii=False)}" for i in report["items"]]
    lines.append(f"links ({len(report['links'])}):")
    lines += [f"  {u}" for u in report["links"]]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import httpx

    from crawler.config.jobfile import JobError
    from crawler.engine.runtime import configure_logging, run_async
    from crawler.model.errors import FetchError

    configure_logging("WARNING")
    try:
        job = load_probe_job(args.url, args.job, args.overrides)
    except JobError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE

    async def go() -> tuple[dict[str, Any], str]:
        async with PageProbe(job) as probe:
            page = await probe.fetch(job.start_urls[0])
            return probe.report(page), page.text if args.body else ""

    try:
        report, body = run_async(go)
    except (httpx.HTTPError, FetchError) as exc:
        print(f"crawler fetch: {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    if args.json:
        if args.body:
            report["body"] = body
        print(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        print(render_text(report))
        if args.body:
            print("\nbody:\n" + body)
    return EXIT_OK
