"""Evaluation protocols behind every number of the paper's Tables 1-4 (and the linear probe of 5-8).

Each protocol is a separate step, in the manner of VISSL and MoCo's detection transfer: frozen
features are extracted once and cached on disk (:mod:`eval.features`), then a probe runs on them.
Every protocol has a function API and a command line that writes one JSON result atomically::

    python -m eval.linear      --checkpoint CKPT ... --out result.json   # Table 1 ImageNet, Table 5-8 probe
    python -m eval.semisup     --checkpoint CKPT ... --out result.json   # Table 2 (1% / 10% labels)
    python -m eval.voc07       --checkpoint CKPT ... --out result.json   # Table 1 VOC (per-class SVMs)
    python -m eval.places205   --checkpoint CKPT ... --out result.json   # Table 1 Places
    python -m eval.clustering  --checkpoint CKPT ... --out result.json   # Table 4 NMI, Table 6 MTPR/MTNR
    python -m eval.detection.launch --checkpoint CKPT ... --out result.json  # Table 3 (needs detectron2)

Shared pieces: :mod:`eval.checkpoints` (our trainer's and official MoCo/PCL checkpoints),
:mod:`eval.data` (ImageNet folders, VOCdevkit, Places205 lists, SimCLR label subsets),
:mod:`eval.classifier` (the SGD/step-decay loop and top-k accuracy used by every classifier),
:mod:`eval.results` (the JSON record), :mod:`eval.fixtures` (tiny datasets and checkpoints in the
real layouts, for tests and smoke runs). ``eval`` imports ``ifnd``, never the reverse.
"""
