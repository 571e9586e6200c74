"""Stages the feature tests name by import path in their job files."""

from __future__ import annotations

import os

from crawler import Failure, Page


def mark_blog(page: Page) -> None:
    page.item["section"] = "blog"


def mark_default(page: Page) -> None:
    page.item["section"] = "default"


FAILURES: list[Failure] = []


def record_failure(failure: Failure) -> None:
    """An on_error hook: keeps failures in FAILURES, and appends them to $FAILURES_OUT when set."""
    FAILURES.append(failure)
    out = os.environ.get("FAILURES_OUT")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(f"{failure.kind}\t{failure.url}\t{failure.referer}\n")


def not_found_title(page: Page) -> None:
    """A stage that sees 404 pages when the job has handle_statuses: [404]."""
    if page.status == 404:
        page.item["missing"] = True
