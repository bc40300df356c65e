"""Evaluation protocols behind every number of the paper: Tables 1-4, the probes of Tables 5-8, the t-SNE figures.

Each protocol is a separate step, in the manner of VISSL and MoCo's detection transfer: frozen
features are extracted once and cached on disk (:mod:`eval.features`), then a probe runs on them.
Every protocol has a function API and a command line that writes one JSON result atomically::

    python -m eval.linear      --checkpoint CKPT ... --out result.json   # Table 1 ImageNet, Table 5-8 probe
    python -m eval.semisup     --checkpoint CKPT ... --out result.json   # Table 2 (1% / 10% labels)
    python -m eval.voc07       --checkpoint CKPT ... --out result.json   # Table 1 VOC (per-class SVMs)
    python -m eval.places205   --checkpoint CKPT ... --out result.json   # Table 1 Places
    python -m eval.clustering  --checkpoint CKPT ... --out result.json   # Table 4 NMI, Table 6 MTPR/MTNR
    python -m eval.probe       --checkpoint CKPT ... --out result.json   # Tables 5-8 on CIFAR (linear / kNN)
    python -m eval.tsne        --checkpoint CKPT ... --out result.json   # Figures 3, 4, 7 (t-SNE)
    python -m eval.detection.launch --checkpoint CKPT ... --out result.json  # Table 3 (needs detectron2)

The harness (``reproduce``) calls the same functions in process: :func:`eval.probe.cifar_probe`,
:func:`eval.clustering.cifar_nmi` and :func:`eval.tsne.checkpoint_tsne` (on the model that
:func:`eval.checkpoints.load_framework` rebuilds), on the checkpoints a run directory
(:mod:`ifnd.rundir`) holds.

Shared pieces: :mod:`eval.checkpoints` (our trainer's and official MoCo/PCL checkpoints),
:mod:`eval.data` (ImageNet folders, VOCdevkit, Places205 lists, SimCLR label subsets),
:mod:`eval.classifier` (the SGD/step-decay loop and top-k accuracy used by every classifier),
:mod:`eval.results` (the JSON record), :mod:`eval.fixtures` (tiny datasets and checkpoints in the
real layouts, for tests and smoke runs). ``eval`` imports ``ifnd``, never the reverse.
"""
