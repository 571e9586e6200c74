"""Bulk downloads: `crawler download` and `crawler.download()`: resumable, verified, atomic, segmented.

Layout: `_entries` (what to fetch, input files), `_names` (file names), `_resume` (part + sidecar),
`_segments` (positioned writes and hashing), `_runner` (the engine), `_progress` (the terminal display).
"""

from crawler.downloader.entries import Checksum, DownloadEntry, InputError, parse_input
from crawler.downloader.results import ActiveFile, DownloadProgress, DownloadResult
from crawler.downloader.runner import Downloader, download

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
