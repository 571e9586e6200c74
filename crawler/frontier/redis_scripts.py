"""The Lua scripts of the Redis frontier (`crawler/frontier/lua/*.lua`), read once at import and shipped in the
wheel. Each file's header states its KEYS, ARGV and reply; every key a script touches shares one hash slot."""

from __future__ import annotations

from importlib import resources

__all__ = ["SCRIPTS"]

_LUA = resources.files("crawler.frontier") / "lua"
_USES_PRELUDE = frozenset({"pop", "pull", "ack", "release"})
_NAMES = ("push", "pop", "pull", "ack", "commit", "renew", "beat", "members", "release")


def _load(name: str) -> str:
    """The source of `lua/<name>.lua`, with the shared prelude in front when it uses it."""
    text = (_LUA / f"{name}.lua").read_text(encoding="utf-8")
    return (_LUA / "prelude.lua").read_text(encoding="utf-8") + text if name in _USES_PRELUDE else text


SCRIPTS = {name: _load(name) for name in _NAMES}
