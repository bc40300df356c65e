"""Figure 6: clustering quality through training for three acceptance schemes (Appendix G).

Runs: Table 6's [b] (constant 100%), [c] (step) and [g] (linear, IFND). Two NMI measures, drawn in
two panels: (left, the table's cells) k-means with k = the number of classes on the backbone
features of the training images at each kept checkpoint, NMI with the true classes; (right) the NMI
of the trainer's own pseudo labels (its k-means at k = the number of classes, on the features it
clusters) with the true classes, logged at each refresh as ``nmi_k<k>``. The paper draws Figure 6
without numbers, so no paper curve is drawn; its claims are tested on the left panel's NMI."""
from __future__ import annotations

from reproduce import plots
from reproduce.runs import NotRun
from reproduce.specs.base import Claim, Context, Grid, Spec, nmi, result, seeds, source
from reproduce.specs.table6 import SAME_AS_B, aliased, dataset, dataset_title, row_run, step_is_constant

SCHEMES = (("b", "constant 100% [b]"), ("c", "step [c]"), ("g", "linear (IFND) [g]"))


class Figure6(Spec):
    name = "figure6"
    title = "Figure 6: Clustering quality (NMI) through training"
    kind = "figure"

    def build(self, ctx: Context) -> Grid:
        data = dataset(ctx)
        grid = Grid(self.name, f"{self.title} ({dataset_title(data)})", "Figure 6")
        trains = {key: [row_run(ctx, key, seed) for seed in seeds(ctx, "figure6")] for key, _ in SCHEMES}
        first = next((t[0] for t in trains.values() if not isinstance(t[0], NotRun)), None)
        epochs = first.snapshots if first is not None else ()
        same = step_is_constant(ctx)
        for key, title in SCHEMES:
            grid.add_col(key, title + (" = [b] here" if key == "c" and same else ""))
            grid.extra_runs += trains[key]
        for epoch in epochs:
            grid.add_row(f"e{epoch}", f"epoch {epoch}")
            for key, _ in SCHEMES:
                evals = [nmi(ctx, t, data, epoch=epoch, split="train") for t in trains[key]]
                grid.set(f"e{epoch}", key, aliased(source(evals, result("nmi_mean")), SAME_AS_B if key == "c" and same
                                                   else ""))
        if epochs:
            first_row, last_row = f"e{epochs[0]}", f"e{epochs[-1]}"
            grid.claims += [Claim("final NMI: linear [g] above constant 100% [b]", (last_row, "g"), (last_row, "b")),
                            Claim("final NMI: linear [g] above step [c]", (last_row, "g"), (last_row, "c")),
                            Claim(f"NMI of linear [g] grows through training (epoch {epochs[-1]} − epoch {epochs[0]})",
                                  (last_row, "g"), (first_row, "g"))]
        k = 100 if data == "cifar100" else 10
        grid.notes.append(f"Cells: NMI (%) of k-means with k = {k} on the backbone features of the training images at "
                          f"each kept checkpoint ({ctx.profile.nmi_seeds} k-means seeds), mean over training seeds. "
                          "The PNG draws them (left) beside the NMI of the trainer's own pseudo labels at each refresh "
                          "(right), a different measure.")
        if same:
            grid.notes.append("[c] is the same training as [b] at these settings (see Table 6): its column repeats "
                              "[b]'s runs, and claims on it read n/a at this profile.")
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        epochs = [int(row.key[1:]) for row in grid.rows]
        data = dataset(ctx)
        k = 100 if data == "cifar100" else 10
        left, right = {}, {}
        for col in grid.cols:
            values = [resolved.value(row.key, col.key) for row in grid.rows]
            left[col.title] = (epochs, [v.mean for v in values], [v.std for v in values])
            logged: dict[int, list[float]] = {}
            for seed in seeds(ctx, "figure6"):
                record = resolved.record(row_run(ctx, col.key, seed))
                if record is None:
                    continue
                for m in record["result"].get("metrics", []):
                    if f"nmi_k{k}" in m:
                        logged.setdefault(m["epoch"], []).append(m[f"nmi_k{k}"])
            xs = sorted(logged)
            right[col.title] = (xs, [sum(logged[x]) / len(logged[x]) for x in xs], None)
        panels = [{"title": f"k-means (k = {k}) on backbone features at kept checkpoints\n(mean ± std over training "
                            "seeds)", "xlabel": "epoch", "ylabel": "NMI (%)", "series": left},
                  {"title": f"the trainer's pseudo labels (k = {k}) at each refresh\n(mean over training seeds)",
                   "xlabel": "epoch", "ylabel": "NMI (%)", "series": right}]
        same = any("= [b]" in col.title for col in grid.cols)
        note = ("The paper draws Figure 6 without numbers: no paper curve. Markers are offset slightly in x so that "
                "coinciding series stay visible" + ("; [c] is the same training as [b] here, so their curves "
                                                    "coincide." if same else "."))
        plots.curve_panels(path, panels, grid.title, note)
