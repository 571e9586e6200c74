"""`concurrency.processes: N`: N engine processes over one fingerprint-sharded frontier."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from crawler import Job
from crawler.engine.processes import shard_job
from crawler.frontier.sharded import PUSH, ROUTE, ShardedFrontier, open_pipes, read_message, write_message
from crawler.model.request import Request


def _write_job(tmp_path: Path, site_url: str, extra: str = "") -> tuple[Path, Path]:
    items = tmp_path / "items.jsonl"
    job = tmp_path / "job.yaml"
    job.write_text(
        f"start_urls: ['{site_url}/']\n"
        "scope: {robots_txt: false}\n"
        "concurrency: {workers: 16, per_host: 16}\n"
        "extract: {fields: {title: title}}\n"
        f"output: {{items: '{items}', stats: '{tmp_path / 'stats.json'}'}}\n" + extra
    )
    return job, items


def _run(job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_two_processes_fetch_every_page_exactly_once(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=600)
    job, items = _write_job(tmp_path, site.url, "rate_limit: {per_host: unlimited}\n")
    done = _run(job, "--processes", "2")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in items.read_text().splitlines()]
    expected = {site.url + "/"} | {f"{site.url}/page/{n}" for n in range(600)}
    assert sorted(r["url"] for r in records) == sorted(expected)
    paths = [e["path"] for e in site.log() if e["path"] == "/" or e["path"].startswith("/page/")]
    assert len(paths) == len(set(paths)) == 601
    # Both processes did work: their connections come from two client sockets at least.
    assert len({e["client"] for e in site.log()}) >= 2
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["pages"] == 601 and stats["items"] == 601


def test_rate_and_max_pages_hold_in_total(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=600)
    job, items = _write_job(tmp_path, site.url, "rate_limit: {per_host: 20/s}\n")
    done = _run(job, "--processes", "2", "--set", "scope.max_pages=41")
    assert done.returncode == 0, done.stderr
    assert len(items.read_text().splitlines()) <= 41
    times = sorted(e["t"] for e in site.log() if e["path"] == "/" or e["path"].startswith("/page/"))
    assert len(times) <= 41
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < 1.0) <= 22  # 20/s in total, one token of slack each


def test_shard_job_splits_totals() -> None:
    job = Job.model_validate({"start_urls": ["http://e.com/"], "concurrency": {"workers": 64, "per_host": 9},
                              "rate_limit": {"per_host": "10/s", "hosts": {"a.com": "3/s", "b.com": "unlimited"}},
                              "scope": {"max_pages": 7}})
    parts = [shard_job(job, i, 2) for i in range(2)]
    assert [p.concurrency.workers for p in parts] == [32, 32]
    assert [p.scope.max_pages for p in parts] == [4, 3]
    assert parts[0].rate_limit.per_host.per_second == 5
    assert parts[0].rate_limit.hosts["a.com"].per_second == 1.5
    assert parts[0].rate_limit.hosts["b.com"] is None
    assert parts[0].concurrency.processes == 1


def _children_of(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone: it holds no resources and does no work)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(60)
def test_children_die_with_the_parent_and_the_job_never_touches_disk(site_factory, tmp_path: Path) -> None:
    site = site_factory(tls=False, pages=2000)
    token = "secret-" + uuid.uuid4().hex
    job, items = _write_job(tmp_path, site.url, "rate_limit: {per_host: 40/s}\n"
                            "http: {auth: {bearer: '${CRAWLER_TEST_TOKEN}'}}\n")  # fmt: skip
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "CRAWLER_TEST_TOKEN": token, "TMPDIR": str(scratch)}
    parent = subprocess.Popen([sys.executable, "-m", "crawler", "run", str(job), "--progress", "off",
                               "--processes", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while time.monotonic() < deadline and not (len(children) == 2 and items.exists() and items.stat().st_size):
            children = _children_of(parent.pid)
            time.sleep(0.05)
        assert len(children) == 2 and items.stat().st_size, "the crawl did not get going"
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
            assert token not in cmdline, "the job is not on the command line"
            # Forked by the command line before its loop started (no second import of the engine).
            assert cmdline == Path(f"/proc/{parent.pid}/cmdline").read_text()
        assert any(e["headers"].get("authorization") == f"Bearer {token}" for e in site.log()), \
            "the children got the token through the pipe"  # fmt: skip

        parent.kill()  # kill -9: no chance to clean up or tell anyone
        parent.wait()
        killed = time.monotonic()
        while any(_alive(pid) for pid in children) and time.monotonic() - killed < 5:
            time.sleep(0.02)
        gone_after = time.monotonic() - killed
        assert not any(_alive(pid) for pid in children), "children outlived their parent by 5 s"
        assert gone_after < 1.5, f"children took {gone_after:.2f}s to die"
        leftovers = [p for p in scratch.rglob("*")]
        assert leftovers == [], f"files left in the temporary directory: {leftovers}"
        lines_now = items.read_bytes().count(b"\n")
        time.sleep(0.5)
        assert items.read_bytes().count(b"\n") == lines_now, "nothing writes after the parent died"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.timeout(60)
async def test_a_library_call_inside_a_running_loop_spawns_its_processes(site_factory, tmp_path: Path) -> None:
    """Forking under a running event loop is unsafe: `run_processes` called from a coroutine spawns
    `python -m crawler.engine.shard` instead, with the same result."""
    from crawler.engine.processes import fork_children, run_processes

    assert fork_children(2, "WARNING") is None  # a loop is running here
    site = site_factory(tls=False, pages=150)
    job, items = _write_job(tmp_path, site.url, "rate_limit: {per_host: unlimited}\n")
    stats = await run_processes(Job.from_yaml(job), 2, "WARNING")
    urls = sorted(json.loads(line)["url"] for line in items.read_text().splitlines())
    assert urls == sorted({site.url + "/"} | {f"{site.url}/page/{n}" for n in range(150)})
    assert stats.pages == 151
    assert len({e["client"] for e in site.log()}) >= 2


async def test_a_process_whose_pipe_closes_learns_its_parent_is_gone() -> None:
    """The end of file on the pipe is the portable signal (PR_SET_PDEATHSIG is Linux only)."""
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    reader, writer = await open_pipes(up_w, down_r)
    lost = asyncio.Event()
    frontier = ShardedFrontier(0, 2, reader, writer, on_parent_lost=lost.set)
    frontier.bind(lambda: None, lambda host: None)
    os.close(down_w)  # the parent's end of the pipe: what its death closes
    await asyncio.wait_for(lost.wait(), 2)
    await frontier.close()
    writer.close()
    os.close(up_r)


async def test_a_routed_request_keeps_its_method_retries_and_dont_filter() -> None:
    """What one process routes to another arrives whole: a POST, a retry count and dont_filter too."""
    ends = [(os.pipe(), os.pipe()) for _ in range(2)]  # per shard: (up_r, up_w), (down_r, down_w)
    shards, parent_side = [], []
    for i, ((up_r, up_w), (down_r, down_w)) in enumerate(ends):
        reader, writer = await open_pipes(up_w, down_r)
        shards.append(ShardedFrontier(i, 2, reader, writer, on_parent_lost=lambda: None))
        parent_side.append(await open_pipes(down_w, up_r))
    for f in shards:
        f.bind(lambda: None, lambda host: None)
    owned_by_1 = [Request.make(f"http://e.com/{n}", method=m, dont_filter=df) for n in range(40)
                  for m, df in (("GET", False), ("POST", True))]  # fmt: skip
    owned_by_1 = [r for r in owned_by_1 if r.fingerprint % 2 == 1][:4]
    for r in owned_by_1:
        r.retries = 2 if r.method == "POST" else 0
    assert {r.method for r in owned_by_1} == {"GET", "POST"}
    await shards[0].push_many(owned_by_1)
    up_reader = parent_side[0][0]
    while True:  # status reports come up the same pipe
        kind, payload = await asyncio.wait_for(read_message(up_reader), 2)
        if kind == ROUTE:
            break
    assert payload[0] == 1
    write_message(parent_side[1][1], PUSH, payload[1:])
    got: list[Request] = []
    deadline = time.monotonic() + 2
    while len(got) < len(owned_by_1) and time.monotonic() < deadline:
        got += await shards[1].pop_ready(10, lambda host: 10)
        await asyncio.sleep(0.01)
    sent = sorted((r.url, r.method, r.retries, r.dont_filter, r.fingerprint) for r in owned_by_1)
    assert sorted((r.url, r.method, r.retries, r.dont_filter, r.fingerprint) for r in got) == sent
    for f in shards:
        await f.close()
    for _, writer in parent_side:
        writer.close()
