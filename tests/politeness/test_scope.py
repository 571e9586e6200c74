"""Scope rules: allowed domains, allow/deny patterns, depth."""

from crawler.config.job import ScopeConfig
from crawler.politeness.scope import Scope


def test_allowed_domains_default_to_start_hosts_and_cover_subdomains() -> None:
    scope = Scope(ScopeConfig(), ["https://Example.com:8443/start"])
    assert scope.allows("https://example.com/x", "example.com", 1)
    assert scope.allows("https://docs.example.com/x", "docs.example.com", 1)
    assert not scope.allows("https://evil.com/x", "evil.com", 1)
    assert not scope.allows("https://notexample.com/x", "notexample.com", 1)


def test_allow_deny_and_depth() -> None:
    scope = Scope(ScopeConfig(allow=[r"/docs/"], deny=[r"\.pdf$"], max_depth=2), ["http://e.com/"])
    assert scope.allows("http://e.com/docs/a", "e.com", 2)
    assert not scope.allows("http://e.com/docs/a", "e.com", 3)
    assert not scope.allows("http://e.com/blog/a", "e.com", 1)
    assert not scope.allows("http://e.com/docs/a.pdf", "e.com", 1)
