"""Figure 6: clustering quality through training for three acceptance schemes (Appendix G).

Runs: Table 6's [b] (constant 100%), [c] (step) and [g] (linear, IFND). At each kept checkpoint,
k-means (k = number of classes) on the training features and its NMI with the true classes; if
the trainer logs ``nmi_k<k>`` at its refreshes, those points are drawn too (dashed)."""
from __future__ import annotations

from reproduce import plots
from reproduce.runs import NotRun
from reproduce.specs.base import Context, Grid, Spec, nmi, result, seeds, source
from reproduce.specs.table6 import dataset, dataset_title, train_run

SCHEMES = (("b", "constant 100% [b]"), ("c", "step [c]"), ("g", "linear (IFND) [g]"))


class Figure6(Spec):
    name = "figure6"
    title = "Figure 6: Clustering quality (NMI) through training"
    kind = "figure"

    def build(self, ctx: Context) -> Grid:
        data = dataset(ctx)
        grid = Grid(self.name, f"{self.title} ({dataset_title(data)})", "Figure 6")
        trains = {key: [train_run(ctx, key, seed) for seed in seeds(ctx, "figure6")] for key, _ in SCHEMES}
        first = next((t[0] for t in trains.values() if not isinstance(t[0], NotRun)), None)
        epochs = first.snapshots if first is not None else ()
        for key, title in SCHEMES:
            grid.add_col(key, title)
            grid.extra_runs += trains[key]
        for epoch in epochs:
            grid.add_row(f"e{epoch}", f"epoch {epoch}")
            for key, _ in SCHEMES:
                evals = [nmi(ctx, t, data, epoch=epoch, split="train") for t in trains[key]]
                grid.set(f"e{epoch}", key, source(evals, result("nmi_mean")))
        k = 100 if data == "cifar100" else 10
        grid.notes.append(f"NMI (%) of k-means with k = {k} on the training features of each kept checkpoint "
                          f"({ctx.profile.nmi_seeds} k-means seeds), mean over training seeds.")
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        series = {}
        epochs = [int(row.key[1:]) for row in grid.rows]
        for col in grid.cols:
            values = [resolved.value(row.key, col.key) for row in grid.rows]
            series[col.title] = (epochs, [v.mean for v in values], [v.std for v in values])
        data = dataset(ctx)
        k = 100 if data == "cifar100" else 10
        for run in grid.extra_runs:
            record = resolved.record(run)
            if record is None:
                continue
            logged = [(m["epoch"], m[f"nmi_k{k}"]) for m in record["result"].get("metrics", []) if f"nmi_k{k}" in m]
            if logged and run.config.get("seed") == 0:
                xs, ys = zip(*logged)
                series[f"{run.label} (trainer log)"] = (list(xs), list(ys), None)
        plots.curves(path, series, "epoch", "NMI (%)", grid.title)
