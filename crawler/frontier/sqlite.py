"""The resumable frontier: queue, seen set, per-host counters and the output checkpoint in one SQLite file.

Layout of `DIR/frontier.sqlite3` (WAL, one writer: this process, guarded by a lock on `DIR/lock`):

- `queue(id, host_id, data)`: every request pushed and not yet acked; `data` is `Request.to_dict()` as
  JSON. Leases are not stored: a request popped but not acked stays in `queue`, so after a crash it is
  simply queued again when the frontier reopens.
- `seen(fp)`: every fingerprint ever queued, as a signed 64-bit INTEGER PRIMARY KEY (the rowid itself).
  The whole set is mirrored in memory by a `CompactSeenSet`, so dedup never reads the database.
- `hosts(id, host, pushed, done)`: per-host counters; `meta(key, value)`: the checkpoint and totals.
- `pages(fp, data, etag, last_modified)`: every page fetched (its request as JSON and the validators it
  answered with), written with the ack: what `crawler run --recrawl` revisits with conditional requests.

Commit protocol: pushes are written as they come, inside the open transaction; `ack()` deletes the acked
rows, stores the checkpoint and commits, all in one transaction. Links pushed by a page therefore commit
no later than the page's ack, and the checkpoint commits atomically with the acks it describes.

Memory stays flat: at most `memory_queue` requests wait in memory (per-host heaps); past that, a host's new
requests stay on disk only and are read back in id order when the host's in-memory queue runs dry.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import sqlite3
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from crawler.frontier.base import FrontierBase, KnownPage
from crawler.model.request import Request
from crawler.model.seen import CompactSeenSet

__all__ = ["SqliteFrontier"]

log = logging.getLogger("crawler.frontier")

DB_NAME = "frontier.sqlite3"
LOCK_NAME = "lock"
_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (fp INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS hosts (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    pushed INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, host_id INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS queue_by_host ON queue (host_id, id);
CREATE TABLE IF NOT EXISTS pages (fp INTEGER PRIMARY KEY, data TEXT NOT NULL, etag TEXT, last_modified TEXT);
"""
_REFILL_MAX = 1000
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def _signed(fp: int) -> int:
    return fp - _U64 if fp > _I64_MAX else fp


class StateLocked(RuntimeError):
    """Another live process holds the state directory."""


class _DirLock:
    """An exclusive `flock` on DIR/lock, released by the OS when the process dies (kill -9 included)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateLocked(
                f"crawl state {self.path.parent} is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SqliteFrontier(FrontierBase):
    """Frontier persisted in SQLite under a state directory; reopening it resumes the crawl.

    Open with `await SqliteFrontier.open(Path("state/"))`. Requests popped and not acked when the process
    died are queued again on the next open (their output past the checkpoint is truncated by the engine).
    """

    def __init__(self, directory: Path, conn: sqlite3.Connection, lock: _DirLock, *,
                 memory_queue: int) -> None:  # fmt: skip
        self.directory = directory
        self._conn = conn
        self._lock = lock
        self._memory_queue = memory_queue
        self._seen = CompactSeenSet()
        self._host_ids: dict[str, int] = {}
        self._queues: dict[str, list[tuple[int, int, Request]]] = {}
        self._on_disk: dict[str, int] = {}  # queued rows of a host that are not in memory
        self._cursor: dict[str, int] = {}  # highest row id of a host read into memory
        self._rotation: deque[str] = deque()  # hosts with queued work, round-robin
        self._active: set[str] = set()
        self._in_memory = 0
        self._disk_total = 0
        self._leased = 0
        self._next_id = 1
        self._in_tx = False
        self._closed = False
        self._checkpoint: dict[str, Any] | None = None
        self._pushed_delta: Counter[int] = Counter()
        self._counters = {"pushed": 0, "acked": 0}

    # -- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    async def open(cls, directory: Path | str, *, memory_queue: int = 50_000) -> SqliteFrontier:
        """Open (or create) the state in `directory`; raises `StateLocked` if another process has it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock = _DirLock(directory)
        lock.acquire()
        try:
            conn = _connect(directory / DB_NAME)
            self = cls(directory, conn, lock, memory_queue=memory_queue)
            self._load()
        except BaseException:
            lock.release()
            raise
        return self

    def _load(self) -> None:
        conn = self._conn
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        version = meta.get("schema")
        if version is None:
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        elif version != _SCHEMA_VERSION:
            raise RuntimeError(f"{self.directory}: state schema {version}, expected {_SCHEMA_VERSION}")
        if "checkpoint" in meta:
            self._checkpoint = orjson.loads(meta["checkpoint"])
        for key in self._counters:
            self._counters[key] = int(meta.get(key, 0))
        seen_count = int(meta.get("seen", 0))
        seen = self._seen = CompactSeenSet(expected=seen_count)
        add = seen.add
        for (fp,) in conn.execute("SELECT fp FROM seen"):
            add(fp % _U64)
        self._host_ids = dict(conn.execute("SELECT host, id FROM hosts"))
        names = {hid: host for host, hid in self._host_ids.items()}
        # Every row still in `queue` is work not acked: queued or leased when the last run stopped.
        for hid, count in conn.execute("SELECT host_id, count(*) FROM queue GROUP BY host_id"):
            host = names[hid]
            self._on_disk[host] = count
            self._disk_total += count
            self._cursor[host] = 0
            self._activate(host)
        (max_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM queue").fetchone()
        self._next_id = max_id + 1
        if self._disk_total:
            log.info("resuming %s: %d requests queued, %d seen, %d done", self.directory, self._disk_total,
                     len(seen), self._counters["acked"])  # fmt: skip

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._commit_tx()
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        finally:
            self._lock.release()

    @staticmethod
    def discard(directory: Path | str) -> bool:
        """Delete the saved state in `directory` (`crawler run --fresh`). True when there was some."""
        directory = Path(directory)
        if not directory.exists():
            return False
        lock = _DirLock(directory)
        lock.acquire()  # refuses while a crawl is using it
        try:
            found = False
            for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
                    found = True
        finally:
            lock.release()
        with contextlib.suppress(FileNotFoundError):
            (directory / LOCK_NAME).unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if nothing else lives there
        return found

    # -- the four verbs ----------------------------------------------------------------------------

    async def push_many(self, requests: Iterable[Request]) -> int:
        seen_add = self._seen.add
        host_ids = self._host_ids
        seen_rows: list[tuple[int]] = []
        rows: list[tuple[int, int, str]] = []
        dumps = orjson.dumps
        for req in requests:
            if not req.dont_filter:
                if not seen_add(req.fingerprint):
                    continue
                seen_rows.append((_signed(req.fingerprint),))
            host = req.host
            hid = host_ids.get(host)
            if hid is None:
                hid = self._new_host(host)
            rid = self._next_id
            self._next_id = rid + 1
            req.token = rid
            # As str: an orjson bytes object keeps a ~4 KB buffer, and a batch of them would bloat the heap.
            rows.append((rid, hid, dumps(req.to_dict()).decode()))
            self._place(req, rid)
        if not rows:
            return 0
        self._begin()
        conn = self._conn
        if seen_rows:
            conn.executemany("INSERT OR IGNORE INTO seen (fp) VALUES (?)", seen_rows)
        conn.executemany("INSERT INTO queue (id, host_id, data) VALUES (?, ?, ?)", rows)
        for row in rows:
            self._pushed_delta[row[1]] += 1
        return len(rows)

    def _place(self, req: Request, rid: int) -> None:
        host = req.host
        if not self._on_disk.get(host) and self._in_memory < self._memory_queue:
            q = self._queues.get(host)
            if q is None:
                q = self._queues[host] = []
            heapq.heappush(q, (-req.priority, rid, req))
            self._in_memory += 1
            self._cursor[host] = rid
        else:
            # Once a host spills, its later requests spill too: memory always holds its oldest ones.
            self._on_disk[host] = self._on_disk.get(host, 0) + 1
            self._disk_total += 1
        self._activate(host)

    def _activate(self, host: str) -> None:
        if host not in self._active:
            self._active.add(host)
            self._rotation.append(host)

    def _new_host(self, host: str) -> int:
        self._begin()
        cur = self._conn.execute("INSERT INTO hosts (host) VALUES (?)", (host,))
        hid = int(cur.lastrowid or 0)
        self._host_ids[host] = hid
        return hid

    async def pop_ready(self, limit: int, budget: Callable[[str], int]) -> list[Request]:
        out: list[Request] = []
        rotation = self._rotation
        queues = self._queues
        for _ in range(len(rotation)):
            if len(out) >= limit:
                break
            host = rotation[0]
            rotation.rotate(-1)
            allowance = budget(host)
            if allowance <= 0:
                continue
            q = queues.get(host) or self._refill(host)
            want = min(allowance, limit - len(out))
            while want > 0 and q:
                take = min(want, len(q))
                for _ in range(take):
                    out.append(heapq.heappop(q)[2])
                self._in_memory -= take
                want -= take
                if not q:
                    q = self._refill(host)
            if not q and not self._on_disk.get(host):
                queues.pop(host, None)
                self._active.discard(host)
                rotation.pop()  # the host just rotated to the end
        self._leased += len(out)
        return out

    def _refill(self, host: str) -> list[tuple[int, int, Request]]:
        """Read the host's oldest on-disk requests into memory (its in-memory queue is empty)."""
        q = self._queues.setdefault(host, [])
        pending = self._on_disk.get(host, 0)
        if not pending:
            return q
        room = max(self._memory_queue - self._in_memory, 0)
        chunk = min(pending, _REFILL_MAX, max(room, 64))
        rows = self._conn.execute("SELECT id, data FROM queue WHERE host_id = ? AND id > ? ORDER BY id LIMIT ?",
                                  (self._host_ids[host], self._cursor.get(host, 0), chunk)).fetchall()  # fmt: skip
        for rid, data in rows:
            req = Request.from_dict(orjson.loads(data))
            req.token = rid
            heapq.heappush(q, (-req.priority, rid, req))
        n = len(rows)
        if rows:
            self._cursor[host] = rows[-1][0]
        if n < chunk:  # cannot happen unless the file was edited: trust the file
            log.warning(
                "%s: expected %d queued requests on disk for %s, found %d", self.directory, chunk, host, n
            )
            self._disk_total -= pending - n
            pending = n
        self._on_disk[host] = pending - n
        self._disk_total -= n
        self._in_memory += n
        return q

    async def ack(self, requests: Sequence[Request], checkpoint: dict[str, Any] | None = None) -> None:
        """Delete the finished requests and store `checkpoint`, in the transaction that holds their pushes."""
        self._begin()
        conn = self._conn
        ids = [(r.token,) for r in requests if r.token is not None]
        if ids:
            conn.executemany("DELETE FROM queue WHERE id = ?", ids)
        done = Counter(r.host for r in requests)
        if done:
            conn.executemany(
                "UPDATE hosts SET done = done + ? WHERE host = ?", [(n, h) for h, n in done.items()]
            )
        if self._pushed_delta:
            conn.executemany("UPDATE hosts SET pushed = pushed + ? WHERE id = ?",
                             [(n, hid) for hid, n in self._pushed_delta.items()])  # fmt: skip
            self._counters["pushed"] += sum(self._pushed_delta.values())
            self._pushed_delta.clear()
        self._counters["acked"] += len(requests)
        meta = [(k, str(v)) for k, v in self._counters.items()]
        meta.append(("seen", str(len(self._seen))))
        if checkpoint is not None:
            meta.append(("checkpoint", orjson.dumps(checkpoint).decode()))
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", meta)  # fmt: skip
        self._commit_tx()
        if checkpoint is not None:
            self._checkpoint = checkpoint
        self._leased = max(0, self._leased - len(ids))

    async def size(self) -> int:
        return self._in_memory + self._disk_total + self._leased

    async def checkpoint(self) -> dict[str, Any] | None:
        return self._checkpoint

    # -- page memory (recrawls) ----------------------------------------------------------------------

    def remember_pages(self, pages: Sequence[KnownPage]) -> None:
        """Store the pages' requests and validators in the open transaction (committed by the next ack)."""
        if not pages:
            return
        self._begin()
        rows = []
        for page in pages:
            req = page.request
            data = {"url": req.url, "depth": req.depth}
            if req.meta and req.meta.get("sitemap"):
                data["meta"] = {"sitemap": True}
            rows.append((_signed(req.fingerprint), orjson.dumps(data).decode(), page.etag, page.last_modified))
        self._conn.executemany("INSERT OR REPLACE INTO pages (fp, data, etag, last_modified) VALUES (?, ?, ?, ?)",
                               rows)  # fmt: skip

    def known_pages(self) -> Iterator[KnownPage]:
        """Every remembered page, in fingerprint order (hosts come interleaved), read 1,000 at a time."""
        query = "SELECT fp, data, etag, last_modified FROM pages {} ORDER BY fp LIMIT 1000"
        rows = self._conn.execute(query.format("")).fetchall()
        while rows:
            for _, data, etag, last_modified in rows:
                yield KnownPage(Request.from_dict(orjson.loads(data)), etag, last_modified)
            rows = self._conn.execute(query.format("WHERE fp > ?"), (rows[-1][0],)).fetchall()

    # -- introspection -----------------------------------------------------------------------------

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    @property
    def queued_in_memory(self) -> int:
        return self._in_memory

    @property
    def queued_on_disk(self) -> int:
        return self._disk_total

    # -- transactions ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True

    def _commit_tx(self) -> None:
        if self._in_tx:
            self._conn.execute("COMMIT")
            self._in_tx = False


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only = ON")
        return conn
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a commit survives the process being killed (the WAL is in the OS page cache);
    # only a power loss can drop the last commits, and then the database still opens consistent.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -16000")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.executescript(_SCHEMA)
    return conn


def read_status(directory: Path | str, *, top_hosts: int = 10) -> dict[str, Any] | None:
    """Progress of a saved crawl, read without taking the lock (works while a crawl runs). None: no state."""
    path = Path(directory) / DB_NAME
    if not path.exists():
        return None
    conn = _connect(path, readonly=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        try:
            (known,) = conn.execute("SELECT count(*) FROM pages").fetchone()
        except sqlite3.OperationalError:  # a state written before the pages table existed
            known = 0
        queued_by_host = dict(conn.execute("SELECT host_id, count(*) FROM queue GROUP BY host_id"))
        hosts = [{"host": host, "queued": queued_by_host.get(hid, 0), "pushed": pushed, "done": done}
                 for hid, host, pushed, done in conn.execute("SELECT id, host, pushed, done FROM hosts")]  # fmt: skip
    finally:
        conn.close()
    hosts.sort(key=lambda h: (-h["queued"], -h["done"]))
    running = True
    lock = _DirLock(Path(directory))
    try:
        lock.acquire()
    except StateLocked:
        pass
    else:
        running = False
        lock.release()
    return {
        "backend": "sqlite",
        "state": str(directory),
        "running": running,
        "queued": sum(queued_by_host.values()),  # a running crawl's in-flight requests too (acked later)
        "done": int(meta.get("acked", 0)),
        "pushed": int(meta.get("pushed", 0)),
        "seen": int(meta.get("seen", 0)),
        "known_pages": known,
        "checkpoint": orjson.loads(meta["checkpoint"]) if "checkpoint" in meta else None,
        "hosts": hosts[:top_hosts],
    }
