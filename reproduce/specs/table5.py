"""Table 5: effect of false negatives: SimCLR / IFND / SupCon at several numbers of classes.

Runs. SimCLR and IFND pre-train once per seed (they never see labels) and are probed at every
label granularity; SupCon (the oracle) pre-trains once per granularity and seed with the labels
of that granularity (``label_map``) and is probed at it.

Beyond the paper: the oracle-elimination row (``--mode oracle_elimination``: Eq. 3, IFND's objective,
with the true labels of the column's granularity) separates what removing false negatives is
worth from how well IFND detects them; no paper number. Its MTPR / MTNR against the column's labels
are 100 / 100 by construction. ``Profile.oracle_levels = "finest"`` (``mini``: its 45-minute
budget) keeps it to the columns at the data set's own classes; the others say why they are not run.

Columns by profile:

* ``smoke`` / ``mini``: CIFAR-10 relabelled at each distinct WordNet level
  (:func:`wordnet_hierarchy.cifar10_levels`: 2, 3, 6, 7, 8, 10 classes; ``Profile.table5_classes`` keeps
  some: ``mini`` 2, 3, 6, 10), standing in for the paper's ImageNet depths; the 10-class level is the
  paper's CIFAR-10 column.
* ``cifar``: CIFAR-10 and CIFAR-100 (Appendix C settings).
* ``paper``: CIFAR-10, CIFAR-100 and ImageNet relabelled at WordNet depths 3/5/7/9/18
  (SimCLR-based implementation, Sec. 4.3), probed with ``python -m eval.linear``.
"""
from __future__ import annotations

import math

from reproduce import stats
from reproduce.runs import NotRun
from reproduce.specs.base import (Claim, Const, Context, Derived, Grid, Spec, identity_map, method, pretrain, probe,
                                  probe_note, seeds, source)

# Transcribed from Table 5 of the paper (Top-1 %, linear evaluation).
PAPER_COLUMNS = ("CIFAR-10", "CIFAR-100", "ImageNet d3", "ImageNet d5", "ImageNet d7", "ImageNet d9",
                 "ImageNet d18")
PAPER = {
    "simclr": (94.2, 71.5, 93.9, 86.0, 75.3, 71.6, 65.1),
    "ifnd": (95.1, 74.0, 95.2, 87.5, 77.2, 73.8, 68.4),
    "supcon": (95.9, 76.2, 96.1, 89.2, 79.3, 76.3, 71.5),
    "classes": (10, 100, 9, 36, 206, 486, 1000),
    "gap_simclr": (-1.7, -4.7, -2.2, -3.2, -4.0, -4.7, -6.4),
    "gap_ifnd": (-0.8, -2.2, -0.9, -1.7, -2.1, -2.5, -3.1),
}
NO_PAPER = (None,) * len(PAPER_COLUMNS)  # rows beyond the paper
IMAGENET_DEPTHS = (3, 5, 7, 9, 18)
ORACLE = "oracle_elimination"
METHODS = (("simclr", "SimCLR"), ("ifnd", "IFND (Ours)"), ("supcon", "SupCon"),
           (ORACLE, "Oracle elimination (beyond the paper)"))
LABELLED = ("supcon", ORACLE)  # trained with the column's labels, once per granularity


def cifar10_levels() -> list[tuple[int, int]]:
    from wordnet_hierarchy import cifar10_levels as levels

    return list(levels())


def cifar10_label_map(depth: int) -> list[int]:
    from wordnet_hierarchy import relabel_cifar10

    return list(relabel_cifar10(depth)[0])


def imagenet_label_map(depth: int) -> list[int]:
    from wordnet_hierarchy import imagenet_wnids, relabel

    return list(relabel(imagenet_wnids(), depth)[0])


def columns(ctx: Context) -> list[dict]:
    """Our columns: key, title, dataset, label_map, number of classes, paper index, reason not run."""
    p = ctx.profile
    cols = []
    if p.table5_levels == "cifar10_wordnet":
        for depth, count in cifar10_levels():
            if p.table5_classes and count not in p.table5_classes:
                continue
            paper_index = 0 if count == 10 else None
            title = f"CIFAR-10 depth {depth}" + (" = paper CIFAR-10" if count == 10 else "")
            label_map = cifar10_label_map(depth)
            cols.append({"key": f"c10-d{depth}", "title": title, "dataset": "cifar10", "classes": count,
                         "label_map": label_map, "paper": paper_index, "reason": None,
                         "relabelled": not identity_map(label_map)})
        scope = (f"not part of profile {p.name}: CIFAR-10's WordNet levels stand in "
                 "(--profile cifar runs CIFAR-100, --profile paper ImageNet)")
        for index in range(1, len(PAPER_COLUMNS)):
            cols.append({"key": f"paper-{index}", "title": PAPER_COLUMNS[index], "dataset": None,
                         "classes": None, "label_map": None, "paper": index, "reason": scope})
        return cols
    cols.append({"key": "cifar10", "title": "CIFAR-10", "dataset": "cifar10", "classes": 10, "label_map": None,
                 "paper": 0, "reason": None, "relabelled": False})
    cols.append({"key": "cifar100", "title": "CIFAR-100", "dataset": "cifar100", "classes": 100, "label_map": None,
                 "paper": 1, "reason": None, "relabelled": False})
    for i, depth in enumerate(IMAGENET_DEPTHS):
        reason = None if p.imagenet_runs else "ImageNet runs belong to --profile paper"
        cols.append({"key": f"imagenet-d{depth}", "title": f"ImageNet depth {depth}", "dataset": "imagenet",
                     "depth": depth, "classes": PAPER["classes"][2 + i], "label_map": None, "paper": 2 + i,
                     "reason": reason, "relabelled": depth != 18})
    return cols


def imagenet_probe(ctx: Context, train, depth: int):
    from reproduce.specs.base import cli_eval

    path = ctx.paths.data_root("imagenet")
    args = ["--dataset", "imagefolder", "--mode", "full"] + ([] if depth == 18 else ["--wordnet-depth", depth])
    return cli_eval(ctx, train, "eval.linear", args, ["--data-root", path], f"ImageNet linear depth {depth}",
                    needs=["imagenet"])


def cell_runs(ctx: Context, col: dict, name: str, seed: int):
    """(train run, probe) of one method, seed and column."""
    fields = method(ctx, name)
    if col["dataset"] == "imagenet":
        label_map = imagenet_label_map(col["depth"]) if name in LABELLED and col["depth"] != 18 else None
        if not isinstance(fields, NotRun):
            fields = {**fields, "framework": "simclr"}  # Sec. 4.3: SimCLR-based, no memory bank
        train = pretrain(ctx, fields, seed, "imagenet", label=f"{name} ImageNet seed {seed}",
                         label_map=label_map)
        return train, imagenet_probe(ctx, train, col["depth"])
    label_map = col["label_map"] if name in LABELLED else None
    suffix = f" {col['classes']} classes" if name in LABELLED else ""
    train = pretrain(ctx, fields, seed, col["dataset"], label=f"{name}{suffix} seed {seed}", label_map=label_map)
    return train, probe(ctx, train, col["dataset"], col["label_map"], f"{name}{suffix} seed {seed} probed at "
                                                                      f"{col['classes']} classes")


def build_grid(ctx: Context, name: str = "table5", beyond_paper: bool = True) -> Grid:
    """Table 5's grid; ``beyond_paper`` adds the oracle-elimination row (Figure 1 draws the paper's rows only)."""
    grid = Grid(name, "Table 5: Effect of false negatives on self-supervised learning (Top-1 %)",
                "Table 5")
    cols = columns(ctx)
    methods = [(key, title) for key, title in METHODS if beyond_paper or key != ORACLE]
    for col in cols:
        grid.add_col(col["key"], col["title"])
    for key, title in methods:
        grid.add_row(key, title, **{"Class label": "yes" if key in LABELLED else "no"})
    grid.add_row("classes", "Number of categories")
    grid.add_row("gap_simclr", "Δ(SupCon, SimCLR)")
    grid.add_row("gap_ifnd", "Δ(SupCon, IFND)")
    if beyond_paper:
        grid.add_row("gap_oracle", "Δ(Oracle elimination, IFND) (beyond the paper)")
    grid.attr_titles = ["Class label"]
    skipped = [col for col in cols if not col["reason"] and not oracle_runs(ctx, col)] if beyond_paper else []
    for col in cols:
        index = col["paper"]
        paper = (lambda row: PAPER.get(row, NO_PAPER)[index] if index is not None else None)
        if col["reason"]:
            for key, _ in methods:
                grid.set(key, col["key"], NotRun(col["reason"]), paper(key))
        else:
            for key, _ in methods:
                if key == ORACLE and col in skipped:
                    grid.set(key, col["key"], NotRun(oracle_budget(ctx, skipped, name)))
                    continue
                probes = [cell_runs(ctx, col, key, seed)[1] for seed in seeds(ctx, name)]
                grid.set(key, col["key"], source(probes), paper(key))
        grid.set("classes", col["key"], Const(col["classes"]) if not col["reason"] else NotRun(col["reason"]),
                 paper("classes"), fmt="{:.0f}")
        grid.set("gap_simclr", col["key"], Derived(("simclr", col["key"]), ("supcon", col["key"])),
                 paper("gap_simclr"))
        grid.set("gap_ifnd", col["key"], Derived(("ifnd", col["key"]), ("supcon", col["key"])), paper("gap_ifnd"))
        if beyond_paper:
            grid.set("gap_oracle", col["key"], Derived(("ifnd", col["key"]), (ORACLE, col["key"])))
        if not col["reason"]:
            p_ifnd = PAPER["ifnd"][index] - PAPER["simclr"][index] if index is not None else None
            grid.claims.append(Claim(f"IFND above SimCLR ({col['title']})", ("ifnd", col["key"]),
                                     ("simclr", col["key"]), p_ifnd))
            p_sup = PAPER["supcon"][index] - PAPER["ifnd"][index] if index is not None else None
            grid.claims.append(Claim(f"SupCon above IFND ({col['title']})", ("supcon", col["key"]),
                                     ("ifnd", col["key"]), p_sup))
            if beyond_paper and col not in skipped:
                grid.claims.append(Claim(f"Oracle elimination above IFND ({col['title']}; beyond the paper)",
                                         (ORACLE, col["key"]), ("ifnd", col["key"])))
    depth18 = next(col for col in cols if col["paper"] == len(PAPER_COLUMNS) - 1)
    grid.claims.append(Claim("IFND closes 51.7 % of the gap from SimCLR to SupCon at ImageNet depth 18 (Sec. 4.3): "
                             "(IFND − SimCLR) / (SupCon − SimCLR) per seed", ("ifnd", depth18["key"]),
                             ("simclr", depth18["key"]), 51.7, c=("supcon", depth18["key"])))
    grid.trend = gap_trend
    grid.notes += [probe_note(ctx),
                   "Δ(A, B) = B − A as in the paper (negative: B below the oracle A); with seeds it is the mean of "
                   "the per-seed differences."]
    if beyond_paper:
        grid.notes.append("Beyond the paper: Oracle elimination is IFND's objective (Eq. 3, elimination) with the "
                          "true labels of the column's granularity as its detection (MTPR = MTNR = 100 % by "
                          "construction), trained once per granularity and seed like SupCon; the paper has no such "
                          "row. It separates the value of removing false negatives from the quality of detecting "
                          "them: Δ(Oracle elimination, IFND) is what IFND's detection leaves.")
    if ctx.profile.table5_levels == "cifar10_wordnet":
        grid.notes.append("Stand-in: CIFAR-10 relabelled at each WordNet depth where its number of classes changes "
                          "(wordnet_hierarchy.cifar10_levels) plays the role of the paper's ImageNet depths; only the "
                          "10-class column has a paper number (the paper's CIFAR-10 column). The paper's claim to "
                          "check is the trend: the gap to SupCon grows with the number of classes.")
        kept = {col["classes"] for col in cols if col["key"].startswith("c10-d")}
        left_out = [f"{count} (depth {depth})" for depth, count in cifar10_levels() if count not in kept]
        if left_out:
            grid.notes.append(f"Levels left out at profile {ctx.profile.name} (its table budget), by number of classes: "
                              f"{', '.join(left_out)}; --set table5_classes=[] runs every level.")
    return grid


def oracle_runs(ctx: Context, col: dict) -> bool:
    """Whether the profile trains the oracle-elimination row at this column (``Profile.oracle_levels``)."""
    levels = ctx.profile.oracle_levels
    return levels == "all" or (levels == "finest" and not col["relabelled"])


def oracle_not_trained(ctx: Context) -> str:
    """Why a profile with ``oracle_levels = "none"`` shows no oracle row (Tables 5 and 6)."""
    return (f"profile {ctx.profile.name} does not train the oracle rows yet; --set oracle_levels=finest (or all) "
            "trains them")


def oracle_budget(ctx: Context, skipped: list, name: str) -> str:
    """Why the oracle row is not run at some columns of this profile."""
    p = ctx.profile
    if p.oracle_levels == "none":
        return oracle_not_trained(ctx)
    budget = f" of {p.minutes_per_table:.0f} minutes per table" if p.minutes_per_table else ""
    return (f"at profile {p.name}, the oracle at the coarser levels would take {len(skipped) * p.seeds_for(name)} "
            f"more runs, beyond the profile's budget{budget}; --set oracle_levels=all runs them")


def trend_groups(grid: Grid) -> dict[str, list]:
    """The columns of each data set whose granularities the trend compares, by the paper's column keys."""
    groups: dict[str, list] = {}
    for col in grid.cols:
        if col.key.startswith("c10-d"):
            groups.setdefault("CIFAR-10 WordNet levels", []).append(col)
        elif col.key in ("cifar10", "cifar100"):
            groups.setdefault("CIFAR-10 and CIFAR-100", []).append(col)
        elif col.key.startswith("imagenet-d"):
            groups.setdefault("ImageNet depths", []).append(col)
    return groups


def paper_slope(group: str) -> float:
    """The paper's slope of Δ(SupCon, SimCLR) per doubling of classes (ImageNet depths for the CIFAR-10 stand-in)."""
    index = [0, 1] if group.startswith("CIFAR-10 and") else list(range(2, len(PAPER_COLUMNS)))
    return stats.slope([math.log2(PAPER["classes"][i]) for i in index], [PAPER["gap_simclr"][i] for i in index])


def gap_trend(resolved) -> list[tuple[str, stats.Comparison, float, str]]:
    """Does Δ(SupCon, SimCLR) become more negative with more classes, per data set? (slope per doubling).

    Returns claim rows ``(text, comparison, paper slope, note on the paper's number)``."""
    rows = []
    for group, cols in trend_groups(resolved.grid).items():
        text = (f"Δ(SupCon, SimCLR) grows in magnitude with the number of classes (Sec. 4.3), {group}: slope per "
                f"doubling of classes (interval: bootstrap over training seeds, {stats.BOOTSTRAP_RESAMPLES} "
                f"resamples, RNG seed {stats.BOOTSTRAP_SEED})")
        paper = paper_slope(group)
        note = "ImageNet depths" if group.startswith("CIFAR-10 W") else ""
        gaps = [resolved.value("gap_simclr", col.key) for col in cols]
        classes = [resolved.value("classes", col.key) for col in cols]
        seeds = sorted(set.intersection(*(set(g.by_seed) for g in gaps))) if gaps else []
        if len(cols) < 2:
            verdict = "n/a at this profile (one granularity of this data set)"
        elif any(g.status == "not run" for g in gaps):
            verdict = "not run"
        elif not seeds or any(g.status != "ok" for g in gaps):
            verdict = "pending"
        else:
            xs = [math.log2(c.values[0]) for c in classes]
            n, point, lo, hi = stats.bootstrap_slope(xs, {s: [g.by_seed[s] for g in gaps] for s in seeds})
            rows.append((text, stats.Comparison(n, point, lo, hi, stats.direction_verdict(n, point, lo, hi, -1.0),
                                                stats.size_verdict(paper, lo, hi, -1.0)), paper, note))
            continue
        rows.append((text, stats.Comparison(0, None, None, None, verdict, "-"), paper, note))
    return rows


class Table5(Spec):
    name = "table5"
    title = "Table 5: Effect of false negatives"

    def build(self, ctx: Context) -> Grid:
        return build_grid(ctx, self.name)
