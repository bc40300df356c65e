"""Table 3: COCO detection and instance segmentation (Mask R-CNN C4, 2x schedule), AP %.

Our rows (MoCo v2 in place of the paper's MoCo, PCL, IFND; ImageNet pre-training of Table 1) are
fine-tuned with ``python -m eval.detection.launch`` (detectron2, built from source on clusters) at
``--profile paper`` with COCO configured. The Supervise row uses torchvision's supervised weights:
run ``python -m eval.detection.launch --checkpoint resnet50.pth`` for it by hand.
"""
from __future__ import annotations

from reproduce.runs import NotRun
from reproduce.specs import imagenet as inet
from reproduce.specs.base import Claim, Context, Grid, Spec, result, source

COLUMNS = (("APbb", "AP^bb"), ("APbb50", "AP50^bb"), ("APbb75", "AP75^bb"), ("APmk", "AP^mk"),
           ("APmk50", "AP50^mk"), ("APmk75", "AP75^mk"))
# Transcribed from Table 3.
PAPER_ROWS = [
    ("Supervise", (40.0, 59.9, 43.1, 34.7, 56.5, 36.9)),
    ("MoCo", (40.7, 60.5, 44.1, 35.4, 57.3, 37.6)),
    ("PCL", (41.0, 60.8, 44.2, 35.6, 57.4, 37.8)),
    ("IFND (Ours)", (41.8, 61.2, 44.5, 36.1, 57.6, 38.5)),
]
OURS = {"MoCo": "moco_v2", "PCL": "pcl", "IFND (Ours)": "ifnd"}


class Table3(Spec):
    name = "table3"
    title = "Table 3: Object detection and instance segmentation on COCO (AP %)"

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, self.title, "Table 3")
        for key, title in COLUMNS:
            grid.add_col(key, title)
        from eval.detection.launch import detectron2_available

        installed = detectron2_available()
        for i, (name, values) in enumerate(PAPER_ROWS):
            row = f"r{i}"
            grid.add_row(row, name + (" (ours: MoCo v2)" if name == "MoCo" else ""))
            if name in OURS and not installed:  # the conversion still runs: a checkpoint's keys are checked
                conversion = inet.detection(ctx, inet.imagenet_run(ctx, OURS[name]), prepare_only=True)
                grid.extra_runs += [conversion] if not isinstance(conversion, NotRun) else []
            for (col, _), value in zip(COLUMNS, values):
                if name in OURS:
                    train = inet.imagenet_run(ctx, OURS[name])
                    evaluation = inet.detection(ctx, train)  # a missing data set is said first
                    if not installed and not isinstance(evaluation, NotRun):
                        evaluation = NotRun(inet.DETECTRON2_MISSING)
                    grid.set(row, col, source([evaluation], result(col)), value)
                else:
                    grid.set(row, col, NotRun("torchvision's supervised ResNet-50: evaluate it by hand with "
                                              "python -m eval.detection.launch"), value)
        ifnd = len(PAPER_ROWS) - 1
        for other in range(ifnd):  # the paper: IFND above every other row in all six metrics
            for j, (col, title) in enumerate(COLUMNS):
                gap = round(PAPER_ROWS[ifnd][1][j] - PAPER_ROWS[other][1][j], 1)
                grid.claims.append(Claim(f"IFND above {PAPER_ROWS[other][0]} ({title})", (f"r{ifnd}", col),
                                         (f"r{other}", col), gap))
        grid.notes.append("Our rows: ImageNet pre-training of Table 1 converted to detectron2 and fine-tuned on COCO "
                          "train2017 (Mask R-CNN R50-C4, 2x, SyncBN), evaluated on val2017. Needs detectron2 and "
                          "8 GPUs. No CIFAR stand-in.")
        return grid
