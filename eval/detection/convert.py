"""Convert a ResNet-50 backbone checkpoint to detectron2's weight format (Table 3's first step).

Follows MoCo's ``detection/convert-pretrain-to-detectron2.py``: torchvision names are renamed to
detectron2's ResNet names and every tensor is stored as a numpy array in a pickle
``{"model": {name: array}, "__author__": ..., "matching_heuristics": True}`` (the flag lets
detectron2's checkpointer map ``res5.*`` onto the C4 model's ``roi_heads.res5.*``). Renaming:

    conv1.weight                   -> stem.conv1.weight
    bn1.<attr>                     -> stem.conv1.norm.<attr>
    layer<i>.<b>.conv<j>.weight    -> res<i+1>.<b>.conv<j>.weight
    layer<i>.<b>.bn<j>.<attr>      -> res<i+1>.<b>.conv<j>.norm.<attr>
    layer<i>.<b>.downsample.0.weight  -> res<i+1>.<b>.shortcut.weight
    layer<i>.<b>.downsample.1.<attr>  -> res<i+1>.<b>.shortcut.norm.<attr>

with ``<attr>`` one of weight, bias, running_mean, running_var. BatchNorm's ``num_batches_tracked``
counters are dropped (detectron2 has no use for them; MoCo's script passed them through and
detectron2 reported them as unused). Any checkpoint :func:`eval.checkpoints.load_backbone` reads
works (ours, MoCo/PCL, torchvision), provided it is a ResNet-50 with the ImageNet stem.

    python -m eval.detection.convert --checkpoint CKPT --output backbone_d2.pkl
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import sys

import numpy as np
import torch

from eval.checkpoints import CheckpointError, load_backbone
from eval.options import HelpFormatter, add_out_arg
from ifnd.io import atomic_path

AUTHOR = "ifnd-repro"
_BN_ATTRS = r"(weight|bias|running_mean|running_var)"
_RULES = (
    (re.compile(r"^conv1\.weight$"), lambda m: "stem.conv1.weight"),
    (re.compile(rf"^bn1\.{_BN_ATTRS}$"), lambda m: f"stem.conv1.norm.{m[1]}"),
    (re.compile(r"^layer(\d)\.(\d+)\.conv(\d)\.weight$"), lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (re.compile(rf"^layer(\d)\.(\d+)\.bn(\d)\.{_BN_ATTRS}$"),
     lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.0\.weight$"), lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (re.compile(rf"^layer(\d)\.(\d+)\.downsample\.1\.{_BN_ATTRS}$"),
     lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
)


def detectron2_name(torchvision_name: str) -> str | None:
    """detectron2's name for a torchvision ResNet parameter; ``None`` for ``num_batches_tracked``."""
    if torchvision_name.endswith("num_batches_tracked"):
        return None
    for pattern, rename in _RULES:
        if match := pattern.match(torchvision_name):
            return rename(match)
    raise CheckpointError(f"no detectron2 name for backbone parameter {torchvision_name!r}: expected a "
                          "torchvision ResNet (conv1, bn1, layer1-4)")


def detectron2_weights(backbone_state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Renamed numpy copies of a torchvision ResNet state dict."""
    out = {}
    for name, tensor in backbone_state.items():
        if (new := detectron2_name(name)) is not None:
            out[new] = tensor.detach().cpu().numpy()
    return out


def write_detectron2_weights(backbone: torch.nn.Module, output: str | os.PathLike) -> dict:
    """Write the detectron2 pickle of a loaded torchvision ResNet to ``output`` (atomically); returns it."""
    converted = {"model": detectron2_weights(backbone.state_dict()), "__author__": AUTHOR,
                 "matching_heuristics": True}
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(converted, fh)
    return converted


def convert_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike, trusted: bool = False) -> dict:
    """Load ``checkpoint``'s ResNet-50 (ImageNet stem required) and write its detectron2 pickle."""
    backbone, _ = load_backbone(checkpoint, arch="resnet50", cifar_stem=False, trusted=trusted)
    return write_detectron2_weights(backbone, output)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.detection.convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a ResNet-50 checkpoint with the ImageNet stem")
    add_out_arg(parser, "detectron2 weights (.pkl)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")
    args = parser.parse_args(argv)
    try:
        converted = convert_checkpoint(args.checkpoint, args.out, args.trust_checkpoint)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {args.out}: {len(converted['model'])} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
