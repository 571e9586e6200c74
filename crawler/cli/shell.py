"""`crawler shell URL [--job JOB]`: an interactive Python prompt on one fetched page, with the job's
selectors at hand (IPython when installed, else the standard library's console).

Names in the prompt:
  page         the fetched `Page` (status, headers, text, html: the selectolax tree, item, requests)
  css(spec)    every value of a field selector on `page`: css("h1::text"), css("a::attr(href)")
  fields()     the item the job extracts from `page` (its route's fields, else extract.fields)
  links()      the URLs the job would follow from `page`
  fetch(url)   fetch another page (relative to the current one) through the job; `page` becomes it
  job          the job
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin

from crawler.cli import EXIT_OK, EXIT_USAGE
from crawler.cli.fetch import PageProbe, load_probe_job, render_text

if TYPE_CHECKING:
    from crawler.config.job import Job
    from crawler.model.page import Page

__all__ = ["ShellSession", "add_parser", "main"]

T = TypeVar("T")
_FETCH_TIMEOUT = 300.0  # seconds: beyond the job's own timeouts, a prompt never waits forever

_BANNER = """\
crawler shell: {status} {url}
  page, css("h1::text"), fields(), links(), fetch("/other"), job       (help: print(HELP))
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("shell", help="an interactive prompt on one fetched page",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("url", help="the page to fetch first")
    p.add_argument("--job", help="the job file whose settings, routes and stages apply")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key (repeatable)")  # fmt: skip
    p.add_argument("--plain", action="store_true", help="the standard library's console even if IPython is installed")
    p.set_defaults(handler=main)


class ShellSession:
    """The objects behind the prompt's names: a `PageProbe` on an event loop in a background thread, so the
    prompt's plain (non-async) calls can fetch."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="crawler-shell-loop", daemon=True)
        self._thread.start()
        self._probe = PageProbe(job)
        self._run(self._probe.__aenter__())
        self.page: Page | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_FETCH_TIMEOUT)

    def fetch(self, url: str) -> Page:
        """Fetch `url` (relative to the current page) through the job; it becomes `page`."""
        if self.page is not None:
            url = urljoin(self.page.url, url)
        self.page = self._run(self._probe.fetch(url))
        return self.page

    def css(self, spec: str) -> list[Any]:
        """Every value of the field selector `spec` on the current page (`h1::text`, `a::attr(href)`)."""
        from crawler.config.specs import parse_field_spec
        from crawler.pipelines.fields import extract_fields

        parsed = parse_field_spec(spec.removesuffix("[]") + "[]")
        value: list[Any] = extract_fields(self._current(), [("v", parsed)])["v"]
        return value

    def fields(self) -> dict[str, Any]:
        """The fields the job's stages put in the current page's item."""
        return dict(self._current().item)

    def links(self) -> list[str]:
        """The URLs the job would follow from the current page."""
        return [r.url for r in self._current().requests]

    def show(self) -> None:
        """Print the current page as `crawler fetch` does."""
        print(render_text(self._probe.report(self._current())))

    def _current(self) -> Page:
        if self.page is None:
            raise RuntimeError("no page yet: fetch(url) first")
        return self.page

    def namespace(self) -> dict[str, Any]:
        """The prompt's names. Its `fetch` also rebinds `page` there, so `page` is always the current one."""
        names: dict[str, Any] = dict(job=self.job, css=self.css, fields=self.fields, links=self.links,
                                     show=self.show, HELP=__doc__, session=self)  # fmt: skip

        def fetch(url: str) -> Page:
            page = self.fetch(url)
            names["page"] = page
            return page

        names["fetch"] = fetch
        names["page"] = self.page
        return names

    def close(self) -> None:
        try:
            self._run(self._probe.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def _interact(names: dict[str, Any], banner: str, plain: bool) -> None:
    if not plain:
        try:
            from IPython import start_ipython
        except ImportError:
            pass
        else:
            print(banner)
            start_ipython(argv=["--no-banner"], user_ns=names)
            return
    import code

    code.interact(banner=banner, local=names, exitmsg="")


def main(args: argparse.Namespace) -> int:
    import httpx

    from crawler.config.jobfile import JobError
    from crawler.engine.runtime import configure_logging
    from crawler.model.errors import FetchError

    configure_logging("WARNING")
    try:
        job = load_probe_job(args.url, args.job, args.overrides)
    except JobError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    session = ShellSession(job)
    try:
        try:
            page = session.fetch(job.start_urls[0])
            banner = _BANNER.format(status=page.status, url=page.url)
        except (httpx.HTTPError, FetchError) as exc:
            banner = f"crawler shell: {args.url} failed: {type(exc).__name__}: {exc}\n  fetch(url) to try again"
        _interact(session.namespace(), banner, args.plain)
    finally:
        session.close()
    return EXIT_OK
