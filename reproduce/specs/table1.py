"""Table 1: linear evaluation on ImageNet and transfer to VOC2007 (SVMs) and Places205 (Top-1 %).

Our rows are MoCo v2, PCL and IFND pre-trained on ImageNet with the MoCo v2 framework (Sec. 4.1),
each evaluated with ``python -m eval.linear`` (ImageNet, Appendix C), ``eval.voc07`` and
``eval.places205``; they run at ``--profile paper`` with the data configured. The other rows of the
paper are published numbers of other papers (``literature``): shown, not reproduced.
"""
from __future__ import annotations

from reproduce.runs import NotRun
from reproduce.specs import imagenet as inet
from reproduce.specs.base import Claim, Context, Grid, Spec, result, source

# Transcribed from Table 1: (method, architecture, batch, epochs, ImageNet, VOC, Places); None = "-".
PAPER_ROWS = [
    ("Jigsaw", "AlexNet", "256", "-", 34.6, 67.6, None),
    ("Rotation", "AlexNet", "128", "100", 38.7, 73.0, 35.1),
    ("DeepCluster", "AlexNet", "256", "500", 41.0, 73.7, 39.8),
    ("InstDisc", "ResNet-50", "256", "200", 54.0, None, 45.5),
    ("LocalAgg", "ResNet-50", "128", "200", 60.2, None, 50.1),
    ("CMC", "ResNet-50", "-", "200", 66.2, None, None),
    ("SimCLR", "ResNet-50", "256", "200", 64.3, None, None),
    ("MoCo", "ResNet-50", "256", "200", 60.6, 79.2, 48.9),
    ("MoCo v2", "ResNet-50", "256", "200", 67.5, 84.0, 50.1),
    ("PCL", "ResNet-50", "256", "200", 67.6, 85.4, 50.3),
    ("IFND (Ours)", "ResNet-50", "256", "200", 69.7, 87.3, 52.4),
    ("CPC", "ResNet-101", "512", "-", 48.7, None, None),
    ("SeLa", "ResNet-50", "1024", "400", 61.5, None, None),
    ("PIRL", "ResNet-50", "1024", "800", 63.6, 81.8, 49.8),
    ("SimCLR (large batch)", "ResNet-50", "4096", "1000", 69.3, None, None),
    ("BYOL", "ResNet-50", "4096", "1000", 74.3, None, None),
    ("SwAV", "ResNet-50", "4096", "800", 75.3, 88.9, 56.7),
]
OURS = {"MoCo v2": "moco_v2", "PCL": "pcl", "IFND (Ours)": "ifnd"}
LITERATURE = "literature row: published number of another paper, not reproduced by this suite"


class Table1(Spec):
    name = "table1"
    title = "Table 1: Linear evaluation and transfer learning (Top-1 %)"

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, self.title, "Table 1")
        grid.attr_titles = ["Architecture", "Batch", "Epochs"]
        for key, title in (("imagenet", "ImageNet"), ("voc", "VOC07 (mAP)"), ("places", "Places205")):
            grid.add_col(key, title)
        evaluations = {"imagenet": (inet.linear, "top1"), "voc": (inet.voc07, "mAP"),
                       "places": (inet.places205, "top1")}
        for i, (name, arch, batch, epochs, *paper) in enumerate(PAPER_ROWS):
            row = f"r{i}"
            grid.add_row(row, name, Architecture=arch, Batch=batch, Epochs=epochs)
            for (col, (evaluate, metric)), value in zip(evaluations.items(), paper):
                if name in OURS:
                    train = inet.imagenet_run(ctx, OURS[name])
                    grid.set(row, col, source([evaluate(ctx, train)], result(metric)), value)
                else:
                    grid.set(row, col, NotRun(LITERATURE), value)
        ifnd, pcl, moco = (f"r{[r[0] for r in PAPER_ROWS].index(n)}" for n in ("IFND (Ours)", "PCL", "MoCo v2"))
        for col, a, b in (("imagenet", 69.7, 67.6), ("voc", 87.3, 85.4), ("places", 52.4, 50.3)):
            grid.claims.append(Claim(f"IFND above PCL ({col})", (ifnd, col), (pcl, col), round(a - b, 1)))
        for col, a, b in (("imagenet", 69.7, 67.5), ("voc", 87.3, 84.0), ("places", 52.4, 50.1)):
            grid.claims.append(Claim(f"IFND above MoCo v2 ({col})", (ifnd, col), (moco, col), round(a - b, 1)))
        grid.notes.append("Our rows: MoCo v2 framework on ImageNet (Sec. 4.1: ResNet-50, 200 epochs, batch 256); "
                          "ImageNet: eval.linear --mode full (Appendix C); VOC07: eval.voc07 (per-class linear SVMs, "
                          "mAP); Places205: eval.places205. No CIFAR stand-in: the table is about ImageNet "
                          "features and their transfer.")
        grid.notes.append("The paper's MoCo v2 and PCL numbers are the published v2 models (2-layer head, cosine "
                          "schedule); our runs reproduce those methods under IFND's encoder recipe (3-layer head, step "
                          "schedule, Sec. 4.1 / App. C) with their own method settings (PCL: r = queue = 16384, "
                          "k = 25000/50000/100000, PCL's k-means); docs/baselines.md.")
        return grid
