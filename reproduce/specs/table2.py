"""Table 2: semi-supervised ImageNet (fine-tuning on SimCLR's 1% / 10% label subsets, Top-5 %).

Our rows (MoCo v2, PCL, IFND; ImageNet pre-training of Table 1) are fine-tuned with
``python -m eval.semisup`` (Appendix C) at ``--profile paper`` with ImageNet and the subset files.
"""
from __future__ import annotations

from reproduce.runs import NotRun
from reproduce.specs import imagenet as inet
from reproduce.specs.base import Claim, Context, Grid, Spec, result, source
from reproduce.specs.table1 import LITERATURE

# Transcribed from Table 2: (method, architecture, batch, epochs, 1%, 10%).
PAPER_ROWS = [
    ("InstDisc", "ResNet-50", "256", "120", 39.2, 77.4),
    ("MoCo", "ResNet-50", "256", "200", 56.9, 83.0),
    ("MoCo v2", "ResNet-50", "256", "200", 66.3, 84.4),
    ("PCL", "ResNet-50", "256", "200", 75.3, 85.6),
    ("IFND (Ours)", "ResNet-50", "256", "200", 77.0, 87.1),
    ("S4L (MOAM)", "ResNet-50 (4x)", "256", "1000", None, 91.2),
    ("PIRL", "ResNet-50", "1024", "800", 57.2, 83.8),
    ("SimCLR", "ResNet-50", "4096", "1000", 75.5, 87.8),
    ("BYOL", "ResNet-50", "4096", "1000", 78.4, 89.0),
    ("SwAV", "ResNet-50", "4096", "800", 78.5, 89.9),
]
OURS = {"MoCo v2": "moco_v2", "PCL": "pcl", "IFND (Ours)": "ifnd"}


class Table2(Spec):
    name = "table2"
    title = "Table 2: Semi-supervised learning on ImageNet (Top-5 %)"

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, self.title, "Table 2")
        grid.attr_titles = ["Architecture", "Batch", "Epochs"]
        grid.add_col("p1", "1% labels")
        grid.add_col("p10", "10% labels")
        for i, (name, arch, batch, epochs, one, ten) in enumerate(PAPER_ROWS):
            row = f"r{i}"
            grid.add_row(row, name, Architecture=arch, Batch=batch, Epochs=epochs)
            for col, percent, value in (("p1", 1, one), ("p10", 10, ten)):
                if name in OURS:
                    train = inet.imagenet_run(ctx, OURS[name])
                    grid.set(row, col, source([inet.semisup(ctx, train, percent)], result("top5")), value)
                else:
                    grid.set(row, col, NotRun(LITERATURE), value)
        for col, a, b in (("p1", 77.0, 75.3), ("p10", 87.1, 85.6)):
            grid.claims.append(Claim(f"IFND above PCL ({col[1:]}% labels)", ("r4", col), ("r3", col), round(a - b, 1)))
        grid.notes.append("Our rows: ImageNet pre-training of Table 1, fine-tuned end to end with eval.semisup "
                          "(Appendix C: 20 epochs, backbone lr 0.01, head lr 1 (1%) / 0.1 (10%), x0.2 at 12 and 16) on "
                          "SimCLR's label subsets. No CIFAR stand-in.")
        return grid
