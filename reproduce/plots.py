"""Matplotlib figures: Figure 1's gap bars, Figure 6's curves through training, and the t-SNE panels of
Figures 3, 4 and 7 (true classes coloured with a class legend; pseudo-label panels colour accepted
pseudo labels, draw unaccepted samples light grey and cluster centroids as black crosses, as in the
paper's Figure 3), and the detection-quality scatter (gain against MTPR / MTNR). Files are written
atomically and hold no date, so the same records give the same bytes."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ifnd.io import atomic_path  # noqa: E402

COLORS = {"SimCLR": "#1f77b4", "SupCon": "#d62728", "IFND": "#2ca02c", "gap": "#ff7f0e"}
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")
GREY = "#c8c8c8"


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def gap_bars(path, panels: list[dict], title: str, note: str = "") -> Path:
    """Each panel: ``{"title", "groups": [label], "bars": {method: ([means], [stds or None])}}``.

    Every panel's y-axis runs from 0 to 100 % (one scale, no truncated bars); the SimCLR − SupCon
    gap is written above each group."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.4), squeeze=False, sharey=True)
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
                    ax.annotate(f"{a - b:+.1f}".replace("-", "\u2212"), (xi, max(a, b)), ha="center", va="bottom",
                                fontsize=8, color=COLORS["gap"], xytext=(0, 4), textcoords="offset points")
        ax.set_ylim(0, 105)
        ax.set_xticks(x, groups, fontsize=8)
        ax.set_ylabel("Top-1 (%)")
        ax.set_title(panel["title"], fontsize=10)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(title + "\n(orange: SimCLR − SupCon; y-axes from 0, one scale)", fontsize=11)
    if note:
        fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=8, wrap=True)
    fig.tight_layout()
    return _save(fig, path)


def curve_panels(path, panels: list[dict], title: str, note: str = "") -> Path:
    """Side-by-side line plots; each panel ``{"title", "xlabel", "ylabel", "series": {name: (xs, ys, stds)}}``.

    Series get distinct markers and line styles (and a small x offset), so series that coincide
    stay visible; a std band is drawn where given."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        names = list(panel["series"])
        for i, name in enumerate(names):
            xs, ys, stds = panel["series"][name]
            points = [(x, y, (stds[j] if stds else None)) for j, (x, y) in enumerate(zip(xs, ys)) if y is not None]
            if not points:
                continue
            px, py, ps = zip(*points)
            shift = 0.06 * (i - (len(names) - 1) / 2)
            px = [x + shift for x in px]
            line = ax.plot(px, py, marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                           label=name, markersize=6, fillstyle="none" if i % 2 else "full")[0]
            if any(s is not None for s in ps):
                ax.errorbar(px, py, yerr=[_error(s) for s in ps], fmt="none", ecolor=line.get_color(), capsize=3,
                            alpha=0.7)
        _label_panel(ax, panel, bool(ax.get_legend_handles_labels()[0]))
    return _finish(fig, title, note, path)


def _label_panel(ax, panel: dict, drawn: bool) -> None:
    """Axis labels, title and grid of a panel; its legend, or a line saying nothing is drawn yet."""
    ax.set_xlabel(panel["xlabel"])
    ax.set_ylabel(panel["ylabel"])
    ax.set_title(panel["title"], fontsize=9)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "nothing finished yet", ha="center", va="center", transform=ax.transAxes, fontsize=9)


def _finish(fig, title: str, note: str, path):
    fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=8, wrap=True)
    fig.tight_layout()
    return _save(fig, path)


def _scatter(ax, xy, colours, title: str, centroids=None, grey_mask=None):
    xy = np.asarray(xy)
    colours = np.asarray(colours)
    if grey_mask is not None and grey_mask.any():
        ax.scatter(xy[grey_mask, 0], xy[grey_mask, 1], s=3, c=GREY, linewidths=0)
        keep = ~grey_mask
    else:
        keep = np.ones(len(xy), dtype=bool)
    if keep.any():
        ax.scatter(xy[keep, 0], xy[keep, 1], s=3, c=colours[keep] % 20, cmap="tab20" if colours.max() >= 10
                   else "tab10", vmin=0, vmax=19 if colours.max() >= 10 else 9, linewidths=0)
    if centroids is not None and len(centroids):
        c = np.asarray(centroids)
        ax.scatter(c[:, 0], c[:, 1], marker="x", s=30, c="black", linewidths=1.2)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def tsne_panels(path, panels: list[list[dict | None]], title: str, row_titles: list[str] | None = None,
                classes: list[str] | None = None, pseudo_legend: bool = False, note: str = "",
                legend_title: str = "true class") -> Path:
    """A grid of t-SNE panels; each panel ``{"xy", "colours", "title", "grey" (bool mask), "centroids"}``.

    ``classes``: the true class names (a legend of their colours); ``pseudo_legend``: explain the
    grey points (unaccepted samples) and crosses (centroids of the accepted pseudo labels)."""
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
            _scatter(ax, panel["xy"], panel["colours"], panel.get("title", ""), panel.get("centroids"), grey)
        if row_titles:
            axes[r][0].set_ylabel(row_titles[r], fontsize=9)
    legends = []
    if classes:
        cmap = plt.get_cmap("tab10")
        legends.append((legend_title, [Line2D([], [], marker="o", linestyle="", color=cmap(i), markersize=5, label=name)
                                       for i, name in enumerate(classes)]))
    if pseudo_legend:
        legends.append(("pseudo-label panels", [
            Line2D([], [], marker="o", linestyle="", color=GREY, markersize=5, label="no accepted pseudo label"),
            Line2D([], [], marker="x", linestyle="", color="black", markersize=6, label="centroid of a pseudo label")]))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.8 if legends else 1, 1))
    for i, (name, handles) in enumerate(legends):
        fig.legend(handles=handles, loc="upper left" if i == 0 else "lower left", bbox_to_anchor=(0.81, 0.9 if i == 0
                   else 0.1), fontsize=8, title=name, title_fontsize=8, frameon=False)
    if note:
        fig.text(0.5, 0.0, note, ha="center", va="top", fontsize=8, wrap=True)
    return _save(fig, path)


def _error(value):
    return 0.0 if value is None else value


def scatter_panels(path, panels: list[dict], title: str, note: str = "") -> Path:
    """Side-by-side scatter panels with error bars in x and y (std over seeds); each panel is
    ``{"title", "xlabel", "ylabel", "curve": (label, [(x, xerr, y, yerr, text)]), "points": [(label, x, xerr, y,
    yerr)], "hline": (y, label)}``.

    The curve's points are joined in the order given and each is labelled with its text; every other
    point gets its own marker and colour, a legend entry and its label beside it; ``hline`` is a dashed
    reference line (e.g. the baseline). Points without a y are left out."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.6), squeeze=False)
    method_colours = ("#2ca02c", "#9467bd", "#8c564b", "#1f77b4", "#e377c2", "#17becf")
    for ax, panel in zip(axes[0], panels):
        drawn = False
        if panel.get("hline") is not None:
            y, label = panel["hline"]
            ax.axhline(y, color="grey", linestyle="--", linewidth=1, label=label)
        label, points = panel.get("curve") or ("", [])
        points = [p for p in points if p[0] is not None and p[2] is not None]
        if points:
            xs, xerr, ys, yerr, texts = zip(*points)
            ax.errorbar(xs, ys, xerr=[_error(e) for e in xerr], yerr=[_error(e) for e in yerr], color="#d62728",
                        marker="o", linestyle="-", capsize=3, label=label, zorder=3)
            for x, y, text in zip(xs, ys, texts):
                ax.annotate(text, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8, color="#d62728")
            drawn = True
        for i, (name, x, xerr, y, yerr) in enumerate(panel.get("points", [])):
            if x is None or y is None:
                continue
            colour = method_colours[i % len(method_colours)]
            ax.errorbar([x], [y], xerr=[_error(xerr)], yerr=[_error(yerr)], color=colour,
                        marker=MARKERS[(i + 1) % len(MARKERS)], markersize=8, linestyle="", capsize=3, label=name,
                        zorder=4)
            ax.annotate(name, (x, y), xytext=(6, -12), textcoords="offset points", fontsize=8, color=colour)
            drawn = True
        _label_panel(ax, panel, drawn)
    return _finish(fig, title, note, path)
