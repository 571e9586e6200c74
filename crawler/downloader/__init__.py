"""Bulk downloads: `crawler download` and `crawler.download()`: resumable, verified, atomic, segmented.

Layout, top down:
- `driver`: `Downloader` (the worker pool, progress, results) and `download()`;
- `transfer`: one entry from one URL (`FileJob`): name, place, resume, stream, verify, rename;
- `placement`: the name (reserved for the run) and what is already on disk there;
- `segments`: filling a part's segments, one stream each, with re-requests after failures;
- `sender`: one GET through the host gate, and the retry step between attempts;
- `response`, `outcomes`, `byte_rate`, `context`: header parsing, explicit outcomes, `--limit-rate`, and
  what the files of a run share;
- `entries`, `results`: what to fetch (input files) and what a run reports.
Disk and names live in `crawler.fetch` (`disk`, `sidecar`, `names`), shared with the crawl's `save:`.
"""

from crawler.downloader.driver import Downloader, download
from crawler.downloader.entries import Checksum, DownloadEntry, InputError, parse_input
from crawler.downloader.results import ActiveFile, DownloadProgress, DownloadResult

__all__ = [
    "ActiveFile",
    "Checksum",
    "DownloadEntry",
    "DownloadProgress",
    "DownloadResult",
    "Downloader",
    "InputError",
    "download",
    "parse_input",
]
