"""The Mask R-CNN R50-C4 COCO 2x configuration used by MoCo and PCL (Table 3), as one YAML file.

The values are MoCo's ``detection/configs/coco_R_50_C4_2x_moco.yaml`` merged with its bases
``coco_R_50_C4_2x.yaml`` and ``Base-RCNN-C4-BN.yaml`` (facebookresearch/moco) and, below them,
detectron2's ``configs/Base-RCNN-C4.yaml``, written out flat so the file needs nothing but
detectron2 itself:

* model: GeneralizedRCNN with masks, ResNet-50 C4, ``ROI_HEADS.NAME: Res5ROIHeadsExtraNorm``
  (MoCo's extra BatchNorm after res5, registered by :mod:`eval.detection.train_net`),
  ``BACKBONE.FREEZE_AT: 0`` (all layers fine-tuned), ``RESNETS.NORM: SyncBN``,
  ``RESNETS.STRIDE_IN_1X1: False`` (torchvision-style bottlenecks), RPN top-k 6000 / 1000 at test;
* input: RGB with torchvision's statistics on the 0-255 scale (``PIXEL_MEAN [123.675, 116.280,
  103.530]``, ``PIXEL_STD [58.395, 57.120, 57.375]``), train short side 640-800, test 800;
* schedule "2x" (Girshick et al., 2018, as the paper's Table 3 says): 180k iterations, lr x0.1 at
  120k and 160k, 16 images per batch, base lr 0.02; ``TEST.PRECISE_BN.ENABLED: True``;
* data: ``coco_2017_train`` / ``coco_2017_val`` (detectron2's builtin names; images under
  ``$DETECTRON2_DATASETS/coco``).

MoCo's released file had ``NORM: "SyncBN"``; a later revision switched to ``"naiveSyncBN"`` ("SyncBN
seems to cause larger variance"); ``norm=`` selects either.

    python -m eval.detection.config --weights backbone_d2.pkl --output coco_R_50_C4_2x.yaml
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from eval.options import HelpFormatter, add_out_arg
from ifnd.io import atomic_write_text

NORMS = ("SyncBN", "naiveSyncBN")


def mask_rcnn_c4_2x(weights: str, output_dir: str | None = None, norm: str = "SyncBN") -> dict[str, Any]:
    """The merged configuration as nested dicts (tuples stay tuples: yacs reads them as such)."""
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}: MoCo uses one of {', '.join(NORMS)}")
    config: dict[str, Any] = {
        "MODEL": {
            "META_ARCHITECTURE": "GeneralizedRCNN",
            "WEIGHTS": str(weights),
            "MASK_ON": True,
            "PIXEL_MEAN": [123.675, 116.280, 103.530],
            "PIXEL_STD": [58.395, 57.120, 57.375],
            "BACKBONE": {"FREEZE_AT": 0},
            "RESNETS": {"DEPTH": 50, "NORM": norm, "STRIDE_IN_1X1": False},
            "RPN": {"PRE_NMS_TOPK_TEST": 6000, "POST_NMS_TOPK_TEST": 1000},
            "ROI_HEADS": {"NAME": "Res5ROIHeadsExtraNorm"},
        },
        "INPUT": {"FORMAT": "RGB", "MIN_SIZE_TRAIN": (640, 672, 704, 736, 768, 800), "MIN_SIZE_TEST": 800},
        "DATASETS": {"TRAIN": ("coco_2017_train",), "TEST": ("coco_2017_val",)},
        "SOLVER": {"IMS_PER_BATCH": 16, "BASE_LR": 0.02, "STEPS": (120000, 160000), "MAX_ITER": 180000},
        "TEST": {"PRECISE_BN": {"ENABLED": True}},
        "VERSION": 2,
    }
    if output_dir is not None:
        config["OUTPUT_DIR"] = str(output_dir)
    return config


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 1 and round(value, 3) == value else repr(value)
    if isinstance(value, tuple):  # detectron2's own YAML writes tuples in Python syntax; yacs evaluates them
        inner = ", ".join(_scalar(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return str(value)


def render_yaml(config: dict[str, Any], indent: int = 0) -> str:
    lines = []
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:")
            lines.append(render_yaml(value, indent + 2))
        else:
            lines.append(" " * indent + f"{key}: {_scalar(value)}")
    return "\n".join(lines)


def write_config(path: str | os.PathLike, weights: str, output_dir: str | None = None, norm: str = "SyncBN") -> str:
    """Write the YAML (atomically) and return its text."""
    header = ("# Mask R-CNN R50-C4, COCO 2x: MoCo's detection/configs/coco_R_50_C4_2x_moco.yaml merged with\n"
              "# coco_R_50_C4_2x.yaml, Base-RCNN-C4-BN.yaml and detectron2's Base-RCNN-C4.yaml (eval/detection/config.py)\n")
    text = header + render_yaml(mask_rcnn_c4_2x(weights, output_dir, norm)) + "\n"
    atomic_write_text(path, text)
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.detection.config", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--weights", required=True, help="converted backbone (python -m eval.detection.convert)")
    add_out_arg(parser, "YAML file to write")
    parser.add_argument("--output-dir", default=None, help="detectron2 OUTPUT_DIR written into the config")
    parser.add_argument("--norm", choices=NORMS, default="SyncBN", help="normalisation of the detector's heads")
    args = parser.parse_args(argv)
    write_config(args.out, args.weights, args.output_dir, args.norm)


if __name__ == "__main__":
    main()
