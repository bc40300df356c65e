"""Matplotlib figures: Figure 1's gap bars, Figure 6's clustering quality through training, and the
t-SNE panels of Figures 3, 4 and 7 (pseudo labels coloured, unaccepted samples light grey,
centroids as x marks, as in the paper's Figure 3). Files are written atomically."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ifnd.io import atomic_path  # noqa: E402

COLORS = {"SimCLR": "#1f77b4", "SupCon": "#d62728", "IFND": "#2ca02c", "gap": "#ff7f0e"}


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def gap_bars(path, panels: list[dict], title: str) -> Path:
    """Each panel: ``{"title", "groups": [label], "bars": {method: ([means], [stds or None])}}``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        groups = panel["groups"]
        x = np.arange(len(groups))
        methods = list(panel["bars"])
        width = 0.8 / max(1, len(methods))
        for i, name in enumerate(methods):
            means, stds = panel["bars"][name]
            heights = [m if m is not None else 0.0 for m in means]
            errors = [s if s is not None else 0.0 for s in (stds or [None] * len(means))]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, heights, width, label=name,
                   yerr=errors if any(errors) else None, capsize=2 if any(errors) else 0,
                   color=COLORS.get(name.split()[0], None))
        simclr, supcon = panel["bars"].get("SimCLR"), panel["bars"].get("SupCon")
        if simclr and supcon:
            for xi, a, b in zip(x, simclr[0], supcon[0]):
                if a is not None and b is not None:
                    ax.annotate(f"{a - b:+.1f}", (xi, max(a, b)), ha="center", va="bottom", fontsize=8,
                                color=COLORS["gap"], xytext=(0, 4), textcoords="offset points")
        values = [m for name in methods for m in panel["bars"][name][0] if m is not None]
        if values:
            low = min(values)
            ax.set_ylim(max(0.0, low - 0.25 * (max(values) - low + 1) - 2), max(values) + 3)
        ax.set_xticks(x, groups, fontsize=8)
        ax.set_ylabel("Top-1 (%)")
        ax.set_title(panel["title"], fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title + "  (orange: SimCLR − SupCon)", fontsize=11)
    return _save(fig, path)


def curves(path, series: dict, xlabel: str, ylabel: str, title: str) -> Path:
    """``series``: name -> (xs, ys, stds or None)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys, stds) in series.items():
        points = [(x, y, (stds[i] if stds else None)) for i, (x, y) in enumerate(zip(xs, ys)) if y is not None]
        if not points:
            continue
        px, py, ps = zip(*points)
        ax.plot(px, py, marker="o", label=name)
        if any(s is not None for s in ps):
            low = [y - (s or 0) for y, s in zip(py, ps)]
            high = [y + (s or 0) for y, s in zip(py, ps)]
            ax.fill_between(px, low, high, alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _scatter(ax, xy, colours, title: str, centroids=None, cmap="tab10", grey_mask=None):
    xy = np.asarray(xy)
    colours = np.asarray(colours)
    if grey_mask is not None and grey_mask.any():
        ax.scatter(xy[grey_mask, 0], xy[grey_mask, 1], s=3, c="#d3d3d3", linewidths=0)
        keep = ~grey_mask
    else:
        keep = np.ones(len(xy), dtype=bool)
    if keep.any():
        ax.scatter(xy[keep, 0], xy[keep, 1], s=3, c=colours[keep] % 20, cmap=cmap, vmin=0, vmax=19 if cmap == "tab20"
                   else 9, linewidths=0)
    if centroids is not None and len(centroids):
        c = np.asarray(centroids)
        ax.scatter(c[:, 0], c[:, 1], marker="x", s=30, c="black", linewidths=1.2)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def tsne_panels(path, panels: list[list[dict | None]], title: str, row_titles: list[str] | None = None) -> Path:
    """A grid of t-SNE panels; each panel ``{"xy", "colours", "title", "grey" (bool mask), "centroids"}``."""
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.9 * rows), squeeze=False)
    for r, row in enumerate(panels):
        for c in range(cols):
            ax = axes[r][c]
            panel = row[c] if c < len(row) else None
            if panel is None or not panel.get("xy"):
                ax.text(0.5, 0.5, (panel or {}).get("title", "not available"), ha="center", va="center",
                        fontsize=8, wrap=True)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            grey = np.asarray(panel["grey"]) if panel.get("grey") is not None else None
            _scatter(ax, panel["xy"], panel["colours"], panel.get("title", ""), panel.get("centroids"),
                     panel.get("cmap", "tab10"), grey)
        if row_titles:
            axes[r][0].set_ylabel(row_titles[r], fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
