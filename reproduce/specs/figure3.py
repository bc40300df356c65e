"""Figure 3: embedding space and pseudo labels of IFND through training (CIFAR-10, t-SNE).

IFND seed 0 (Table 5's run) keeps checkpoints at the profile's snapshot fractions of training. At
each one, a t-SNE of the projection features of training samples: top row coloured by the true
class, bottom row by the accepted pseudo label at k = 10 (unaccepted samples light grey, cluster
centroids as x marks). The table lists the acceptance rate and the silhouette of the features."""
from __future__ import annotations

import numpy as np

from reproduce import plots
from reproduce.runs import NotRun
from reproduce.specs.base import Context, Grid, Spec, method, pretrain, result, source, tsne


def ifnd_run(ctx: Context):
    return pretrain(ctx, method(ctx, "ifnd"), 0, "cifar10", label="ifnd seed 0")


class Figure3(Spec):
    name = "figure3"
    title = "Figure 3: Embedding space and pseudo labels of IFND through training (CIFAR-10)"
    kind = "figure"

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, self.title, "Figure 3")
        train = ifnd_run(ctx)
        epochs = train.snapshots if not isinstance(train, NotRun) else ()
        grid.add_col("accepted", "accepted pseudo labels (k=10)")
        grid.add_col("silhouette", "silhouette (true classes, cosine)")
        for epoch in epochs:
            run = tsne(ctx, train, epoch, pseudo=True, space=train.config.cluster_on)
            grid.add_row(f"e{epoch}", f"epoch {epoch}")
            grid.set(f"e{epoch}", "accepted", source([run], result("accepted_fraction")), fmt="{:.2f}")
            grid.set(f"e{epoch}", "silhouette", source([run], result("silhouette")), fmt="{:.3f}")
        if isinstance(train, NotRun):
            grid.add_row("none", "IFND")
            grid.set("none", "accepted", train)
        grid.notes.append(f"t-SNE of {ctx.profile.tsne_points} training samples of IFND seed 0 (the run of Table 5) "
                          "at each kept checkpoint, projection features (what the k-means clusters).")
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        top, bottom, classes = [], [], None
        for row in grid.rows:
            cell = grid.cells.get((row.key, "accepted"))
            record = resolved.record(cell.ours.runs[0]) if cell is not None and hasattr(cell.ours, "runs") else None
            r = (record or {}).get("result")
            if not r:
                top.append({"title": f"{row.title}: pending"})
                bottom.append({"title": f"{row.title}: pending"})
                continue
            classes = r.get("classes") or classes
            silhouette = f"\nsilhouette {r['silhouette']:+.3f}".replace("-", "\u2212") if "silhouette" in r else ""
            top.append({"xy": r["xy"], "colours": r["labels"], "title": f"{row.title}: true classes{silhouette}"})
            pseudo = np.asarray(r.get("pseudo", [-1] * len(r["xy"])))
            accepted = r.get("accepted_fraction", 0.0)
            bottom.append({"xy": r["xy"], "colours": np.maximum(pseudo, 0), "grey": pseudo < 0,
                           "centroids": r.get("centroids_xy"),
                           "title": f"{row.title}: pseudo labels\n{accepted:.0%} accepted"})
        plots.tsne_panels(path, [top, bottom], self.title, ["true classes", "pseudo labels (k = 10)"], classes,
                          pseudo_legend=True, legend_title="true class (top row)",
                          note="Bottom row: colour = accepted pseudo label (cluster id, not a class); grey = samples "
                               "without an accepted pseudo label; black x = centroid of each pseudo label. Silhouette: "
                               "of the projection features by true class (cosine), not of the 2-D map.")
