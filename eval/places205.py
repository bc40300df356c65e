"""Places205 scene classification with a linear classifier on the frozen backbone (Table 1, "Places").

Data: the official Places205 release read by :func:`eval.data.places205` (list files
``trainvalsplit_places205/{train,val}_places205.csv`` of ``<relative/path.jpg> <label>`` lines,
images under ``data/vision/torralba/deeplearning/images256/``), 205 classes, top-1/top-5 on ``val``.
The paper gives Places205 no separate hyper-parameters: "we train a linear classifier with the
fixed representations as input on three benchmarks" (Sec. 4.2), so the classifier is exactly
:mod:`eval.linear`'s, with the same two modes and options: ``full`` (default; Appendix C's
100 epochs, lr 10, x0.1 at 60/80, RandomResizedCrop + flip on images) or ``features`` (the fast
path on cached Resize(256) + CenterCrop(224) features, shared with every other frozen protocol).

    python -m eval.places205 --checkpoint CKPT --places-root /data/places205 --out places.json
    python -m eval.places205 --checkpoint CKPT --images-dir .../images256 \
        --train-list train_places205.csv --val-list val_places205.csv --mode features --out places.json
"""
from __future__ import annotations

import argparse
import time

from eval import cli
from eval.options import HelpFormatter
from eval.data import center_crop_transform, places205
from eval.linear import add_classifier_args, run_linear_protocol
from eval.results import result_record, write_result


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.places205", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    cli.add_checkpoint_args(parser)
    cli.add_runtime_args(parser)
    group = parser.add_argument_group("Places205 data")
    group.add_argument("--data-root", "--places-root", dest="places_root", metavar="DIR",
                       default=None, help="folder holding data/vision/... and trainvalsplit_places205/")
    group.add_argument("--images-dir", default=None, help="default: <root>/data/vision/torralba/deeplearning/images256")
    group.add_argument("--train-list", default=None, help="default: <root>/trainvalsplit_places205/train_places205.csv")
    group.add_argument("--val-list", default=None, help="default: <root>/trainvalsplit_places205/val_places205.csv")
    group.add_argument("--resize-size", type=int, default=256)
    group.add_argument("--crop-size", type=int, default=224)
    add_classifier_args(parser)
    return parser


def main_places205(args: argparse.Namespace) -> dict:
    started = time.time()
    view = center_crop_transform(args.resize_size, args.crop_size)
    train = places205(args.places_root, "train", view, args.images_dir, args.train_list)
    val = places205(args.places_root, "val", view, args.images_dir, args.val_list)
    if len(val.classes) > len(train.classes):
        raise cli.UsageError(f"the val list has labels up to {len(val.classes) - 1} but the train list only up to "
                             f"{len(train.classes) - 1}: use the two lists of one Places205 release")
    source = cli.feature_source(args)
    metrics, settings = run_linear_protocol(args, train, val, source)
    data = {"places_root": args.places_root, "images_dir": args.images_dir, "train_list": args.train_list,
            "val_list": args.val_list, "num_train": len(train), "num_val": len(val),
            "num_classes": len(train.classes)}
    record = result_record("places205_linear", "Table 1 (Places)", source.info, data, settings, metrics,
                           time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_places205, _build_parser(), argv)


if __name__ == "__main__":
    main()
