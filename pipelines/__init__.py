"""Pipeline stages: what runs on a page after it is fetched.

A stage is any callable `stage(page)` (sync or async). It may edit `page.item`, add work with
`page.follow(url)`, replace the page by returning another `Page`, or drop it by raising `DropPage`.
Stages with `flush()` / `close()` methods (the item writers) are flushed and closed by the engine.
"""

from pipelines.fields import FieldExtractor, parse_field_spec
from pipelines.files import FileSaver, safe_relative_path
from pipelines.links import LinkExtractor
from pipelines.writers import CsvWriter, ItemWriter, JsonLinesWriter, open_writer, writer_format

__all__ = [
    "CsvWriter",
    "FieldExtractor",
    "FileSaver",
    "ItemWriter",
    "JsonLinesWriter",
    "LinkExtractor",
    "open_writer",
    "parse_field_spec",
    "safe_relative_path",
    "writer_format",
]
