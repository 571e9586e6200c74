"""Stages the feature tests name by import path in their job files."""

from __future__ import annotations

from crawler import Page


def mark_blog(page: Page) -> None:
    page.item["section"] = "blog"


def mark_default(page: Page) -> None:
    page.item["section"] = "default"
