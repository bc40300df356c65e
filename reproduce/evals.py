"""The evaluations the specs ask for, run on a finished train run's checkpoint.

========  =====================================================================================
kind      what it computes (and through which library call)
========  =====================================================================================
probe     linear probe on cached frozen backbone features (:func:`eval.linear.linear_probe_features`,
          ``protocol=linear``) or weighted kNN (:func:`ifnd.metrics.knn_accuracy`,
          ``protocol=knn``) of a CIFAR split, with the labels mapped by ``label_map`` (WordNet depth)
nmi       k-means NMI (k = number of classes, several k-means seeds) on test features
          (:func:`eval.clustering.clustering_nmi`; Table 4's protocol)
tsne      2-D t-SNE of a few thousand embeddings of a checkpoint (final or a snapshot), with the
          true labels and, for clustering detectors, the pseudo labels of that epoch, which of them
          were accepted, and the cluster centroids (Figures 3, 4, 7)
cli       one of eval's command lines (``python -m eval.<protocol> --checkpoint CKPT ... --out``)
          for the ImageNet-scale protocols (linear, semisup, voc07, places205, clustering, detection)
========  =====================================================================================

Features come from :class:`eval.features.CheckpointFeatures` and are cached under
``runs/<profile>/features``, so the probes of one checkpoint at every WordNet depth extract once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ifnd.train import CHECKPOINT

from reproduce.runs import EvalRun
from reproduce.store import Store

KINDS = ("probe", "nmi", "tsne", "cli")


def checkpoint_of(run: EvalRun, store: Store) -> Path:
    run_dir = store.train_dir(run.train.key)
    epoch = run.params.get("epoch")
    if isinstance(epoch, int):
        from reproduce.execute import snapshot_path

        return snapshot_path(run_dir, epoch)
    return run_dir / CHECKPOINT


def _subset_indices(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor | None:
    from ifnd.data import stratified_subset

    if not size or size >= labels.shape[0]:
        return None
    return stratified_subset(labels, size, seed)


def cifar_split(dataset: str, split: str, data_root, subset: int = 0, seed: int = 0):
    """``eval.data.ArrayDataset`` of a CIFAR split, optionally a class-balanced subset (fixed seed)."""
    from eval.data import ArrayDataset, cifar_arrays

    full = cifar_arrays(dataset, split, data_root)
    index = _subset_indices(full.labels, subset, seed)
    if index is None:
        return full
    return ArrayDataset(full.images[index], full.labels[index], full.mean.flatten().tolist(),
                        full.std.flatten().tolist(), f"{full.name}-subset{subset}-seed{seed}", full.classes)


def _features(run: EvalRun, store: Store, dataset, progress: bool):
    from eval.features import CheckpointFeatures

    source = CheckpointFeatures(checkpoint_of(run, store), cache_dir=store.feature_cache(), batch_size=512,
                                workers=0, device="auto", progress=progress)
    return source(dataset)


def _mapped(labels: np.ndarray, label_map) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64)
    return np.asarray(label_map, dtype=np.int64)[labels] if label_map is not None else labels


def probe(run: EvalRun, store: Store, progress: bool = True) -> dict:
    p = run.params
    root = run.train.config.get("data_root")
    train = cifar_split(p["dataset"], "train", root, p.get("train_subset", 0))
    test = cifar_split(p["dataset"], "test", root, p.get("test_subset", 0))
    train_f, test_f = _features(run, store, train, progress), _features(run, store, test, progress)
    train_y, test_y = _mapped(train_f.labels, p.get("label_map")), _mapped(test_f.labels, p.get("label_map"))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    out = {"protocol": p["protocol"], "num_classes": int(len(np.unique(train_y))), "num_train": int(len(train_y)),
           "num_test": int(len(test_y))}
    if p["protocol"] == "linear":
        from eval.linear import linear_probe_features

        metrics = linear_probe_features(train_f.features, train_y, test_f.features, test_y,
                                        num_classes=num_classes, **p.get("settings", {}))
        out.update(top1=float(metrics["top1"]), top5=float(metrics["top5"]))
    elif p["protocol"] == "knn":
        from ifnd.metrics import knn_accuracy

        k = int(p.get("settings", {}).get("k", 200))
        out["top1"] = knn_accuracy(torch.as_tensor(train_f.features), torch.as_tensor(train_y),
                                   torch.as_tensor(test_f.features), torch.as_tensor(test_y), k=k)
    else:
        raise ValueError(f"unknown probe protocol {p['protocol']!r}: use 'linear' or 'knn'")
    return out


def nmi(run: EvalRun, store: Store, progress: bool = True) -> dict:
    from eval.clustering import clustering_nmi

    p = run.params
    data = cifar_split(p["dataset"], p.get("split", "test"), run.train.config.get("data_root"), p.get("subset", 0))
    feats = _features(run, store, data, progress)
    labels = _mapped(feats.labels, p.get("label_map"))
    result = clustering_nmi(feats.features, labels, p.get("k"), p.get("seeds", 5))
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in result.items()}


# -- t-SNE ---------------------------------------------------------------------------------------
def _model_embeddings(run: EvalRun, store: Store, images: torch.Tensor, space: str) -> np.ndarray:
    """Backbone (``space='backbone'``) or L2-normalised projection features, as the trainer computes them."""
    from ifnd import augment as aug
    from ifnd.data import channel_stats
    from ifnd.frameworks import build_framework

    state = torch.load(checkpoint_of(run, store), map_location="cpu", weights_only=False)
    cfg = run.train.train_config(str(store.train_dir(run.train.key)))
    model = build_framework(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    mean, std = channel_stats(cfg.dataset)
    net = model.backbone if space == "backbone" else model.embed
    out = []
    with torch.no_grad():
        for part in images.split(512):
            out.append(net(aug.normalize(part, mean, std)).float())
    feats = torch.cat(out)
    if space != "backbone":
        feats = torch.nn.functional.normalize(feats, dim=1)
    return feats.numpy(), state


def tsne(run: EvalRun, store: Store, progress: bool = True) -> dict:
    """t-SNE of ``points`` samples; with ``pseudo``, the training samples and the detector's labels."""
    from sklearn.manifold import TSNE

    from ifnd.data import load_split, stratified_subset

    p, cfg = run.params, run.train.config
    split = "train" if p.get("pseudo") else p.get("split", "test")
    data = load_split(cfg["dataset"], split, cfg.get("data_root"))
    images, labels = data.images, data.labels
    if split == "train" and cfg.get("train_subset"):  # the run's own training samples, in its order
        index = stratified_subset(labels, cfg["train_subset"], cfg["seed"])
        images, labels = images[index], labels[index]
    feats, state = _model_embeddings(run, store, images, p.get("space", "backbone"))
    gen = np.random.default_rng(0)
    chosen = np.sort(gen.choice(len(labels), size=min(p["points"], len(labels)), replace=False))
    points = feats[chosen]
    out: dict = {"epoch": int(state.get("epoch", 0)), "labels": labels.numpy()[chosen].tolist(),
                 "classes": list(data.classes)}
    centroids = None
    detector = state.get("detector") or {}
    if p.get("pseudo") and "labels" in detector:
        level = int(p.get("level", 0))
        k = int(cfg["cluster_numbers"][level])
        pseudo = detector["labels"][level].numpy()
        accepted = pseudo < k
        out["pseudo"] = np.where(accepted, pseudo, -1)[chosen].tolist()
        out["accepted_fraction"] = float(accepted.mean())
        out["k"] = k
        if accepted.any():
            ids = np.unique(pseudo[accepted])
            centroids = np.stack([feats[accepted & (pseudo == c)].mean(0) for c in ids])
            out["centroid_ids"] = ids.tolist()
    stacked = points if centroids is None else np.concatenate([points, centroids])
    perplexity = float(min(p.get("perplexity", 30.0), max(2.0, (len(stacked) - 1) / 3.0)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0, learning_rate="auto",
                  max_iter=max(250, int(p.get("iterations", 1000)))).fit_transform(stacked.astype(np.float32))
    out["xy"] = np.round(coords[:len(points)], 3).tolist()
    shown = labels.numpy()[chosen]
    if len(np.unique(shown)) > 1:
        from sklearn.metrics import silhouette_score

        out["silhouette"] = float(silhouette_score(points, shown, metric="cosine"))
    if centroids is not None:
        out["centroids_xy"] = np.round(coords[len(points):], 3).tolist()
    return out


# -- command-line protocols ----------------------------------------------------------------------
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
    done = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with status {done.returncode}")
    return json.loads(out.read_text()).get("metrics", {})


def run_eval(run: EvalRun, store: Store, progress: bool = True) -> dict:
    handlers = {"probe": probe, "nmi": nmi, "tsne": tsne, "cli": cli}
    if run.kind not in handlers:
        raise ValueError(f"unknown evaluation kind {run.kind!r}: one of {', '.join(KINDS)}")
    return handlers[run.kind](run, store, progress)
