"""The pipeline a crawl runs on each page: the built-in stages the job's config asks for, then the job's own
stages, all named by import path (`package.module:callable`), as Scrapy's settings name pipelines.

The engine imports no stage: the built-in ones are found the same way as a user's, so `crawler.pipelines`
could be replaced or extended without touching the engine. A class is built with `cls.from_job(job)` when it
has that classmethod (returning None means "not configured for this job"), else with no arguments.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from crawler.config.job import Job
from crawler.config.routes import Routes
from crawler.model.errors import StageLoadError
from crawler.model.failure import Failure
from crawler.model.page import Page
from crawler.output.writers import FailureLog

__all__ = ["ErrorHook", "Stage", "build_error_hooks", "build_stages", "builtin_stage_paths", "is_async_stage", "load_stage", "only_where"]

Stage = Callable[[Page], Awaitable[Page | None] | Page | None]
# Given each request that failed after its retries (`crawl(include_failures=True)` yields the same).
ErrorHook = Callable[[Failure], Awaitable[None] | None]

SITEMAPS = "crawler.pipelines.sitemaps:SitemapStage"
JSON_ITEMS = "crawler.pipelines.json_items:JsonItemExtractor"
PAGINATE = "crawler.pipelines.paginate:Paginator"
LINKS = "crawler.pipelines.links:LinkExtractor"
FIELDS = "crawler.pipelines.fields:FieldExtractor"


def builtin_stage_paths(job: Job) -> list[str]:
    """The built-in stages `job` needs, in pipeline order. Sitemaps come first: they are dropped before
    anything else parses them. Stages a job does not need are not even imported (start-up time)."""
    paths: list[str] = []
    if job.start_sitemaps or job.scope.sitemaps:
        paths.append(SITEMAPS)
    extract = job.extract
    if extract.json_fields or extract.items_path or extract.json_links:
        paths.append(JSON_ITEMS)
    if job.paginate is not None:
        paths.append(PAGINATE)
    if extract.links:
        paths.append(LINKS)
    if extract.fields or any(r.fields for r in job.routes):
        paths.append(FIELDS)
    return paths


def _resolve(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageLoadError(f"stage {path!r}: cannot import {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise StageLoadError(f"stage {path!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def load_stage(path: str, job: Job | None = None) -> Any:
    """Import `package.module:callable`. A class is built with `from_job(job)` when it has one and a job is
    given (None: the stage is not configured for this job), else instantiated with no arguments."""
    obj = _resolve(path)
    if inspect.isclass(obj):
        from_job = getattr(obj, "from_job", None)
        obj = from_job(job) if job is not None and from_job is not None else obj()
        if obj is None:
            return None
    if not callable(obj):
        raise StageLoadError(f"stage {path!r} is not callable")
    return obj


def build_stages(job: Job, extra: list[Stage] | tuple[Stage, ...] = ()) -> list[Stage]:
    """The job's pipeline: built-in stages, then `job.stages`, then `extra` (stages passed in code).

    With `routes:`, link following is skipped on pages of a `follow: false` route, and a route that names
    `stages` runs those on its pages instead of `job.stages` (stages passed in code run on every page)."""
    routes = Routes.of_job(job)
    stages: list[Stage] = []
    for path in builtin_stage_paths(job):
        stage = load_stage(path, job)
        if stage is not None:
            if path == LINKS and routes is not None and not all(r.follow for r in routes.routes):
                stage = only_where(routes.follows, stage)
            stages.append(stage)
    for path in job.stages:
        stage = load_stage(path, job)
        if stage is not None:
            stages.append(stage if routes is None else only_where(routes.runs_default_stages, stage))
    for i, route in enumerate(routes.routes if routes is not None else []):
        assert routes is not None
        for path in route.stages or []:
            stage = load_stage(path, job)
            if stage is not None:
                stages.append(only_where(functools.partial(_in_route, routes, i), stage))
    return [*stages, *extra]


def build_error_hooks(job: Job, extra: Sequence[ErrorHook] = ()) -> list[ErrorHook]:
    """The job's failure hooks: the `output.failures` log, then `job.on_error` (import paths, built as
    stages are), then `extra` (hooks passed in code)."""
    hooks: list[ErrorHook] = []
    if job.output.failures:
        hooks.append(FailureLog(job.output.failures, overwrite=job.output.overwrite,
                                flush_every=job.output.flush_every))  # fmt: skip
    for path in job.on_error:
        hook = load_stage(path, job)
        if hook is not None:
            hooks.append(hook)
    return [*hooks, *extra]


def _in_route(routes: Routes, index: int, url: str) -> bool:
    return routes.index(url) == index


def only_where(applies: Callable[[str], bool], stage: Stage) -> Stage:
    """`stage`, run only on pages whose URL `applies` to (a sync stage stays sync, an async one async)."""
    if is_async_stage(stage):

        async def run_async(page: Page) -> Page | None:
            if not applies(page.url):
                return None
            result = stage(page)
            return await result if inspect.isawaitable(result) else result

        return run_async

    def run(page: Page) -> Page | None:
        return stage(page) if applies(page.url) else None  # type: ignore[return-value]

    return run


def is_async_stage(obj: Any) -> bool:
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(getattr(obj, "__call__", None))  # noqa: B004
