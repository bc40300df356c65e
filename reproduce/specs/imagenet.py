"""Shared pieces of the ImageNet-scale tables (1-4, 8): pre-training runs and eval command lines.

ImageNet pre-training follows Sec. 4.1 / Appendix C (MoCo v2 / PCL settings: ResNet-50, 200
epochs, batch 256, lr 0.03 x0.1 at 120 and 160, k = {1000, 3000, 10000} refreshed every epoch);
it runs at the ``paper`` profile when ImageNet is configured. Everywhere else the rows say why not.
CIFAR-10 stand-ins of the same methods (Tables 4 and 8 at ``smoke`` / ``mini``) are built here too.

The baselines' own settings (docs/baselines.md): PCL's r = queue = 16384 negatives and its k-means
(``--mode pcl``); SwAV's recipe (``swav_recipe``) for both SwAV rows, since App. F keeps "other
training details the same as in SwAV". Every method keeps IFND's encoder (ResNet-50 with the 3-layer
head of Sec. 4.1), as the paper's own comparisons do.
"""
from __future__ import annotations

from pathlib import Path

from ifnd.falseneg.pcl import PCL_R

from reproduce.runs import NotRun
from reproduce.specs.base import Context, cli_eval, method, pretrain

PCL_IMAGENET_CLUSTERS = [25000, 50000, 100000]  # PCL's own setting (Li et al., 2021)
PCL_IMAGENET = {"cluster_numbers": PCL_IMAGENET_CLUSTERS, "queue_size": PCL_R,  # main_pcl.py line 85: the
                "pcl_negatives": PCL_R}                                         # queue is r = 16384
# SwAV's 200-epoch, batch-256 ImageNet run (scripts/swav_200ep_bs256_pretrain.sh, main_swav.py lines 171-182)
SWAV_EPOCHS, SWAV_BATCH, SWAV_FREEZE_ITERS, IMAGENET_IMAGES = 200, 256, 5005, 1281167
SWAV_RECIPE = {"temperature": 0.1, "optimizer": "lars", "weight_decay": 1e-6, "lr_schedule": "cosine",
               "warmup_epochs": 0}
SWAV_LR, SWAV_FINAL_LR = 0.6, 0.0006  # at batch 256; SwAV's larger batches scale both linearly (4.8 at 4096)
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


def swav_freeze_iters(epochs: int, images: int, batch_size: int) -> int:
    """SwAV's 5005 frozen-prototype iterations, scaled by this run's iterations over SwAV's (200 epochs of
    1281167 // 256 = 5004): the prototypes stay frozen for the same 1/200 of training (5005 at the paper
    profile, at least 1)."""
    paper = SWAV_EPOCHS * (IMAGENET_IMAGES // SWAV_BATCH)
    return max(1, round(SWAV_FREEZE_ITERS * epochs * (images // batch_size) / paper))


def swav_recipe(train: dict, images: int) -> dict:
    """SwAV's optimisation for a run of the profile's ``train`` fields on ``images`` images."""
    scale = train["batch_size"] / SWAV_BATCH
    return {**SWAV_RECIPE, "lr": SWAV_LR * scale, "lr_final": SWAV_FINAL_LR * scale,
            "swav_freeze_prototypes_iters": swav_freeze_iters(train["epochs"], images, train["batch_size"])}


def swav_cifar(ctx: Context) -> dict:
    c = ctx.profile.cifar
    return {"framework": "swav", "swav_prototypes": 100, **swav_recipe(c, c.get("train_subset") or 50000)}


def swav_imagenet(ctx: Context) -> dict:
    c = ctx.profile.imagenet
    return {**SWAV_IMAGENET, **swav_recipe(c, c.get("train_subset") or IMAGENET_IMAGES)}


def method_fields(ctx: Context, name: str, imagenet: bool) -> dict | NotRun:
    """Fields of the Table 1/4/8 methods on ImageNet (``imagenet``) or as CIFAR-10 stand-ins."""
    mode = {"moco_v2": "instance", "ifnd_moco": "ifnd", "ifnd": "ifnd", "pcl": "pcl", "swav": "instance",
            "ifnd_swav": "ifnd"}[name]
    fields = method(ctx, mode)
    if isinstance(fields, NotRun):
        return fields
    sizes = ctx.profile.imagenet_methods.get(name, {}) if imagenet else {}  # the profile's scale of this method
    if name in ("swav", "ifnd_swav"):
        return {**fields, **(swav_imagenet(ctx) if imagenet else swav_cifar(ctx)), **sizes}
    framework = {"framework": "moco"} if imagenet else dict(MOCO_CIFAR)
    if name == "pcl" and imagenet:
        return {**fields, **framework, **PCL_IMAGENET, **sizes}
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
