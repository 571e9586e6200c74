"""robots.txt: fetched once per host through the shared client, parsed with protego, cached."""

from __future__ import annotations

import logging

import httpx
from protego import Protego

__all__ = ["RobotsCache"]

log = logging.getLogger("crawler.robots")
_MAX_ROBOTS_BYTES = 512 * 1024  # Google's limit; anything beyond is ignored


class RobotsCache:
    def __init__(self, client: httpx.AsyncClient, user_agent: str) -> None:
        self._client = client
        self._agent = user_agent.split("/", 1)[0].split(" ", 1)[0] or "*"
        self._rules: dict[str, Protego | None] = {}

    def known(self, host: str) -> bool:
        return host in self._rules

    async def load(self, scheme: str, host: str) -> Protego | None:
        """Fetch and parse robots.txt for `host`; None means everything is allowed."""
        url = f"{scheme}://{host}/robots.txt"
        rules: Protego | None = None
        try:
            async with self._client.stream("GET", url) as resp:
                if resp.status_code == 200:
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) >= _MAX_ROBOTS_BYTES:
                            break
                    rules = Protego.parse(bytes(body[:_MAX_ROBOTS_BYTES]).decode("utf-8", "replace"))
                elif resp.status_code >= 500:
                    log.warning("robots.txt for %s answered %d; crawling it as allowed", host, resp.status_code)
        except httpx.HTTPError as exc:
            log.warning("robots.txt for %s failed (%s); crawling it as allowed", host, type(exc).__name__)
        self._rules[host] = rules
        return rules

    def allowed(self, url: str, host: str) -> bool:
        rules = self._rules.get(host)
        return True if rules is None else bool(rules.can_fetch(url, self._agent))

    def crawl_delay(self, host: str) -> float | None:
        rules = self._rules.get(host)
        if rules is None:
            return None
        delay = rules.crawl_delay(self._agent)
        return float(delay) if delay else None

    def sitemaps(self, host: str) -> list[str]:
        rules = self._rules.get(host)
        return list(rules.sitemaps) if rules is not None else []
