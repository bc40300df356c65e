"""Figure 1: the effect of false negatives: SimCLR (blue) vs SupCon (red) with the gap (orange), and
IFND (green), per data set / label granularity. It plots Table 5's cells (the same runs), ours on
the left and the paper's Table 5 numbers (which Figure 1 draws) on the right."""
from __future__ import annotations

from reproduce import plots
from reproduce.specs.base import Context, Grid, Spec
from reproduce.specs.table5 import PAPER, PAPER_COLUMNS, build_grid


class Figure1(Spec):
    name = "figure1"
    title = "Figure 1: Effect of false negatives for contrastive learning"
    kind = "figure"

    def build(self, ctx: Context) -> Grid:
        grid = build_grid(ctx, self.name, beyond_paper=False)
        grid.title = self.title + " (the numbers behind the bars: Table 5's grid)"
        grid.paper_source = "Figure 1 / Table 5"
        grid.paper_file = "reproduce/specs/table5.py"  # Figure 1 draws Table 5's numbers
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        groups, bars = [], {"SimCLR": ([], []), "IFND": ([], []), "SupCon": ([], [])}
        for col in grid.cols:
            values = {name: resolved.value(row, col.key) for name, row in
                      (("SimCLR", "simclr"), ("IFND", "ifnd"), ("SupCon", "supcon"))}
            if all(v.status == "not run" for v in values.values()):
                continue
            classes = resolved.value("classes", col.key)
            short = col.title.replace("CIFAR-10 depth ", "C10 d").replace(" = paper CIFAR-10", "")
            groups.append(f"{short}\n{classes.values[0]:.0f} cls" if classes.values else short)
            for name, v in values.items():
                bars[name][0].append(v.mean)
                bars[name][1].append(v.std)
        paper_bars = {"SimCLR": (list(PAPER["simclr"]), None), "IFND": (list(PAPER["ifnd"]), None),
                      "SupCon": (list(PAPER["supcon"]), None)}
        panels = [{"title": f"ours ({ctx.profile.name})", "groups": groups or ["(nothing finished)"],
                   "bars": bars if groups else {"SimCLR": ([None], None)}},
                  {"title": "paper (Table 5)", "groups": [f"{c.replace('ImageNet ', 'IN ')}\n{n} cls" for c, n in
                                                          zip(PAPER_COLUMNS, PAPER["classes"])], "bars": paper_bars}]
        plots.gap_bars(path, panels, self.title, "Left: ours, mean over seeds (error bars: std over seeds); "
                       "right: the paper's Table 5 (no spread given).")
