"""The benchmark site: N static HTML pages of ~8 KB with ~14 links each, all reachable from page 0.

Page i links to page i+1 (so every page is reachable from page 0 whatever the rest of the graph does) and
to 13 other pages drawn from a seeded generator, so the crawl is a broad, shallow graph (depth ~5 from page
0) and each page is discovered many times over: the crawler's dedup is exercised as on a real site.
Generation is deterministic; a site already on disk with the same parameters is reused.

    python -m benchmarks.site DIR --pages 10000
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

__all__ = ["LINKS_PER_PAGE", "PAGE_BYTES", "generate_site", "page_path", "page_title"]

PAGE_BYTES = 8_000
LINKS_PER_PAGE = 14
_SEED = 20_240_601
_WORDS = ("crawler frontier request response header body stream token bucket host limiter retry backoff "
          "parser selector title anchor fingerprint queue worker stage writer item page link site").split()  # fmt: skip


def page_path(i: int) -> str:
    """The URL path of page i (page 0 is the start URL)."""
    return f"/p/{i}.html"


def page_title(i: int) -> str:
    return f"Benchmark page {i}"


def _links(i: int, pages: int, rng: random.Random) -> list[int]:
    targets = [(i + 1) % pages]
    while len(targets) < min(LINKS_PER_PAGE, pages - 1):
        t = rng.randrange(pages)
        if t != i and t not in targets:
            targets.append(t)
    return targets


def _page(i: int, pages: int, rng: random.Random) -> bytes:
    nav = "".join(f'<li><a href="{page_path(t)}">{page_title(t)}</a></li>\n' for t in _links(i, pages, rng))
    head = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{page_title(i)}</title>\n<meta name="description" content="page {i} of {pages}">\n'
        "</head><body>\n"
        f"<header><h1>{page_title(i)}</h1></header>\n<nav><ul>\n{nav}</ul></nav>\n<main>\n"
    )
    tail = "</main>\n<footer>generated for crawler benchmarks</footer>\n</body></html>\n"
    paragraphs: list[str] = []
    size = len(head) + len(tail)
    while size < PAGE_BYTES - 120:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16)))
        p = f"<p>{words.capitalize()}.</p>\n"
        paragraphs.append(p)
        size += len(p)
    return (head + "".join(paragraphs) + tail).encode()


def generate_site(root: str | Path, pages: int = 10_000) -> Path:
    """Write the site under `root/www` (reused when already generated with the same size); return www."""
    www = Path(root) / "www"
    stamp = www / ".site.json"
    params = {"pages": pages, "page_bytes": PAGE_BYTES, "links": LINKS_PER_PAGE, "seed": _SEED, "version": 1}
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return www
    (www / "p").mkdir(parents=True, exist_ok=True)
    for old in (www / "p").glob("*.html"):
        old.unlink()
    rng = random.Random(_SEED)
    for i in range(pages):
        (www / "p" / f"{i}.html").write_bytes(_page(i, pages, rng))
    (www / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    (www / "index.html").write_text(f'<html><head><title>index</title></head><body><a href="{page_path(0)}">'
                                    "start</a></body></html>\n")  # fmt: skip
    stamp.write_text(json.dumps(params))
    return www


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--pages", type=int, default=10_000)
    args = ap.parse_args()
    www = generate_site(args.dir, args.pages)
    print(www)


if __name__ == "__main__":
    main()
