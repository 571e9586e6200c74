"""Encodings: the charset comes from the Content-Type header, else `<meta charset>`, else a fallback;
non-HTML responses are not parsed for links."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.demo.site import SiteServer
from tests.pipelines.apisite import ApiServer
from tests.pipelines.conftest import run_job

TEXT = {
    "utf-8": "Café naïve résumé — 日本語 ✓",
    "iso-8859-1": "Café naïve résumé",
    "windows-1252": "Café naïve résumé — “quoted”",
    "shift_jis": "日本語のページ",
    "euc-jp": "日本語のページ",
    "koi8-r": "Привет, мир",
}


async def _title(site: SiteServer, path: str, tmp_path: Path) -> str:
    _, items = await run_job({"start_urls": [site.url_for(path)], "extract": {"links": None, "fields": {"title": "title"}},
                              "scope": {"robots_txt": False}}, tmp_path)  # fmt: skip
    assert len(items) == 1
    return str(items[0]["title"])


@pytest.mark.parametrize("where", ["header", "meta", "both"])
@pytest.mark.parametrize("encoding", sorted(TEXT))
async def test_declared_charset_decodes_fields(
    http1_site: SiteServer, tmp_path: Path, encoding: str, where: str
) -> None:
    assert await _title(http1_site, f"/charset/{encoding}?where={where}", tmp_path) == TEXT[encoding]


async def test_undeclared_utf8_is_decoded_as_utf8(http1_site: SiteServer, tmp_path: Path) -> None:
    assert await _title(http1_site, "/charset/utf-8?where=none", tmp_path) == TEXT["utf-8"]


async def test_undeclared_latin1_falls_back_to_windows_1252(http1_site: SiteServer, tmp_path: Path) -> None:
    assert await _title(http1_site, "/charset/windows-1252?where=none", tmp_path) == TEXT["windows-1252"]


async def test_non_html_responses_are_not_parsed_for_links(api: ApiServer, tmp_path: Path) -> None:
    # The text sitemap served as text/plain holds a URL, and JSON holds "url" fields: neither is a link.
    api.log(clear=True)
    await run_job({"start_urls": [f"{api.url}/sitemaps/c.txt", f"{api.url}/next/items"],
                   "scope": {"robots_txt": False}}, tmp_path)  # fmt: skip
    assert not [p for p in api.paths() if p.startswith("/p/")]


UNLABELLED = {
    # Short pages, where the detector alone confuses windows-1252 with its Baltic and Central European cousins.
    "french": ("Déjà vu à la crème brûlée, café résumé", "cp1252"),
    "spanish": ("¿Dónde está el niño? ¡Olé! Año", "cp1252"),
    "german": ("Über die Straße gehen, schön, Größe", "cp1252"),
    "polish": ("Zażółć gęślą jaźń, żółw łódź", "cp1250"),
    "czech": ("Příliš žluťoučký kůň úpěl ďábelské ódy", "cp1250"),
    "russian": ("Съешь же ещё этих мягких французских булок", "cp1251"),
    "greek": ("Ξεσκεπάζω την ψυχοφθόρα βδελυγμία", "cp1253"),
    "japanese": ("こんにちは世界、これはテストです", "shift_jis"),
}


@pytest.mark.parametrize("language", sorted(UNLABELLED))
def test_an_unlabelled_short_page_reads_in_its_own_language(language: str) -> None:
    import httpx

    from crawler.model.page import Page
    from crawler.model.request import Request

    text, encoding = UNLABELLED[language]
    html = f"<html><head><title>{text[:12]}</title></head><body><h1>{text}</h1></body></html>"
    page = Page(Request("http://t.test/"), "http://t.test/", 200, "HTTP/1.1",
                httpx.Headers({"content-type": "text/html"}), html.encode(encoding))  # fmt: skip
    assert page.text == html
