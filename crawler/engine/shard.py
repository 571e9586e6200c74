"""The child process of a multi-process crawl: one engine over its shard of the frontier.

Run by the parent (`crawler/engine/processes.py`) as
`python -m crawler.engine.shard JOB_JSON_PATH SHARD COUNT UP_FD DOWN_FD LOG_LEVEL`.
"""

from __future__ import annotations

import gc
import sys

# The same lean start-up as the command line (crawler/cli/__init__.py): no pydantic plugin scan, no httpx
# command line, no garbage collection until `run_async` starts the loop. Set before the imports below.
if __name__ == "__main__":
    import os

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    gc.disable()

import orjson

from crawler.config.job import Job
from crawler.engine.crawler import Crawler
from crawler.engine.runtime import configure_logging, install_stop_signals, run_async
from crawler.frontier.sharded import FINAL, ShardedFrontier, open_pipes, write_message


async def _child_main(job_json: str, shard: int, count: int, up_fd: int, down_fd: int) -> int:
    job = Job.model_validate_json(job_json)
    reader, writer = await open_pipes(up_fd, down_fd)
    frontier = ShardedFrontier(shard, count, reader, writer)
    crawler = Crawler(job, frontier=frontier)

    install_stop_signals(crawler.stop, crawler.flush_now)
    async with crawler:
        await crawler.run()
    write_message(writer, FINAL, orjson.dumps(crawler.stats.as_dict()))
    await writer.drain()
    writer.close()
    return 0


def main(argv: list[str]) -> int:
    job_path, shard, count, up_fd, down_fd, level = argv
    configure_logging(level)
    with open(job_path, encoding="utf-8") as f:
        job_json = f.read()
    return run_async(lambda: _child_main(job_json, int(shard), int(count), int(up_fd), int(down_fd)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
