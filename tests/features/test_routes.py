"""Per-page rules (issue 13, point 3): `routes:` (first match wins; fields, stages, follow), `::text` as the
element's own text with `::all-text` for the subtree, and `re:` per field. Against nginx serving a small
docs-and-blog site, through the console script and the library."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from crawler import Crawler, ExtractConfig, FieldRule, HttpConfig, Job, JobError, Page, Request, RouteConfig
from crawler.config.job import field_spec, load_job_text
from crawler.pipelines.fields import extract_fields
from tests.features.conftest import Cli, SiteFactory, job_yaml, jsonl, write_page

pytestmark = pytest.mark.timeout(90)

PYTHON_TITLE = "What\u2019s New in Python"  # the Python docs' heading, with its typographic apostrophe


def _docs_site(root: Path) -> None:
    write_page(root, "/", "Home", ["/docs/a.html", "/docs/b.html", "/blog/2024/hello.html", "/tags/python.html"])
    for name, title in (("a", PYTHON_TITLE), ("b", "Installing")):
        # Sphinx's pattern: a permalink inside the heading.
        write_page(root, f"/docs/{name}.html", "x", body=f'<h1 id="h">{title} <a class="headerlink" href="#h">¶</a>'
                                                         "</h1>")  # fmt: skip
    write_page(root, "/blog/2024/hello.html", "Hello", body='<p class="date">Posted on 2024-03-05 by Ann</p>'
                                                             '<p class="tags"><a>py</a> <a>web</a></p>')  # fmt: skip
    write_page(root, "/tags/python.html", "Tag: python", ["/only-from-tags.html"])
    write_page(root, "/only-from-tags.html", "Hidden")


JOB = """\
start_urls: ['{url}/']
http: {{http2: false}}
rate_limit: {{per_host: unlimited}}
extract: {{fields: {{title: title}}}}
stages: ['tests.features.stages_for_tests:mark_default']
routes:
  - match: '/docs/'
    fields: {{heading: 'h1::text', heading_all: 'h1::all-text', anchor: 'h1 a::attr(href)'}}
  - match: '/blog/\\d{{4}}/'
    fields:
      title: 'h1::text'
      date: {{css: '.date', re: '(\\d{{4}}-\\d{{2}}-\\d{{2}})'}}
      tags: 'p.tags a::text[]'
    stages: ['tests.features.stages_for_tests:mark_blog']
  - match: '/tags/'
    follow: false
output: {{items: items.jsonl}}
"""


def _check_items(items: list[dict[str, object]]) -> None:
    by_path = {str(i["url"]).split("/", 3)[3]: i for i in items}
    assert set(by_path) == {"", "docs/a.html", "docs/b.html", "blog/2024/hello.html", "tags/python.html"}
    assert by_path["docs/a.html"]["heading"] == PYTHON_TITLE
    assert by_path["docs/a.html"]["heading_all"] == PYTHON_TITLE + " ¶"
    assert by_path["docs/a.html"]["anchor"] == "#h"
    assert "title" not in by_path["docs/a.html"]  # the route's fields replace the job's
    assert by_path["docs/b.html"]["section"] == "default"
    blog = by_path["blog/2024/hello.html"]
    assert blog["title"] == "Hello" and blog["date"] == "2024-03-05" and blog["tags"] == ["py", "web"]
    assert blog["section"] == "blog"  # the route's stages replace the job's
    assert by_path[""]["title"] == "Home" and by_path[""]["section"] == "default"
    assert by_path["tags/python.html"]["title"] == "Tag: python"


def test_routes_through_the_console_script(cli: Cli, tmp_path: Path, static_site: SiteFactory) -> None:
    _docs_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job_yaml(tmp_path, JOB.format(url=site.url))
    assert cli("check", "-q", "job.yaml").returncode == 0
    proc = cli("run", "job.yaml", "--progress", "off")
    assert proc.returncode == 0, proc.stderr
    _check_items(jsonl(tmp_path / "items.jsonl"))
    # follow: false on /tags/: the page only linked from there was never requested.
    assert "/only-from-tags.html" not in [r["uri"] for r in site.requests()]


async def test_routes_in_code(tmp_path: Path, static_site: SiteFactory) -> None:
    _docs_site(tmp_path / "www")
    site = static_site(tmp_path / "www")
    job = Job(
        start_urls=[site.url + "/"],
        http=HttpConfig(http2=False),
        extract=ExtractConfig(fields={"title": "title"}),
        routes=[
            RouteConfig(match="/docs/", fields={"heading": "h1::text"}),
            RouteConfig(match="/blog/", fields={"date": FieldRule(css=".date", re=r"\d{4}-\d\d-\d\d")}),
            RouteConfig(match="/tags/", follow=False),
        ],
    )
    got = {}
    async with Crawler(job) as crawler:
        async for page in crawler.crawl():
            got[page.url.split("/", 3)[3]] = page.item
    assert got["docs/a.html"] == {"heading": PYTHON_TITLE}
    assert got["blog/2024/hello.html"] == {"date": "2024-03-05"}
    assert got[""] == {"title": "Home"}
    assert "only-from-tags.html" not in got


def _page(html: str) -> Page:
    url = "https://example.com/"
    return Page(Request.make(url), url, 200, "HTTP/1.1", httpx.Headers({"content-type": "text/html"}), html.encode())


@pytest.mark.parametrize(("spec", "pattern", "expected"), [
    ("p::text", None, "Hello world"),
    ("p::all-text", None, "Hello big world"),
    ("p", None, "Hello big world"),
    ("div::text", None, ""),
    ("p::text", r"w\w+", "world"),
    ("p::all-text", r"(b\w+) (w\w+)", "big"),
    ("p::text", r"nothing", None),
    ("li::text[]", r"\d+", ["1", "3"]),
])  # fmt: skip
def test_text_kinds_and_regex(spec: str, pattern: str | None, expected: object) -> None:
    page = _page("<p>Hello <b>big</b> world</p><div><span>child only</span></div><ul><li>a1</li><li>b</li><li>c3</li></ul>")
    value = FieldRule(css=spec, re=pattern) if pattern else spec
    assert extract_fields(page, [("v", field_spec(value))]) == {"v": expected}


def test_bad_route_and_regex_are_reported_with_their_key() -> None:
    with pytest.raises(JobError, match=r":2:11: routes\[0\]\.match: invalid regular expression"):
        load_job_text("start_urls: ['https://e.com/']\nroutes: [{match: '(['}]\n")
    with pytest.raises(JobError, match=r"extract\.fields.*invalid regular expression '\(x'"):
        load_job_text("start_urls: ['https://e.com/']\nextract: {fields: {price: {css: p, re: '(x'}}}\n")
    with pytest.raises(JobError, match=r"routes\[0\]\.folow: unknown key"):
        load_job_text("start_urls: ['https://e.com/']\nroutes: [{match: x, folow: false}]\n")
