"""COCO detection and instance segmentation transfer (Table 3): Mask R-CNN R50-C4, 2x schedule.

Three steps, as in MoCo's ``detection/`` folder (He et al., 2020), which the paper follows
("Following the experiment setting in MoCo and PCL, we finetune all layers end-to-end on the COCO
train2017 and evaluate on val2017"):

1. :mod:`eval.detection.convert`: backbone checkpoint -> detectron2 weight pickle;
2. :mod:`eval.detection.config`: the self-contained R50-C4 Mask R-CNN COCO 2x YAML;
3. :mod:`eval.detection.launch`: runs :mod:`eval.detection.train_net` (detectron2's
   ``tools/train_net.py`` with MoCo's extra res5 BatchNorm) and writes AP^bb / AP^mk to JSON.

Steps 1 and 2 need only torch and numpy; step 3 needs detectron2, installed from source on a
CUDA machine (it is not on PyPI).
"""
