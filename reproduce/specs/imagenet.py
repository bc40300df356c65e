"""Shared pieces of the ImageNet-scale tables (1-4, 8): pre-training runs and eval command lines.

ImageNet pre-training follows Sec. 4.1 / Appendix C (MoCo v2 / PCL settings: ResNet-50, 200
epochs, batch 256, lr 0.03 x0.1 at 120 and 160, k = {1000, 3000, 10000} refreshed every epoch);
it runs at the ``paper`` profile when ImageNet is configured. Everywhere else the rows say why not.
CIFAR-10 stand-ins of the same methods (Tables 4 and 8 at ``smoke`` / ``mini``) are built here too.
"""
from __future__ import annotations

from pathlib import Path

from reproduce.runs import NotRun
from reproduce.specs.base import Context, cli_eval, method, pretrain

PCL_IMAGENET_CLUSTERS = [25000, 50000, 100000]  # PCL's own setting (Li et al., 2021)
SWAV_IMAGENET = {"framework": "swav", "swav_crop_sizes": [160, 96], "swav_crop_counts": [2, 4],
                 "swav_queue_size": 3840}  # App. F: 2x160 + 4x96 crops, a queue of 3840
MOCO_CIFAR = {"framework": "moco", "queue_size": 4096, "moco_momentum": 0.99}  # MoCo's CIFAR-10 demo settings
NAMES = {"moco_v2": "MoCo v2", "pcl": "PCL", "ifnd": "IFND", "swav": "SwAV", "ifnd_swav": "IFND (SwAV)",
         "ifnd_moco": "IFND (MoCo v2)"}


def standin_title(ctx: Context, title: str) -> tuple[str, bool]:
    """The table title and whether CIFAR-10 stands in for ImageNet at this profile."""
    standin = ctx.profile.cifar_standins and not ctx.profile.imagenet_runs
    return title + (" — CIFAR-10 stand-in" if standin else " on ImageNet"), standin


def imagenet_reason(ctx: Context) -> str | None:
    """Why ImageNet rows are not run here (the data first, then the profile), or None."""
    _, reason = ctx.paths.locate("imagenet")
    if reason:
        return reason
    if not ctx.profile.imagenet_runs:
        return f"ImageNet pre-training belongs to --profile paper (this is {ctx.profile.name})"
    return None


def swav_cifar(ctx: Context) -> dict:
    c = ctx.profile.cifar
    steps = max(1, (c.get("train_subset") or 50000) // c["batch_size"])
    return {"framework": "swav", "swav_prototypes": 100, "swav_freeze_prototypes_iters": steps}


def method_fields(ctx: Context, name: str, imagenet: bool) -> dict | NotRun:
    """Fields of the Table 1/4/8 methods on ImageNet (``imagenet``) or as CIFAR-10 stand-ins."""
    mode = {"moco_v2": "simclr", "ifnd_moco": "ifnd", "ifnd": "ifnd", "pcl": "pcl", "swav": "simclr",
            "ifnd_swav": "ifnd"}[name]
    fields = method(ctx, mode)
    if isinstance(fields, NotRun):
        return fields
    sizes = ctx.profile.imagenet_methods.get(name, {}) if imagenet else {}  # the profile's scale of this method
    if name in ("swav", "ifnd_swav"):
        return {**fields, **(SWAV_IMAGENET if imagenet else swav_cifar(ctx)), **sizes}
    framework = {"framework": "moco"} if imagenet else dict(MOCO_CIFAR)
    if name == "pcl" and imagenet:
        return {**fields, **framework, "cluster_numbers": PCL_IMAGENET_CLUSTERS, **sizes}
    return {**fields, **framework, **sizes}


def imagenet_run(ctx: Context, name: str, seed: int = 0):
    reason = imagenet_reason(ctx)
    if reason:
        return NotRun(reason)
    return pretrain(ctx, method_fields(ctx, name, True), seed, "imagenet", label=f"{NAMES[name]} ImageNet seed {seed}")


def cifar_standin(ctx: Context, name: str, seed: int):
    return pretrain(ctx, method_fields(ctx, name, False), seed, "cifar10", label=f"{NAMES[name]} CIFAR-10 seed {seed}")


def _root(ctx: Context, key: str) -> str:
    return ctx.paths.data_root(key) or ""


def linear(ctx: Context, train):
    return cli_eval(ctx, train, "eval.linear", ["--dataset", "imagefolder", "--mode", "full"],
                    ["--data-root", _root(ctx, "imagenet")], "ImageNet linear", needs=["imagenet"])


def voc07(ctx: Context, train):
    return cli_eval(ctx, train, "eval.voc07", [], ["--voc-root", _root(ctx, "voc07")], "VOC07 SVM", needs=["voc07"])


def places205(ctx: Context, train):
    return cli_eval(ctx, train, "eval.places205", ["--mode", "full"], ["--places-root", _root(ctx, "places205")],
                    "Places205 linear", needs=["places205"])


def semisup(ctx: Context, train, percent: int):
    subsets = Path(_root(ctx, "imagenet_subsets") or ".")
    return cli_eval(ctx, train, "eval.semisup", ["--label-percent", percent],
                    ["--imagenet-root", _root(ctx, "imagenet"), "--subset-file", subsets / f"{percent}percent.txt"],
                    f"semi-supervised {percent}%", needs=["imagenet", "imagenet_subsets"])


DETECTRON2_MISSING = "detectron2 not installed (it is not on PyPI: see eval/detection/launch.py)"


def detection(ctx: Context, train, prepare_only: bool = False):
    """Table 3's fine-tuning; ``prepare_only``: the weights conversion and config alone (no detectron2)."""
    coco = _root(ctx, "coco")
    return cli_eval(ctx, train, "eval.detection.launch", ["--prepare-only"] if prepare_only else [],
                    ["--work-dir", "{eval_dir}", "--datasets-root", str(Path(coco).parent) if coco else ""],
                    "COCO detection: weights conversion" if prepare_only else "COCO Mask R-CNN C4 2x", needs=["coco"])


def clustering(ctx: Context, train):
    return cli_eval(ctx, train, "eval.clustering", ["--dataset", "imagefolder", "--split", "val",
                                                    "--seeds", ctx.profile.nmi_seeds],
                    ["--data-root", _root(ctx, "imagenet")], "ImageNet k-means NMI", needs=["imagenet"])
