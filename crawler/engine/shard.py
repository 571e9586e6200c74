"""The child process of a multi-process crawl: one engine over its shard of the frontier.

Run by the parent (`crawler/engine/processes.py`) as
`python -m crawler.engine.shard SHARD COUNT UP_FD DOWN_FD LOG_LEVEL PARENT_PID`; the job comes down the pipe
(never through a file or the command line, which other users can read).

It never outlives its parent: on Linux the kernel kills it when the parent dies (PR_SET_PDEATHSIG, SIGKILL),
and everywhere the end of file on its pipe makes it write out the whole lines it holds and exit at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
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
from crawler.frontier.sharded import FINAL, ShardedFrontier, open_pipes, read_job, write_message

log = logging.getLogger("crawler")

# The parent writes the job right after starting the process: waiting longer means it is gone or stuck.
_JOB_TIMEOUT = 30.0
EXIT_PARENT_LOST = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), and exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.warning("PR_SET_PDEATHSIG failed (errno %d): relying on the pipe to notice the parent's death",
                        ctypes.get_errno())  # fmt: skip
    if os.getppid() != parent:  # it died before the request above took effect
        os._exit(EXIT_PARENT_LOST)


async def _child_main(shard: int, count: int, up_fd: int, down_fd: int) -> int:
    reader, writer = await open_pipes(up_fd, down_fd)
    async with asyncio.timeout(_JOB_TIMEOUT):
        job = Job.model_validate_json(await read_job(reader))
    crawler: Crawler | None = None

    def parent_lost() -> None:
        log.error("process %d: the parent process is gone: stopping now", shard)
        if crawler is not None:
            crawler.flush_now()  # whole lines only; the crawl cannot be resumed without its parent anyway
        os._exit(EXIT_PARENT_LOST)

    frontier = ShardedFrontier(shard, count, reader, writer, on_parent_lost=parent_lost,
                               memory_queue=job.memory_queue)  # fmt: skip
    crawler = Crawler(job, frontier=frontier)

    install_stop_signals(crawler.stop, crawler.flush_now)
    async with crawler:
        await crawler.run()
    write_message(writer, FINAL, orjson.dumps(crawler.stats.as_dict()))
    await writer.drain()
    writer.close()
    return 0


def main(argv: list[str]) -> int:
    shard, count, up_fd, down_fd, level, parent = argv
    die_with_parent(int(parent))
    configure_logging(level)
    return run_async(lambda: _child_main(int(shard), int(count), int(up_fd), int(down_fd)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
