"""Redirects in downloads, followed hop by hop through `crawler.http.redirects` (the crawl's rules), seen at
two real origins (two launcher ports): the user's headers never reach a second origin, each hop holds one
slot of its own host, the chain is capped by `http.max_redirects`, and the result names where the file came
from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crawler import HttpConfig
from crawler.downloader import Downloader, download

from .app import file_sha256
from .conftest import run_cli
from .servers import EdgeServer

SECRET = "s3cret-key"


def _via(edge: EdgeServer, target: str, key: str, code: int = 302) -> str:
    return edge.url_for("/redirect/r.bin", to=target, code=code, key=key)


def test_a_header_from_h_never_reaches_a_second_origin(
    edge: EdgeServer, edge2: EdgeServer, key: str, tmp_path: Path
) -> None:
    target = edge2.url_for("/file/away.bin", size=300_000, seed=key, key=key)

    run = run_cli(_via(edge, target, key), "-d", str(tmp_path), "-H", f"X-Api-Key: {SECRET}",
                  "-U", "probe-agent/1", "--json")  # fmt: skip

    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "ok" and record["sha256"] == file_sha256(key, 0, 300_000)
    assert record["final_url"] == target and record["redirects"] == 1
    assert (tmp_path / "r.bin").stat().st_size == 300_000  # named after the URL asked for, as curl -O does
    [first] = edge.requests_for(key)
    [second] = edge2.requests_for(key)
    assert first["headers"]["x-api-key"] == SECRET  # the origin it was meant for got it
    assert "x-api-key" not in second["headers"]
    assert second["user_agent"] == "probe-agent/1"  # User-Agent is not a credential: it follows


async def test_every_segment_request_drops_the_header_at_the_second_origin(
    edge: EdgeServer, edge2: EdgeServer, key: str, tmp_path: Path
) -> None:
    size = 600_000
    target = edge2.url_for("/file/seg.bin", size=size, seed=key, key=key)

    [result] = await download([_via(edge, target, key, code=307)], tmp_path, segments=4,
                              min_segment_size=100_000, headers={"X-Api-Key": SECRET})  # fmt: skip

    assert result.status == "ok" and result.sha256 == file_sha256(key, 0, size), result.error
    assert result.segments == 4 and result.redirects == 1
    seen = edge2.requests_for(key)
    assert len(seen) >= 4 and {r["status"] for r in seen} <= {200, 206}
    assert all("x-api-key" not in r["headers"] for r in seen)
    assert all(r["headers"]["x-api-key"] == SECRET for r in edge.requests_for(key))
    assert len(edge.requests_for(key)) == len(seen)  # each request started again at the entry's URL


async def test_a_same_origin_redirect_keeps_the_header(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    target = edge.url_for("/file/here.bin", size=50_000, seed=key, key=key + "t")

    [result] = await download([_via(edge, target, key, code=301)], tmp_path, headers={"X-Api-Key": SECRET})

    assert result.status == "ok" and result.final_url == target and result.redirects == 1
    [hop] = edge.requests_for(key + "t")
    assert hop["headers"]["x-api-key"] == SECRET


async def test_forward_headers_lets_a_named_header_cross(
    edge: EdgeServer, edge2: EdgeServer, key: str, tmp_path: Path
) -> None:
    target = edge2.url_for("/file/fwd.bin", size=10_000, seed=key, key=key)

    [result] = await download([_via(edge, target, key)], tmp_path, headers={"X-Api-Key": SECRET},
                              http=HttpConfig(forward_headers=["X-Api-Key"]))  # fmt: skip

    assert result.status == "ok"
    [second] = edge2.requests_for(key)
    assert second["headers"]["x-api-key"] == SECRET


async def test_each_hop_holds_one_slot_of_its_own_host(
    edge: EdgeServer, edge2: EdgeServer, key: str, tmp_path: Path
) -> None:
    # per_host=1 and a chain A -> A -> B: were a hop's slot kept while the next is asked for, the second
    # hop on A would wait forever (here: until the deadline) for the slot its own chain holds.
    target = edge2.url_for("/file/chain.bin", size=20_000, seed=key, key=key)
    chain = _via(edge, _via(edge, target, key), key)

    async with Downloader(tmp_path, per_host=1, max_time=10) as downloader:
        [result] = [r async for r in downloader.run([chain])]
        hosts = (edge.host_key, edge2.host_key)
        budgets = [downloader.limiter.budget(h) for h in hosts]

    assert result.status == "ok" and result.redirects == 2 and result.final_url == target, result.error
    assert result.elapsed < 5
    assert budgets == [1, 1]  # every slot went back
    assert [r["status"] for r in edge.requests_for(key)] == [302, 302]


async def test_a_redirect_loop_ends_at_http_max_redirects(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    url = edge.url_for("/loop/x.bin", key=key)

    [result] = await download([url], tmp_path, http=HttpConfig(max_redirects=3))

    assert result.status == "failed"
    assert result.error == "too many redirects: more than 3 (http.max_redirects)"
    assert len(edge.requests_for(key)) == 4  # the request and three hops
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("location", ["javascript:alert(1)", "http:///nohost", "ftp://example.com/x"])
async def test_a_redirect_that_cannot_be_followed_fails_the_entry(
    edge: EdgeServer, key: str, tmp_path: Path, location: str
) -> None:
    [result] = await download([_via(edge, location, key)], tmp_path)

    assert result.status == "failed" and result.error is not None and "redirect" in result.error
    assert len(edge.requests_for(key)) == 1


async def test_redirects_off_fails_on_the_first_hop(edge: EdgeServer, key: str, tmp_path: Path) -> None:
    target = edge.url_for("/file/no.bin", size=1000, seed=key, key=key + "t")

    [result] = await download([_via(edge, target, key)], tmp_path, http=HttpConfig(follow_redirects=False))

    assert result.status == "failed" and "more than 0" in (result.error or "")
    assert edge.requests_for(key + "t") == []
