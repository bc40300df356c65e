"""The evaluations the specs ask for, each mapped onto its protocol in :mod:`eval`.

========  =====================================================================================
kind      the eval call, on the train run's latest checkpoint or its snapshot ``params["epoch"]``
========  =====================================================================================
probe     :func:`eval.probe.cifar_probe`: linear probe or weighted kNN on cached backbone features
          of a CIFAR split, the labels mapped by ``label_map`` (a WordNet depth); Tables 5-8
nmi       :func:`eval.clustering.cifar_nmi`: k-means NMI of cached test (or train) features; Table 4,
          Figure 6
tsne      :func:`eval.tsne.checkpoint_tsne` of the model rebuilt by
          :func:`eval.checkpoints.load_framework`; Figures 3, 4, 7
fn_rates  :func:`eval.false_negatives.checkpoint_rates`: MTPR / MTNR of the run's detector over its
          training samples; the detection-quality figure
cli       ``python -m <params["module"]> --checkpoint CKPT <args> --out OUT``: eval's ImageNet-scale
          command lines (linear, semisup, voc07, places205, clustering, detection)
========  =====================================================================================

An evaluation's ``params`` (its identity) are the protocol's arguments; where the data is and how
the machine runs it (feature batch, device) are chosen here. Features are cached under the store's
``features/`` folder, so the probes of one checkpoint at every WordNet depth extract once.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from eval.checkpoints import load_framework
from eval.clustering import cifar_nmi
from eval.false_negatives import checkpoint_rates
from eval.features import CheckpointFeatures
from eval.probe import cifar_probe
from eval.tsne import checkpoint_tsne
from ifnd.processes import run_tied
from ifnd.rundir import RunDir

from reproduce.runs import EvalRun
from reproduce.store import Store

KINDS = ("probe", "nmi", "tsne", "fn_rates", "cli")


def checkpoint_of(run: EvalRun, store: Store) -> Path:
    """The checkpoint an evaluation reads: the snapshot of ``params["epoch"]``, else the latest."""
    epoch = run.params.get("epoch")
    return RunDir(store.train_dir(run.train.key)).checkpoint_at(epoch if isinstance(epoch, int) else None)


def _features(run: EvalRun, store: Store, progress: bool) -> CheckpointFeatures:
    return CheckpointFeatures(checkpoint_of(run, store), cache_dir=store.feature_cache(), batch_size=512,
                              workers=0, device="auto", progress=progress)


def probe(run: EvalRun, store: Store, progress: bool = True) -> dict:
    p = run.params
    return cifar_probe(_features(run, store, progress), p["dataset"], p["protocol"], p.get("settings", {}),
                       p.get("label_map"), run.train.config.data_root, p.get("train_subset", 0),
                       p.get("test_subset", 0))


def nmi(run: EvalRun, store: Store, progress: bool = True) -> dict:
    p = run.params
    return cifar_nmi(_features(run, store, progress), p["dataset"], p.get("split", "test"), p.get("subset", 0),
                     p.get("k"), p.get("seeds", 5), p.get("label_map"), run.train.config.data_root)


def tsne(run: EvalRun, store: Store, progress: bool = True) -> dict:
    p = run.params
    model, checkpoint = load_framework(checkpoint_of(run, store))
    return checkpoint_tsne(model, checkpoint, p["points"], p.get("split", "test"), p.get("space", "backbone"),
                           bool(p.get("pseudo")), int(p.get("level", 0)), float(p.get("perplexity", 30.0)),
                           int(p.get("iterations", 1000)), run.train.config.data_root)


def fn_rates(run: EvalRun, store: Store, progress: bool = True) -> dict:
    return checkpoint_rates(checkpoint_of(run, store), run.train.config.data_root)


def cli(run: EvalRun, store: Store, progress: bool = True) -> dict:
    """``python -m <module> --checkpoint CKPT <args> --out OUT``; returns the protocol's ``metrics``."""
    out = store.eval_dir(run.key) / "result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    where = {"eval_dir": str(out.parent)}
    machine = [str(a).format(**where) for a in run.machine.get("args", [])]
    # the run's own arguments last: a protocol's trailing KEY VALUE overrides (detectron2's) stay last
    command = [sys.executable, "-m", run.params["module"], "--checkpoint", str(checkpoint_of(run, store)), *machine,
               "--out", str(out), *[str(a).format(**where) for a in run.params.get("args", [])]]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the run's thread budget (--threads)
    done = run_tied(command, cwd=Path(__file__).resolve().parent.parent, env=env)  # ends if this worker is killed
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with status {done.returncode}")
    return json.loads(out.read_text()).get("metrics", {})


def run_eval(run: EvalRun, store: Store, progress: bool = True) -> dict:
    handlers = {"probe": probe, "nmi": nmi, "tsne": tsne, "fn_rates": fn_rates, "cli": cli}
    if run.kind not in handlers:
        raise ValueError(f"unknown evaluation kind {run.kind!r}: one of {', '.join(KINDS)}")
    return handlers[run.kind](run, store, progress)
