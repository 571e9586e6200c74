"""Keeping secrets out of what the crawler prints: `crawler check`, logs, the summary, `stats.json` and
`crawler status`.

A secret is (1) every value under a key that looks like a credential (auth, token, secret, password, key,
cookie, credential, session), header names included (`X-Api-Key`, `Authorization`), whether it is written
in the file or substituted from the environment (`${TOKEN}`); (2) the password in a URL's userinfo
(`redis://:pw@host`, `http://user:pw@proxy`). Each is shown as `***` wherever it appears, also inside longer
text (a URL with `?token=...`, a log line). Values substituted under other keys (`start_urls: [${SITE}]`)
are shown: masking every host name in every log line would make the log useless. Values shorter than 4
characters are not masked: they would mask half the output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MASK", "SecretFilter", "collect_secrets", "redact", "redact_tree"]

MASK = "***"
_SECRET_KEY = re.compile(r"auth|token|secret|passw|key|cookie|credential|session", re.I)
_MIN_LENGTH = 4


def _url_password(value: str) -> str | None:
    if "@" not in value or "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def collect_secrets(data: Any) -> frozenset[str]:
    """The secret strings of a job's data (its `model_dump()`)."""
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, secret or (isinstance(key, str) and bool(_SECRET_KEY.search(key))))
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value, secret)
        elif isinstance(node, str):
            if secret and len(node) >= _MIN_LENGTH:
                found.add(node)
            password = _url_password(node)
            if password and len(password) >= _MIN_LENGTH:
                found.add(password)

    walk(data, False)
    return frozenset(found)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***` (longest first, so one secret inside another is covered)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_tree(data: Any, secrets: frozenset[str]) -> Any:
    """A copy of JSON-like `data` with every string redacted."""
    if not secrets:
        return data
    if isinstance(data, dict):
        return {redact(k, secrets) if isinstance(k, str) else k: redact_tree(v, secrets) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_tree(v, secrets) for v in data]
    if isinstance(data, str):
        return redact(data, secrets)
    return data


class SecretFilter(logging.Filter):
    """A logging filter that masks the secrets in every record's message (install it on the handlers)."""

    def __init__(self, secrets: frozenset[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            masked = redact(message, self.secrets)
            if masked != message:
                record.msg, record.args = masked, None
        return True
