"""Table 3's pipeline run for real with detectron2 on the CPU (a few CPU-minutes).

A ResNet-50 (ImageNet stem) checkpoint from one tiny ``python -m ifnd.train`` epoch is converted
with :mod:`eval.detection.convert`, then :mod:`eval.detection.launch` trains the project's Mask R-CNN
R50-C4 configuration (:mod:`eval.detection.config`) on a tiny COCO-layout data set written here and
evaluates it with detectron2's COCO evaluator. What is scaled down, through the launcher's
detectron2 overrides: iterations (``SOLVER.MAX_ITER``, ``TEST.PRECISE_BN.NUM_ITER``), image size
(``INPUT.*_SIZE_*``), and with them the batch (2 images, ``BASE_LR`` scaled linearly as in
Goyal et al., 2017) and the device (CPU). A model trained for 2 iterations scores every box below
detectron2's default 0.05, so the test threshold is 0 (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``):
otherwise nothing is predicted and COCO AP is NaN. In CI (``CI=true``) a missing detectron2 fails
this test; elsewhere it is skipped with the reason.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import require, write_image_folder

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128
MAX_ITER = 2
IMS_PER_BATCH = 2

pytestmark = pytest.mark.detectron2


def detectron2_problem() -> str | None:
    if importlib.util.find_spec("detectron2") is None:
        return "detectron2 is not installed (README, Detection; CI installs ../shared/wheels/detectron2-*.whl)"
    try:
        from detectron2 import _C  # noqa: F401  (the compiled ops: built for exactly this torch)
    except ImportError as err:
        return f"detectron2 is installed but does not load with this torch: {err}"
    return None


def write_coco(root: Path, split: str, images: int, seed: int) -> None:
    """``root/coco/{split}2017/*.jpg`` and ``annotations/instances_{split}2017.json``: coloured
    rectangles and ellipses of two COCO classes (person, car) with polygon masks."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    rng = np.random.default_rng(seed)
    folder = root / "coco" / f"{split}2017"
    folder.mkdir(parents=True)
    records, annotations = [], []
    for i in range(images):
        image = Image.fromarray(rng.integers(90, 140, (SIZE, SIZE, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        for category, colour in ((1, (220, 40, 40)), (3, (40, 40, 220))):
            w, h = rng.integers(30, 60, 2)
            x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            if category == 1:
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
                polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            else:
                draw.ellipse([x, y, x + w - 1, y + h - 1], fill=colour)
                angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
                polygon = np.stack([x + w / 2 + w / 2 * np.cos(angles), y + h / 2 + h / 2 * np.sin(angles)], 1)
                polygon = polygon.ravel().round(1).tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                                "iscrowd": 0, "segmentation": [[float(v) for v in polygon]]})
        name = f"{i + 1:012d}.jpg"
        image.save(folder / name, quality=95)
        records.append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
    categories = [{"id": c["id"], "name": c["name"], "supercategory": "thing"} for c in COCO_CATEGORIES
                  if c["isthing"]]
    (root / "coco" / "annotations").mkdir(exist_ok=True)
    (root / "coco" / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(
        {"images": records, "annotations": annotations, "categories": categories}))


def resnet50_checkpoint(tmp: Path) -> Path:
    """One epoch of SimCLR on 20 images with a ResNet-50 and the ImageNet stem (what Table 3 converts)."""
    data = write_image_folder(tmp / "images", per_class=2)
    run = tmp / "pretrain"
    subprocess.run([sys.executable, "-m", "ifnd.train", "--dataset", "cifar10", "--data-root", str(data),
                    "--arch", "resnet50", "--no-cifar-stem", "--epochs", "1", "--batch-size", "10",
                    "--warmup-epochs", "0", "--knn-k", "3", "--device", "cpu", "--no-progress",
                    "--run-dir", str(run)], check=True, cwd=ROOT, env=_env(), capture_output=True, text=True)
    return run / "checkpoints" / "last.pt"


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _missing_and_unused(log: str) -> tuple[str, str]:
    """The checkpointer's report of model keys the weights lacked, and of weights the model did not use."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    section = r"{}:\n((?:(?!\[\d\d/\d\d).*\n)*)"
    missing = re.search(section.format("Some model parameters or buffers are not found in the checkpoint"), log)
    unused = re.search(section.format("The checkpoint state_dict contains keys that are not used by the model"), log)
    return (missing[1] if missing else ""), (unused[1] if unused else "")


def test_converted_checkpoint_trains_mask_rcnn_and_gets_coco_ap(tmp_path):
    require(detectron2_problem())
    from eval.checkpoints import load_backbone
    from eval.detection.convert import detectron2_name

    checkpoint = resnet50_checkpoint(tmp_path)
    subprocess.run([sys.executable, "-m", "eval.detection.convert", "--checkpoint", str(checkpoint), "--output",
                    str(tmp_path / "converted.pkl")], check=True, cwd=ROOT, env=_env(), capture_output=True)
    write_coco(tmp_path / "datasets", "train", 4, seed=0)
    write_coco(tmp_path / "datasets", "val", 2, seed=1)
    work, out = tmp_path / "det", tmp_path / "table3.json"
    overrides = ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", str(IMS_PER_BATCH),
                 "SOLVER.BASE_LR", str(0.02 * IMS_PER_BATCH / 16), "SOLVER.MAX_ITER", str(MAX_ITER),
                 "TEST.PRECISE_BN.NUM_ITER", "1", "INPUT.MIN_SIZE_TRAIN", f"({SIZE},)", "INPUT.MAX_SIZE_TRAIN",
                 str(SIZE), "INPUT.MIN_SIZE_TEST", str(SIZE), "INPUT.MAX_SIZE_TEST", str(SIZE),
                 "DATALOADER.NUM_WORKERS", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    run = subprocess.run([sys.executable, "-m", "eval.detection.launch", "--checkpoint", str(checkpoint),
                          "--work-dir", str(work), "--out", str(out), "--num-gpus", "1", "--datasets-root",
                          str(tmp_path / "datasets"), *overrides],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]

    # The converted backbone was loaded: nothing of stem, res2-res5 missing, nothing unused ...
    missing, unused = _missing_and_unused((work / "output" / "log.txt").read_text())
    assert "Loading from " + str((work / "backbone_d2.pkl").resolve()) in (work / "output" / "log.txt").read_text()
    assert not re.search(r"backbone\.|roi_heads\.res5\.\d", missing), missing
    assert "roi_heads.res5.norm" in missing  # MoCo's extra BatchNorm is new: the check above can see keys
    assert unused == "", unused
    # ... and the model detectron2 builds from the launcher's config holds the checkpoint's weights.
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from eval.detection.train_net import _register_extra_norm_head

    _register_extra_norm_head()
    cfg = get_cfg()
    cfg.merge_from_file(str(work / "coco_R_50_C4_2x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(work / "backbone_d2.pkl"))
    ours, _ = load_backbone(checkpoint, arch="resnet50", cifar_stem=False)
    theirs = model.state_dict()
    compared = 0
    for name, tensor in ours.state_dict().items():
        d2 = detectron2_name(name)
        if d2 is None or not d2.startswith(("stem.", "res2.", "res3.", "res4.")):
            continue
        assert torch.equal(theirs["backbone." + d2], tensor), d2
        compared += 1
    assert compared == 5 + (3 + 4 + 6) * 15 + 3 * 5  # stem conv + BN, 13 bottlenecks, 3 shortcuts
    assert torch.equal(theirs["roi_heads.res5.0.conv1.weight"], ours.state_dict()["layer4.0.conv1.weight"])

    # COCO evaluation ran and printed box and mask AP; the launcher wrote Table 3's six numbers.
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log, log[-5000:]
    assert re.search(r"\|\s*AP\s*\|\s*AP50\s*\|\s*AP75\s*\|", log)
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    assert set(metrics) >= {"APbb", "APbb50", "APbb75", "APmk", "APmk50", "APmk75"}
    assert all(math.isfinite(metrics[k]) and 0 <= metrics[k] <= 100 for k in ("APbb", "APmk")), metrics
    assert metrics["iteration"] == MAX_ITER  # the evaluation after the last iteration
