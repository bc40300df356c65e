"""Figure 4: learned embedding spaces of SimCLR, IFND and SupCon on CIFAR-10 (t-SNE of test features).

The final checkpoints of Table 5's runs (SupCon with the original 10 classes): the map drawn is seed 0's,
the table's silhouette of the backbone features by true class is over every training seed. The paper's
claim is that IFND's clusters are more compact than SimCLR's and closer to SupCon's."""
from __future__ import annotations

from reproduce import plots
from reproduce.specs.base import Claim, Context, Grid, Spec, method, pretrain, result, seeds, source, tsne

METHODS = (("simclr", "SimCLR"), ("ifnd", "IFND"), ("supcon", "SupCon"))
SILHOUETTE_NOTE = ("Silhouette: 1 = compact, well separated classes; 0 = overlapping classes; negative = samples "
                   "closer to another class than to their own on average. Differences between negative silhouettes compare "
                   "degrees of overlap, not compact clusters.")


def final_run(ctx: Context, name: str, seed: int):
    return pretrain(ctx, method(ctx, name), seed, "cifar10",
                    label=f"{name}{' 10 classes' if name == 'supcon' else ''} seed {seed}")


class Figure4(Spec):
    name = "figure4"
    title = "Figure 4: Learned embedding spaces on CIFAR-10 (t-SNE)"
    kind = "figure"

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, self.title, "Figure 4")
        grid.add_col("silhouette", "silhouette (true classes, cosine)")
        for key, title in METHODS:
            grid.add_row(key, title)
            maps = [tsne(ctx, final_run(ctx, key, seed)) for seed in seeds(ctx, self.name)]
            grid.set(key, "silhouette", source(maps, result("silhouette")), fmt="{:.3f}")
        grid.claims.append(Claim("IFND more compact than SimCLR: silhouette by true class, IFND − SimCLR",
                                 ("ifnd", "silhouette"), ("simclr", "silhouette")))
        grid.claims.append(Claim("SupCon more compact than IFND: silhouette by true class, SupCon − IFND",
                                 ("supcon", "silhouette"), ("ifnd", "silhouette")))
        grid.notes.append(f"t-SNE of {ctx.profile.tsne_points} test images' backbone features, final checkpoints "
                          "(the PNG: seed 0); silhouette on the features themselves (cosine), not on the 2-D map, "
                          "over every training seed. The paper states the claims below without numbers; here they "
                          "are tested on the silhouette.")
        grid.notes.append(SILHOUETTE_NOTE)
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        panels, classes = [], None
        for row in grid.rows:
            cell = grid.cells[(row.key, "silhouette")]
            record = resolved.record(cell.ours.runs[0]) if hasattr(cell.ours, "runs") else None
            r = (record or {}).get("result")
            if r:
                classes = r.get("classes") or classes
                silhouette = f"\nsilhouette {r['silhouette']:+.3f}".replace("-", "\u2212") if "silhouette" in r else ""
                panels.append({"xy": r["xy"], "colours": r["labels"], "title": row.title + silhouette})
            else:
                panels.append({"title": f"{row.title}: " + ("pending" if hasattr(cell.ours, "runs") else "not run")})
        plots.tsne_panels(path, [panels], self.title, classes=classes,
                          note="Silhouette: of the backbone features by true class (cosine), not of the 2-D map; "
                               "1 is compact, 0 overlapping, negative worse than overlapping.")
