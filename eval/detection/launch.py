"""Table 3 end to end: convert the checkpoint, write the config, train Mask R-CNN, report AP^bb / AP^mk.

Steps (work folder ``--work-dir``): ``backbone_d2.pkl`` (:mod:`eval.detection.convert`),
``coco_R_50_C4_2x.yaml`` (:mod:`eval.detection.config`), then detectron2 training and evaluation on
COCO val2017 in ``output/`` via :mod:`eval.detection.train_net` (8 GPUs in MoCo's setting,
16 images per batch), finally the metrics: the last record of detectron2's ``output/metrics.json``
that holds ``bbox/AP`` gives ``APbb``, ``APbb50``, ``APbb75`` and ``segm/AP*`` gives ``APmk``,
``APmk50``, ``APmk75`` (%, the six columns of Table 3), written to ``--out``.

Without detectron2 the command stops with the install instructions and the exact training command
(after writing the weights and the config, which need no detectron2). ``--dry-run`` only prints
the command; ``--prepare-only`` converts, writes the config and a record without metrics (what a
harness runs where detectron2 is absent); ``--collect-only`` reads the metrics of a finished run.
COCO must be where detectron2 looks for it: ``$DETECTRON2_DATASETS/coco/{train2017,val2017,annotations}``
(``--datasets-root``).

    python -m eval.detection.launch --checkpoint CKPT --work-dir det/ --num-gpus 8 --out table3.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from eval.checkpoints import CheckpointError, load_backbone
from eval.detection.config import NORMS, write_config
from eval.detection.convert import write_detectron2_weights
from eval.options import HelpFormatter, add_out_arg
from eval.results import result_record, write_result
from ifnd.processes import run_tied

DETECTRON2_INSTALL = (
    "detectron2 is not installed (it is not on PyPI). On a machine with CUDA and the project's torch, run\n"
    "    pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'\n"
    "    pip install -e '.[detection]'\n"
    "(README, Detection; the `detection` extra pins detectron2's run-time dependencies), then run this command "
    "again.")
METRIC_KEYS = {"APbb": "bbox/AP", "APbb50": "bbox/AP50", "APbb75": "bbox/AP75",
               "APmk": "segm/AP", "APmk50": "segm/AP50", "APmk75": "segm/AP75"}


class Detectron2Unavailable(RuntimeError):
    """detectron2 cannot be imported; the message says how to install it."""


def detectron2_available() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2(command: list[str] | None = None) -> None:
    if not detectron2_available():
        extra = f"\nThe training command is:\n    {shlex.join(command)}" if command else ""
        raise Detectron2Unavailable(DETECTRON2_INSTALL + extra)


def train_command(config: Path, output_dir: Path, num_gpus: int, opts: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "eval.detection.train_net", "--config-file", str(config),
            "--num-gpus", str(num_gpus), "OUTPUT_DIR", str(output_dir), *opts]


def read_detectron2_metrics(output_dir: str | os.PathLike) -> dict[str, float]:
    """Table 3's six numbers from the last evaluation record in ``<output_dir>/metrics.json``."""
    path = Path(output_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: detectron2 has not run in {output_dir} yet")
    evaluation, last_iteration = None, None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed job
        last_iteration = record.get("iteration", last_iteration)
        if "bbox/AP" in record:
            evaluation = record
    if evaluation is None:
        raise ValueError(f"{path} holds no COCO evaluation (last iteration {last_iteration}): the run has not "
                         "finished; rerun with --resume, or --collect-only once it has")
    missing = [key for key in METRIC_KEYS.values() if key not in evaluation]
    box = [v for k, v in evaluation.items() if k.startswith("bbox/")]
    if missing and box and all(isinstance(v, float) and math.isnan(v) for v in box):
        # a model that predicted nothing: detectron2 scores no mask task and every box AP is NaN
        print(f"warning: {path}: the model made no predictions; every AP is NaN", file=sys.stderr)
        return {name: float("nan") for name in METRIC_KEYS} | {"iteration": evaluation.get("iteration")}
    if missing:
        raise ValueError(f"{path}'s evaluation lacks {', '.join(missing)}: was MODEL.MASK_ON off?")
    return {name: float(evaluation[key]) for name, key in METRIC_KEYS.items()} | {
        "iteration": evaluation.get("iteration")}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.detection.launch", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a ResNet-50 checkpoint with the ImageNet stem")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")
    parser.add_argument("--work-dir", required=True, help="weights, config and detectron2 output go here")
    add_out_arg(parser, "result JSON")
    parser.add_argument("--num-gpus", type=int, default=8, help="MoCo's setting: 8 GPUs, 2 images each")
    parser.add_argument("--norm", choices=NORMS, default="SyncBN", help="normalisation of the detector's heads")
    parser.add_argument("--datasets-root", default=None, help="sets DETECTRON2_DATASETS (folder holding coco/)")
    parser.add_argument("--resume", action="store_true", help="continue detectron2's last checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="prepare and print the command, train nothing")
    parser.add_argument("--collect-only", action="store_true", help="only read the metrics of a finished run")
    parser.add_argument("--prepare-only", action="store_true",
                        help="write the weights and the config, and --out without metrics; train nothing (where "
                             "detectron2 is absent: the conversion still runs)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra detectron2 KEY VALUE overrides")
    return parser


def main_detection(args: argparse.Namespace) -> dict | None:
    started = time.time()
    work = Path(args.work_dir)
    weights, config, output_dir = work / "backbone_d2.pkl", work / "coco_R_50_C4_2x.yaml", work / "output"
    backbone, info = load_backbone(args.checkpoint, arch="resnet50", cifar_stem=False, trusted=args.trust_checkpoint)
    command = train_command(config, output_dir, args.num_gpus, (["--resume"] if args.resume else []) + args.opts)
    if not args.collect_only:
        write_detectron2_weights(backbone, weights)
        write_config(config, str(weights.resolve()), str(output_dir.resolve()), args.norm)
        if args.dry_run:
            print(shlex.join(command))
            return None
        if not args.prepare_only:
            require_detectron2(command)
            env = dict(os.environ, **({"DETECTRON2_DATASETS": args.datasets_root} if args.datasets_root else {}))
            run_tied(command, check=True, env=env)
    metrics = {} if args.prepare_only else read_detectron2_metrics(output_dir)
    settings = {"config": str(config), "weights": str(weights), "num_gpus": args.num_gpus, "norm": args.norm,
                "command": shlex.join(command), "prepared_only": args.prepare_only}
    record = result_record("coco_detection", "Table 3 (Mask R-CNN R50-C4, COCO 2x)", info,
                           {"train": "coco_2017_train", "test": "coco_2017_val"}, settings, metrics,
                           time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    args = _build_parser().parse_args(argv)
    try:
        return main_detection(args)
    except (CheckpointError, Detectron2Unavailable, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except subprocess.CalledProcessError as err:
        print(f"error: detectron2 training failed with exit status {err.returncode}; its log is in "
              f"{Path(args.work_dir) / 'output' / 'log.txt'}", file=sys.stderr)
        raise SystemExit(err.returncode or 1) from None


if __name__ == "__main__":
    main()
