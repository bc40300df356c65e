"""Figure 7 (Appendix H): embedding spaces through training of SimCLR, IFND (L_attr), IFND (L_elim)
and SupCon on CIFAR-10 (t-SNE of test features at each kept checkpoint of seed 0 of the runs of
Tables 5 and 6; the final checkpoint's silhouette over every training seed, for the claims)."""
from __future__ import annotations

from reproduce import plots
from reproduce.runs import NotRun
from reproduce.specs.base import (Claim, Context, Grid, Spec, last_metric, method, pretrain, result, seeds, source,
                                  tsne)
from reproduce.specs.figure4 import SILHOUETTE_NOTE

METHODS = (("simclr", "(a) SimCLR (L_inst)"), ("ifnd_attr", "(b) IFND (L_attr)"), ("ifnd", "(c) IFND (L_elim)"),
           ("supcon", "(d) SupCon (L_attr, labels)"))


def run_of(ctx: Context, key: str, seed: int = 0):
    if key == "ifnd_attr":
        fields = method(ctx, "ifnd")
        if not isinstance(fields, NotRun):
            fields = {**fields, "objective": "attraction"}  # Table 6 [h]
        return pretrain(ctx, fields, seed, "cifar10", label=f"Table 6 [h] seed {seed}")
    return pretrain(ctx, method(ctx, key), seed, "cifar10", label=f"{key} seed {seed}")


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
                trains = ([run_of(ctx, key, seed) for seed in seeds(ctx, self.name)] if epoch == epochs[-1]
                          else [runs[key]])
                grid.set(key, f"e{epoch}", source([tsne(ctx, train, epoch, points=points) for train in trains],
                                                  result("silhouette")), fmt="{:.3f}")
        if epochs:
            last = f"e{epochs[-1]}"
            grid.claims.append(Claim("final IFND (L_elim) more compact than SimCLR: silhouette by true class, "
                                     "(c) − (a)", ("ifnd", last), ("simclr", last)))
        add_attraction_claims(ctx, grid)
        grid.notes.append(f"Cells: silhouette (cosine, true classes) of the backbone features of {points} test "
                          "images at each kept checkpoint of seed 0, and at the last over every training seed; the "
                          "PNG shows seed 0's t-SNE coloured by true class.")
        grid.notes.append(SILHOUETTE_NOTE)
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        panels, classes = [], None
        epochs = [col for col in grid.cols if col.key.startswith("e")]
        for row in grid.rows:
            line = []
            for col in epochs:
                cell = grid.cells[(row.key, col.key)]
                record = resolved.record(cell.ours.runs[0]) if hasattr(cell.ours, "runs") else None
                r = (record or {}).get("result")
                if r:
                    classes = r.get("classes") or classes
                    silhouette = (f"\nsilhouette {r['silhouette']:+.3f}".replace("-", "\u2212")
                                  if "silhouette" in r else "")
                    line.append({"xy": r["xy"], "colours": r["labels"], "title": col.title + silhouette})
                else:
                    line.append({"title": "pending" if hasattr(cell.ours, "runs") else "not run"})
            panels.append(line)
        plots.tsne_panels(path, panels, self.title, [row.title for row in grid.rows], classes,
                          note="Silhouette: of the backbone features by true class (cosine), not of the 2-D map.")


def add_attraction_claims(ctx: Context, grid: Grid) -> None:
    """Appendix H: attraction's clusters are concentrated but semantically wrong.

    "Semantically wrong" is measured on the pseudo labels: the NMI of the trainer's last pseudo labels
    (k = 10) with the true classes, (b) vs (c), every training seed (the runs of Table 6 [h] and [g]
    on CIFAR-10; seed 0 is the run drawn here). "Concentrated" needs the silhouette of the features
    by their own pseudo labels, which no evaluation of this suite records yet."""
    grid.add_col("pseudo_nmi", "pseudo labels' NMI with true classes (trainer, last refresh, k=10)")
    grid.add_col("pseudo_silhouette", "silhouette by own pseudo labels")
    for key in ("ifnd_attr", "ifnd"):
        trains = [run_of(ctx, key, seed) for seed in seeds(ctx, "table6")]
        grid.set(key, "pseudo_nmi", source(trains, last_metric("nmi_k10")), fmt="{:.2f}")
        grid.set(key, "pseudo_silhouette", NotRun("the silhouette of the features by their own pseudo labels is not "
                                                  "recorded by this suite's t-SNE evaluation (test images, no pseudo "
                                                  "labels)"), fmt="{:.3f}")
    grid.claims.append(Claim("(b) attraction's clusters are semantically wrong: its pseudo labels match the true "
                             "classes less than (c) elimination's (NMI, (c) − (b))", ("ifnd", "pseudo_nmi"),
                             ("ifnd_attr", "pseudo_nmi")))
    grid.claims.append(Claim("(b) attraction's clusters are concentrated: silhouette by its own pseudo labels above "
                             "that by the true classes", ("ifnd_attr", "pseudo_silhouette"),
                             ("ifnd_attr", last_col(grid))))


def last_col(grid: Grid) -> str:
    epochs = [col.key for col in grid.cols if col.key.startswith("e")]
    return epochs[-1] if epochs else "pseudo_nmi"
