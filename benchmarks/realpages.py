"""The real-page workload: Debian's `python3-doc` HTML (the Python docs: median ~50 KB, ~310 links per page)
mounted `MOUNTS` times side by side under one nginx root (~10.5k pages), plus a start page linking to each copy.

Each mount is a symlink to the installed docs (nothing is copied); nginx follows it. The pages every crawler
must reach are computed once from the files (breadth-first from the start page over `a[href]`, resolved as a
browser does) and kept next to the tree, so the fetch loops fetch exactly the pages the crawlers reach.

    python -m benchmarks.realpages DIR       # build (apt-get installs python3-doc when it is missing)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MOUNTS", "RealSite", "build_real_site", "ensure_python_docs"]

MOUNTS = 20
_DOC_DIRS = ("/usr/share/doc/python3-doc/html", "/usr/share/doc/python3/html")
_BASE = "http://bench.invalid"
_VERSION = 1


def ensure_python_docs(log: Callable[[str], None] = print) -> Path:
    """The installed Python docs' HTML folder; installs Debian's `python3-doc` with apt-get when missing."""
    for d in _DOC_DIRS:
        if (Path(d) / "index.html").exists():
            return Path(d).resolve()
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("python3-doc is not installed and apt-get is not available: install it and rerun")
    log("python3-doc is not installed: installing Debian's python3-doc package (apt-get install -y python3-doc)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run([*sudo, apt, "install", "-y", "-q", "python3-doc"], env=env).returncode != 0:
        subprocess.run([*sudo, apt, "update", "-q"], check=False, env=env)
        subprocess.run([*sudo, apt, "install", "-y", "-q", "python3-doc"], check=False, env=env)
    for d in _DOC_DIRS:
        if (Path(d) / "index.html").exists():
            return Path(d).resolve()
    raise RuntimeError("installing python3-doc with apt-get failed")


@dataclass
class RealSite:
    www: Path
    start: str  # URL path of the start page
    paths: list[str]  # URL paths of the HTML pages reachable from the start page
    sizes: dict[str, int]  # URL path -> bytes

    @property
    def median_bytes(self) -> int:
        sizes = sorted(self.sizes[p] for p in self.paths)
        return sizes[len(sizes) // 2] if sizes else 0


def _reachable(docs: Path) -> tuple[list[str], dict[str, int], float]:
    """HTML pages of one copy reachable from its index.html (URL paths relative to the copy's root), their
    sizes, and the mean number of `a[href]` per page."""
    from selectolax.lexbor import LexborHTMLParser

    from crawler.model.url import join_url

    root = _BASE + "/"
    todo, seen = ["index.html"], {"index.html"}
    sizes: dict[str, int] = {}
    links = 0
    while todo:
        rel = todo.pop()
        file = docs / (rel + "index.html" if rel.endswith("/") or not rel else rel)
        if file.suffix != ".html" or not file.is_file():
            continue
        body = file.read_bytes()
        sizes[rel] = len(body)
        url = root + rel
        for node in LexborHTMLParser(body).css("a[href]"):
            links += 1
            target = join_url(url, node.attrs.get("href") or "")
            if target is None or not target.startswith(root):
                continue
            path = target[len(root) :].partition("?")[0]
            if path not in seen:
                seen.add(path)
                todo.append(path)
    pages = sorted(sizes)
    return pages, sizes, links / max(1, len(pages))


def build_real_site(workdir: Path, *, mounts: int = MOUNTS, log: Callable[[str], None] = print,
                    docs: Path | None = None) -> RealSite:  # fmt: skip
    """The nginx root under `workdir/www` (reused when already built from the same docs). `docs` is an HTML
    folder with an index.html; by default the installed Python docs (installed when missing)."""
    docs = docs.resolve() if docs is not None else ensure_python_docs(log)
    www = workdir / "www"
    manifest = workdir / "pages.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("version") == _VERSION and data.get("docs") == str(docs) and data.get("mounts") == mounts:
            return RealSite(www, data["start"], data["paths"], data["sizes"])
    shutil.rmtree(www, ignore_errors=True)
    www.mkdir(parents=True)
    log(f"real pages: {mounts} mounts of {docs}")
    one, one_sizes, per_page = _reachable(docs)
    names = [f"m{i:02d}" for i in range(mounts)]
    for name in names:
        (www / name).symlink_to(docs, target_is_directory=True)
    anchors = "\n".join(f'<li><a href="/{n}/index.html">Python documentation, copy {n}</a></li>' for n in names)
    start_html = f"<!doctype html><html><head><title>Python docs x{mounts}</title></head><body><ul>\n{anchors}\n</ul>"
    (www / "index.html").write_text(start_html + "</body></html>\n")
    paths = ["/index.html"] + [f"/{n}/{p}" for n in names for p in one]
    sizes = {"/index.html": (www / "index.html").stat().st_size}
    sizes.update({f"/{n}/{p}": s for n in names for p in one for s in (one_sizes[p],)})
    manifest.write_text(json.dumps({"version": _VERSION, "docs": str(docs), "mounts": mounts, "start": "/index.html",
                                    "paths": paths, "sizes": sizes, "links_per_page": per_page}))  # fmt: skip
    log(f"real pages: {len(paths):,} pages, {per_page:.0f} links per page on average")
    return RealSite(www, "/index.html", paths, sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--mounts", type=int, default=MOUNTS)
    args = ap.parse_args()
    site = build_real_site(args.dir, mounts=args.mounts)
    print(f"{site.www}: {len(site.paths):,} pages, median {site.median_bytes:,} bytes")


if __name__ == "__main__":
    main()
