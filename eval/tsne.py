"""2-D t-SNE of a checkpoint's embeddings, with the detector's pseudo labels (Figures 3, 4 and 7).

Steps:

1. embeddings: the trained model, rebuilt from our trainer's checkpoint (the latest or a
   snapshot) by :func:`eval.checkpoints.load_framework`, embeds a CIFAR split as the trainer does
   (:func:`embed`): the pooled backbone output (``space='backbone'``) or the L2-normalised
   projection (``space='projection'``). On the training split these are the run's own training
   samples in its order (:func:`ifnd.data.training_indices`), the rows of its detector state;
2. ``points`` of them, drawn with seed 0, go through scikit-learn's t-SNE (PCA initialisation,
   seed 0). With ``pseudo``, the checkpoint's pseudo labels at clustering ``level`` come along:
   which samples were accepted (label < k), and the centroids of the accepted clusters, which are
   embedded with the points;
3. the cosine silhouette of the true labels among the chosen points, in embedding space.

The result holds the 2-D coordinates (``xy``, ``centroids_xy``), the true ``labels`` and
``classes``, the ``pseudo`` labels (-1: not accepted), ``accepted_fraction``, ``k`` and ``epoch``.

    python -m eval.tsne --checkpoint run/checkpoints/epoch_0004.pt --pseudo --space projection --out tsne.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from eval import cli
from eval.checkpoints import CheckpointInfo, file_sha256, load_framework
from eval.results import result_record, write_result

SPACES = ("backbone", "projection")


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, dataset: str, space: str = "backbone",
          batch: int = 512) -> np.ndarray:
    """Embeddings of uint8 ``[N, H, W, 3]`` images, standardised with the dataset's statistics as in training."""
    from ifnd import augment as aug
    from ifnd.data import channel_stats

    if space not in SPACES:
        raise cli.UsageError(f"unknown embedding space {space!r}: use one of {', '.join(SPACES)}")
    mean, std = channel_stats(dataset)
    net = model.backbone if space == "backbone" else model.embed
    feats = torch.cat([net(aug.normalize(part, mean, std)).float() for part in images.split(batch)])
    if space != "backbone":
        feats = torch.nn.functional.normalize(feats, dim=1)
    return feats.numpy()


def checkpoint_tsne(model: torch.nn.Module, checkpoint: dict, points: int = 2000, split: str = "test",
                    space: str = "backbone", pseudo: bool = False, level: int = 0, perplexity: float = 30.0,
                    iterations: int = 1000, data_root=None) -> dict:
    """The three steps on ``split`` (``pseudo`` implies the training split) for ``load_framework(path)``'s pair."""
    from sklearn.manifold import TSNE

    from ifnd.data import load_split, training_indices

    cfg = checkpoint["config"]
    split = "train" if pseudo else split
    data = load_split(cfg["dataset"], split, data_root)
    images, labels = data.images, data.labels
    if split == "train":
        index = training_indices(labels, cfg.get("train_subset") or 0, cfg.get("seed", 0))
        images, labels = images[index], labels[index]
    feats = embed(model, images, cfg["dataset"], space)
    chosen = np.sort(np.random.default_rng(0).choice(len(labels), size=min(points, len(labels)), replace=False))
    shown = feats[chosen]
    out: dict = {"epoch": int(checkpoint.get("epoch", 0)), "labels": labels.numpy()[chosen].tolist(),
                 "classes": list(data.classes)}
    centroids = None
    detector = checkpoint.get("detector") or {}
    if pseudo and "labels" in detector:
        k = int(cfg["cluster_numbers"][level])
        assigned = torch.as_tensor(detector["labels"][level]).numpy()
        accepted = assigned < k
        out["pseudo"] = np.where(accepted, assigned, -1)[chosen].tolist()
        out["accepted_fraction"] = float(accepted.mean())
        out["k"] = k
        if accepted.any():
            ids = np.unique(assigned[accepted])
            centroids = np.stack([feats[accepted & (assigned == c)].mean(0) for c in ids])
            out["centroid_ids"] = ids.tolist()
    stacked = shown if centroids is None else np.concatenate([shown, centroids])
    perplexity = float(min(perplexity, max(2.0, (len(stacked) - 1) / 3.0)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0, learning_rate="auto",
                  max_iter=max(250, int(iterations))).fit_transform(stacked.astype(np.float32))
    out["xy"] = np.round(coords[:len(shown)], 3).tolist()
    true = labels.numpy()[chosen]
    if len(np.unique(true)) > 1:
        from sklearn.metrics import silhouette_score

        out["silhouette"] = float(silhouette_score(shown, true, metric="cosine"))
    if centroids is not None:
        out["centroids_xy"] = np.round(coords[len(shown):], 3).tolist()
    return out


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.tsne", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="our trainer's checkpoint (last.pt or a snapshot)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")
    parser.add_argument("--data-root", default=None, help="dataset root (default as the trainer's)")
    parser.add_argument("--split", choices=("train", "test"), default="test", help="train: the run's own samples")
    parser.add_argument("--points", type=int, default=2000, help="samples shown")
    parser.add_argument("--space", choices=SPACES, default="backbone")
    parser.add_argument("--pseudo", action="store_true", help="with the checkpoint's pseudo labels (training split)")
    parser.add_argument("--level", type=int, default=0, help="clustering level of the pseudo labels")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--out", required=True, help="result JSON, written atomically")
    return parser


def main_tsne(args: argparse.Namespace) -> dict:
    started = time.time()
    if args.points < 2:
        raise cli.UsageError(f"--points {args.points}: a t-SNE needs at least 2 points")
    model, raw = load_framework(args.checkpoint, args.trust_checkpoint)
    cfg = raw["config"]
    if args.pseudo and not 0 <= args.level < len(cfg.get("cluster_numbers") or []):
        raise cli.UsageError(f"--level {args.level}: the run has clustering levels 0..{len(cfg.get('cluster_numbers') or []) - 1}")
    metrics = checkpoint_tsne(model, raw, args.points, args.split, args.space, args.pseudo, args.level,
                              args.perplexity, args.iterations, args.data_root)
    info = CheckpointInfo(str(Path(args.checkpoint).resolve()), file_sha256(args.checkpoint), "ifnd", cfg.get("arch"),
                          bool(cfg.get("cifar_stem")), metrics["epoch"], cfg)
    data = {"dataset": cfg["dataset"], "root": args.data_root, "split": "train" if args.pseudo else args.split}
    settings = {k: getattr(args, k) for k in ("points", "space", "pseudo", "level", "perplexity", "iterations")}
    record = result_record("tsne", "Figures 3, 4, 7", info, data, settings, metrics, time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_tsne, _build_parser(), argv)


if __name__ == "__main__":
    main()
