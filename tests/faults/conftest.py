"""The fault suite's session: one fault server, and a runner that starts every selected case's crawl up
front, a few at a time, so the suite's wall time is the cases' in parallel, not their sum."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.faults.cases import Case, Env, Plan
from tests.faults.harness import CrawlRun, base_job, run_crawl, server_summary
from tests.faults.server import FaultServer

# Crawls at once. Each is one process costing ~0.5 s of CPU, and most of a case's wall time is spent waiting
# for a deadline: on 2 cores 6 keeps both busy.
JOBS = int(os.environ.get("CRAWLER_FAULT_JOBS", "6"))


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Runner:
    def __init__(self, env: Env) -> None:
        self.env = env
        self._pool = ThreadPoolExecutor(JOBS, thread_name_prefix="fault-run")
        self._futures: dict[str, Future[tuple[Plan, CrawlRun]]] = {}
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.finished: dict[str, float] = {}  # case id -> seconds from the runner's start to the crawl's end

    def _execute(self, case: Case) -> tuple[Plan, CrawlRun]:
        workdir = self.env.root / case.id
        workdir.mkdir(parents=True, exist_ok=True)
        env = self.env.for_case()
        plan = case.build(env)
        run = run_crawl(merge(base_job(workdir), plan.job), workdir, timeout=plan.timeout)
        run.log = {site.name: list(site.log) for site in env.sites}
        run.server = server_summary(run.log, hypercorn=env.uses_h2_server)
        self.finished[case.id] = time.monotonic() - self.started
        return plan, run

    def submit(self, case: Case) -> Future[tuple[Plan, CrawlRun]]:
        with self._lock:
            future = self._futures.get(case.id)
            if future is None:
                future = self._futures[case.id] = self._pool.submit(self._execute, case)
            return future

    def result(self, case: Case) -> tuple[Plan, CrawlRun]:
        return self.submit(case).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def fault_runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    server = FaultServer().start()
    env = Env(server, Path(tmp_path_factory.mktemp("faults")))
    runner = Runner(env)
    # Start every selected case now, in collection order; each test then waits for its own result.
    for item in request.session.items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if isinstance(case, Case):
            runner.submit(case)
    try:
        yield runner
    finally:
        runner.shutdown()
        env.close()
        server.stop()
