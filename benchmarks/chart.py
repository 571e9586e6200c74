"""The bar chart of a benchmark run: `python benchmarks/chart.py results.json results.png`.

Runs in the peers' venv (matplotlib is not a project dependency). Four panels: crawl pages/s per tool and
protocol on the synthetic site (ours highlighted, Scrapy's figure marked at 1x, 5x and 10x), the same on real pages
(the Python docs), download MB/s, frontier bytes per URL.
"""

from __future__ import annotations

import json
import sys
from typing import Any

OURS = "#d9480f"
PEER = "#4c6ef5"
CEILING = "#adb5bd"
PROTO = {"h1": "HTTP/1.1", "h2c": "h2c", "h2": "h2+TLS"}


def _bars(ax: Any, labels: list[str], values: list[float], colors: list[str], fmt: str, title: str,
          xlabel: str) -> None:  # fmt: skip
    y = list(range(len(labels)))[::-1]
    ax.barh(y, values, color=colors, height=0.7)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_title(title, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=9)
    top = max(values) if values else 1
    for yi, v in zip(y, values, strict=True):
        ax.text(v + top * 0.01, yi, format(v, fmt), va="center", fontsize=8)
    ax.set_xlim(0, top * 1.18)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=8)


def draw(results: dict[str, Any], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crawl = [r for r in results.get("crawl") or [] if r.get("ok")]
    real = [r for r in results.get("real") or [] if r.get("ok")]
    downloads = [r for r in results.get("downloads") or [] if r.get("mbps")]
    memory = [r for r in results.get("memory") or [] if r.get("rss_bytes_per_url") is not None]
    panels = [p for p, rows in (("crawl", crawl), ("real", real), ("downloads", downloads), ("memory", memory)) if rows]
    if not panels:
        raise SystemExit("nothing to chart: no crawl, download or memory results")
    heights = {"crawl": max(3.0, 0.42 * len(crawl) + 1.2), "real": max(2.5, 0.42 * len(real) + 1.0), "downloads": max(2.5, 0.38 * len(downloads) + 1.0),
               "memory": max(2.0, 0.38 * len(memory) + 1.0)}  # fmt: skip
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights[p] for p in panels)),
                             gridspec_kw={"height_ratios": [heights[p] for p in panels]}, squeeze=False)  # fmt: skip
    meta = results.get("meta", {})
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "crawl":
            labels = [f"{r['tool']} [{PROTO[r['protocol']]}]" for r in crawl]
            colors = [OURS if r["key"].startswith("ours") else CEILING if r["kind"] == "ceiling" else PEER
                      for r in crawl]  # fmt: skip
            pages = meta.get("crawl", {}).get("pages", 0)
            _bars(ax, labels, [r["pages_per_s"] for r in crawl], colors, ",.0f",
                  f"Whole-site crawl: {pages:,} pages, 64 concurrent",
                  "pages/s (wall time, start-up included; median).  Grey: bare fetch loops, no parsing")  # fmt: skip
            scrapy = next((r["pages_per_s"] for r in crawl if r["key"] == "scrapy-h1"), None)
            if scrapy:
                ax.set_ylim(-1.3, len(crawl) - 0.4)
                for mult, style in ((1, ":"), (5, "--"), (10, "-.")):
                    ax.axvline(scrapy * mult, color="#495057", linestyle=style, linewidth=0.8)
                    ax.text(scrapy * mult, -1.0, f" {mult}x Scrapy", fontsize=7, va="center", color="#495057")
        elif panel == "real":
            labels = [r["tool"] for r in real]
            colors = [OURS if r["key"].startswith("ours") else CEILING if r["kind"] == "ceiling" else PEER
                      for r in real]  # fmt: skip
            pages = meta.get("real", {}).get("pages", 0)
            _bars(ax, labels, [r["pages_per_s"] for r in real], colors, ",.0f",
                  f"Real pages: Python docs x{meta.get('real', {}).get('mounts', '?')}, {pages:,} pages, 64 concurrent",
                  "pages/s (wall time, start-up included; median).  Grey: fetch loops (the parse loop parses)")  # fmt: skip
        elif panel == "downloads":
            labels = [f"{r['tool']} ({r['case']})" for r in downloads]
            colors = [OURS if r["tool"].startswith("crawler") else PEER for r in downloads]
            _bars(ax, labels, [r["mbps"] for r in downloads], colors, ",.0f", "Downloads, loopback nginx",
                  "MB/s (median)")  # fmt: skip
        else:
            names = {"seen-set": "seen set", "python-set": "Python set[int]", "memory": "memory frontier",
                     "sqlite": "SQLite frontier"}  # fmt: skip
            labels = [f"{names.get(r['case'], r['case'])}, {r['urls'] / 1e6:g}M URLs" for r in memory]
            colors = [CEILING if r["case"] == "python-set" else OURS for r in memory]
            _bars(ax, labels, [r["rss_bytes_per_url"] for r in memory], colors, ",.1f",
                  "Frontier memory (process RSS growth per URL)", "bytes per URL")  # fmt: skip
    m = meta.get("machine", {})
    fig.suptitle(f"crawler benchmarks, {meta.get('date', '')}: {m.get('cores', '?')} cores, "
                 f"{meta.get('nginx', 'nginx')} (1 worker) on loopback", fontsize=10, x=0.01, ha="left")  # fmt: skip
    # tight_layout ignores the suptitle: keep ~0.35 inch above the first panel for it.
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(png, dpi=110)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: chart.py results.json results.png")
    with open(sys.argv[1]) as f:
        draw(json.load(f), sys.argv[2])


if __name__ == "__main__":
    main()
