"""Text report of the relabelings (reads only the committed hierarchy file)."""

from __future__ import annotations

from collections import Counter

from . import (
    MAX_DEPTH,
    PAPER_IMAGENET_COUNTS,
    cifar10_levels,
    load_hierarchy,
    relabel,
    synset_label,
)

#: A few ImageNet classes whose ancestry is shown (the paper's Figure 5 view).
IMAGENET_EXAMPLES = ("n01440764", "n02123045", "n04285008", "n07753592")
_TITLES = {"imagenet": "ImageNet-1K", "cifar10": "CIFAR-10"}


def depth_rows(dataset: str) -> list[tuple[int, int, int, int]]:
    """``(depth, classes, smallest group, largest group)`` for depths 1..MAX_DEPTH."""
    classes = load_hierarchy()[dataset]["classes"]
    rows = []
    for depth in range(1, MAX_DEPTH + 1):
        group_sizes = Counter(relabel(classes, depth, dataset)[0]).values()
        rows.append((depth, len(group_sizes), min(group_sizes), max(group_sizes)))
    return rows


def _ancestry(dataset: str, key: str) -> str:
    path = load_hierarchy()[dataset]["paths"][key]
    return f"{key} (leaf depth {len(path) - 1}): " + " > ".join(synset_label(w) for w in path)


def format_stats(dataset: str = "imagenet") -> str:
    """Per-depth class counts and group sizes, paper comparison and examples."""
    hierarchy = load_hierarchy()
    lines = [f"{_TITLES[dataset]} relabeled by WordNet 3.0 depth (entity = depth 0)", ""]
    header = f"{'depth':>5}  {'classes':>7}  {'smallest group':>14}  {'largest group':>13}"
    if dataset == "imagenet":
        header += f"  {'paper':>5}  {'diff':>5}"
    lines.append(header)
    mismatches = []
    for depth, count, smallest, largest in depth_rows(dataset):
        row = f"{depth:>5}  {count:>7}  {smallest:>14}  {largest:>13}"
        if dataset == "imagenet" and depth in PAPER_IMAGENET_COUNTS:
            diff = count - PAPER_IMAGENET_COUNTS[depth]
            row += f"  {PAPER_IMAGENET_COUNTS[depth]:>5}  {diff:>+5}"
            if diff:
                mismatches.append(depth)
        lines.append(row)
    lines.append("")
    if dataset == "imagenet":
        paper = ", ".join(f"{n} at depth {d}" for d, n in PAPER_IMAGENET_COUNTS.items())
        verdict = (f"differs at depths {mismatches}" if mismatches
                   else "matches at every reported depth")
        lines += [f"Paper (Table 5): {paper}: this hierarchy {verdict}.", ""]
        examples = IMAGENET_EXAMPLES
    else:
        lines.append("Levels (depth: classes): groups")
        classes = hierarchy["cifar10"]["classes"]
        for depth, count in cifar10_levels():
            labels, names = relabel(classes, depth, "cifar10")
            members = [[c for c, label in zip(classes, labels) if label == i] for i in range(count)]
            groups = "; ".join(f"{name} = {', '.join(m)}" for name, m in zip(names, members))
            lines.append(f"  depth {depth}: {count} classes: {groups}")
        lines.append("")
        examples = hierarchy["cifar10"]["classes"]
    lines.append("Example ancestries (root > ... > leaf; position = depth):")
    lines += [f"  {_ancestry(dataset, key)}" for key in examples]
    return "\n".join(lines)
