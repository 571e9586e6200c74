"""User stages loaded by import path in the engine tests (`tests.engine.stages_for_tests:...`)."""

from crawler import Page


def tag(page: Page) -> None:
    page.item["tagged_by"] = "import-path stage"


class CountingStage:
    calls = 0

    def __call__(self, page: Page) -> None:
        CountingStage.calls += 1
        page.item["count"] = CountingStage.calls
