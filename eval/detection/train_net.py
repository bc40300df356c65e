"""detectron2 training/evaluation entry point for Table 3 (MoCo's ``detection/train_net.py`` protocol).

detectron2's ``tools/train_net.py`` plus the two additions of MoCo's version: the
``Res5ROIHeadsExtraNorm`` ROI head (an extra normalisation layer after res5, "as described in the
MoCo paper") and a COCO evaluator for ``coco_*`` test sets. Run it through
:mod:`eval.detection.launch`, or directly with detectron2's usual arguments::

    python -m eval.detection.train_net --config-file coco_R_50_C4_2x.yaml --num-gpus 8 \
        MODEL.WEIGHTS backbone_d2.pkl OUTPUT_DIR out/

Needs detectron2 (see :data:`eval.detection.launch.DETECTRON2_INSTALL`); importing this module
without it is fine, running it raises a message saying how to install it.
"""
from __future__ import annotations

import os


def _register_extra_norm_head():
    from detectron2.layers import get_norm
    from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

    if "Res5ROIHeadsExtraNorm" in ROI_HEADS_REGISTRY:
        return

    @ROI_HEADS_REGISTRY.register()
    class Res5ROIHeadsExtraNorm(Res5ROIHeads):
        """Res5 ROI heads followed by one more normalisation layer of the backbone's kind (MoCo)."""

        def __init__(self, cfg, input_shape):
            super().__init__(cfg, input_shape)
            self.res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, self.res5[-1].out_channels))


def _trainer_class():
    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator

    class Trainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            if "coco" not in dataset_name:
                raise ValueError(f"test set {dataset_name!r} is not a COCO set: Table 3 evaluates on coco_2017_val")
            return COCOEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))

    return Trainer


def _main(args):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.engine import default_setup

    _register_extra_norm_head()
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    trainer_class = _trainer_class()
    if args.eval_only:
        model = trainer_class.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return trainer_class.test(cfg, model)
    trainer = trainer_class(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def main(argv=None):
    from eval.detection.launch import require_detectron2

    require_detectron2()
    from detectron2.engine import default_argument_parser, launch

    args = default_argument_parser().parse_args(argv)
    launch(_main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    main()
