"""Figure 7 (Appendix H): embedding spaces through training of SimCLR, IFND (L_attr), IFND (L_elim)
and SupCon on CIFAR-10 (t-SNE of test features at each kept checkpoint; seed 0 of the runs of
Tables 5 and 6)."""
from __future__ import annotations

from reproduce import plots
from reproduce.runs import NotRun
from reproduce.specs.base import Claim, Context, Grid, Spec, method, pretrain, result, source, tsne

METHODS = (("simclr", "(a) SimCLR (L_inst)"), ("ifnd_attr", "(b) IFND (L_attr)"), ("ifnd", "(c) IFND (L_elim)"),
           ("supcon", "(d) SupCon (L_attr, labels)"))


def run_of(ctx: Context, key: str):
    if key == "ifnd_attr":
        fields = method(ctx, "ifnd")
        if not isinstance(fields, NotRun):
            fields = {**fields, "objective": "attraction"}  # Table 6 [h]
        return pretrain(ctx, fields, 0, "cifar10", label="Table 6 [h] seed 0")
    return pretrain(ctx, method(ctx, key), 0, "cifar10", label=f"{key} seed 0")


class Figure7(Spec):
    name = "figure7"
    title = "Figure 7: Embedding spaces through training on CIFAR-10 (t-SNE)"
    kind = "figure"

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, self.title, "Figure 7")
        runs = {key: run_of(ctx, key) for key, _ in METHODS}
        first = next((r for r in runs.values() if not isinstance(r, NotRun)), None)
        epochs = first.snapshots if first is not None else ()
        points = max(100, ctx.profile.tsne_points // 2)
        for epoch in epochs:
            grid.add_col(f"e{epoch}", f"epoch {epoch}")
        for key, title in METHODS:
            grid.add_row(key, title)
            for epoch in epochs:
                grid.set(key, f"e{epoch}", source([tsne(ctx, runs[key], epoch, points=points)], result("silhouette")),
                         fmt="{:.3f}")
        if epochs:
            last = f"e{epochs[-1]}"
            grid.claims.append(Claim("final IFND (L_elim) more compact than SimCLR", ("ifnd", last), ("simclr", last)))
        grid.notes.append(f"Cells: silhouette (cosine, true classes) of the backbone features of {points} test "
                          "images at each kept checkpoint; the PNG shows their t-SNE coloured by true class.")
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        panels = []
        for row in grid.rows:
            line = []
            for col in grid.cols:
                cell = grid.cells[(row.key, col.key)]
                record = resolved.record(cell.ours.runs[0]) if hasattr(cell.ours, "runs") else None
                r = (record or {}).get("result")
                line.append({"xy": r["xy"], "colours": r["labels"], "title": f"{col.title}"} if r else
                            {"title": "pending" if hasattr(cell.ours, "runs") else "not run"})
            panels.append(line)
        plots.tsne_panels(path, panels, self.title, [row.title for row in grid.rows])
