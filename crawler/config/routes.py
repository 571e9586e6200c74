"""Which route of a job a page belongs to: the job's `routes:` compiled once, matched by URL (first wins)."""

from __future__ import annotations

import re
from typing import Self

from crawler.config.job import Job, RouteConfig

__all__ = ["Routes"]


class Routes:
    """The compiled `routes:` of a job. `index(url)` is the first matching route's position, or None (the
    job's defaults apply). Several stages ask about the same page in turn, so the last answer is kept."""

    __slots__ = ("_last", "_patterns", "routes")

    def __init__(self, routes: list[RouteConfig]) -> None:
        self.routes = list(routes)
        self._patterns = [re.compile(r.match) for r in routes]
        self._last: tuple[str, int | None] = ("", None)

    @classmethod
    def of_job(cls, job: Job) -> Self | None:
        """The job's routes, or None when it has none."""
        return cls(job.routes) if job.routes else None

    def index(self, url: str) -> int | None:
        last_url, last = self._last
        if url == last_url:
            return last
        found = next((i for i, p in enumerate(self._patterns) if p.search(url)), None)
        self._last = (url, found)
        return found

    def route(self, url: str) -> RouteConfig | None:
        i = self.index(url)
        return None if i is None else self.routes[i]

    def follows(self, url: str) -> bool:
        """Whether links found on `url` are followed (`follow:` of its route; yes without one)."""
        route = self.route(url)
        return route is None or route.follow

    def runs_default_stages(self, url: str) -> bool:
        """Whether the job's own `stages` run on `url`: its route does not name stages of its own."""
        route = self.route(url)
        return route is None or route.stages is None

    def __len__(self) -> int:
        return len(self.routes)
