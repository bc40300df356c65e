"""Baselines as their authors ran them: LARS, the cosine floor, PCL's k-means and tie-breaking, GloFND's
renormalised loss, and the paper profile's resolved configs (docs/baselines.md)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ifnd.config import TrainConfig, mode_settings
from ifnd.falseneg import incremental
from ifnd.falseneg.base import ContrastiveBatch
from ifnd.falseneg.glofnd import GloFNDDetector
from ifnd.falseneg.incremental import AcceptanceSchedule, IncrementalDetector, accept_top
from ifnd.falseneg.kmeans import faiss_available, inertia, kmeans
from ifnd.frameworks.base import contrastive_loss
from ifnd.losses import Pairs
from ifnd.optim import LARS, TRUST_COEFFICIENT
from ifnd.train import learning_rate
from reproduce.cli import main
from reproduce.paths import DataPaths
from reproduce.profiles import apply_overrides, get_profile
from reproduce.specs import SPECS
from reproduce.specs.base import Context
from reproduce.specs.imagenet import swav_freeze_iters
from reproduce.store import Store


# -- LARS (SwAV's LARC around SGD) ---------------------------------------------------------------------
def lars_reference(params, grads_per_step, lr, momentum, wd, eta=TRUST_COEFFICIENT, eps=1e-8):
    """apex LARC(clip=False) + SGD, written out: g' = (g + wd p) eta |p| / (|g| + wd |p| + eps); v = m v + g'."""
    params = [p.clone() for p in params]
    velocity = [None] * len(params)
    for grads in grads_per_step:
        for i, (p, g) in enumerate(zip(params, grads)):
            pn, gn = p.norm().item(), g.norm().item()
            if pn > 0 and gn > 0:
                g = (g + wd * p) * (eta * pn / (gn + wd * pn + eps))
            velocity[i] = g.clone() if velocity[i] is None else momentum * velocity[i] + g
            params[i] = p - lr * velocity[i]
    return params


def test_lars_matches_larc_formula_including_zero_norm_tensors():
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=gen), torch.zeros(4), torch.randn(7, generator=gen)]
    steps = [[torch.randn_like(p) for p in start] for _ in range(3)]
    steps[0][2] = torch.zeros(7)  # a zero gradient: left alone, no decay, on that step
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = LARS(params, lr=0.6, momentum=0.9, weight_decay=1e-2)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    expected = lars_reference(start, steps, lr=0.6, momentum=0.9, wd=1e-2)
    for p, e in zip(params, expected):
        assert torch.allclose(p.detach(), e, atol=1e-6)
    assert opt.param_groups[0]["weight_decay"] == 1e-2  # restored after the step (checkpoints keep it)


def test_cosine_ends_at_lr_final_and_default_is_unchanged():
    cfg = TrainConfig(epochs=10, warmup_epochs=0, lr=0.6, lr_final=0.0006)
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.6)
    assert learning_rate(cfg, 999, 100) == pytest.approx(0.0006, abs=1e-5)
    assert learning_rate(cfg, 500, 100) == pytest.approx(0.0006 + (0.6 - 0.0006) * 0.5)
    plain = TrainConfig(epochs=10, warmup_epochs=0, lr=0.6)
    assert learning_rate(plain, 300, 100) == 0.6 * 0.5 * (1 + math.cos(math.pi * 0.3))  # bit for bit as before


# -- PCL's k-means and ties -----------------------------------------------------------------------------
def blobs(n=600, k=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, 16, generator=gen)
    return F.normalize(centres[torch.arange(n) % k] + 0.6 * torch.randn(n, 16, generator=gen), dim=1)


def test_torch_redo_keeps_the_lowest_inertia_run():
    x = blobs()
    single = [float(inertia(x, *kmeans(x, 12, seed=s, backend="torch"))) for s in range(5)]
    best = float(inertia(x, *kmeans(x, 12, seed=0, backend="torch", redo=5)))
    assert best == pytest.approx(min(single))
    assert max(single) > min(single)  # the restarts differ, so keeping the best matters


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_redo_and_min_points_per_centroid():
    import faiss
    import numpy as np

    x = blobs()
    one = float(inertia(x, *kmeans(x, 12, seed=3, backend="faiss")))
    five = float(inertia(x, *kmeans(x, 12, seed=3, backend="faiss", redo=5)))
    assert five <= one + 1e-4
    data = x.numpy().astype(np.float32)
    centroids = []
    for min_points in (1, 10):  # PCL's 10 only makes faiss warn when N < 10 k: the clustering is the same
        clus = faiss.Clustering(16, 100)
        clus.niter, clus.seed, clus.min_points_per_centroid = 20, 0, min_points
        clus.train(data, faiss.IndexFlatL2(16))
        centroids.append(faiss.vector_to_array(clus.centroids))
    assert np.array_equal(*centroids)


def test_kmeans_seed_per_level_as_pcl_or_per_refresh(monkeypatch):
    calls = []
    real = incremental.kmeans

    def spy(features, k, seed, backend, redo):
        calls.append((k, seed, redo))
        return real(features, k, seed=seed, backend="torch", redo=1)

    monkeypatch.setattr(incremental, "kmeans", spy)
    feats = blobs(200, 5)
    for seeding, redo in (("level", 5), ("refresh", 1)):
        det = IncrementalDetector(200, [5, 10], AcceptanceSchedule("constant", 1.0), 1, 0.2, seed=7,
                                  kmeans_redo=redo, kmeans_seed=seeding)
        calls.clear()
        det.refresh(1, 10, lambda: feats)
        det.refresh(2, 10, lambda: feats)
        if seeding == "level":
            assert calls == [(5, 0, 5), (10, 1, 5), (5, 0, 5), (10, 1, 5)]  # main_pcl.py: clus.seed = level
        else:
            assert calls == [(5, 1007, 1), (10, 1008, 1), (5, 2007, 1), (10, 2008, 1)]


def test_random_ties_are_seeded_unbiased_and_keep_the_ranking():
    n, k = 40, 3
    labels = torch.arange(n) % k
    confidence = torch.zeros(n)
    confidence[30:] = 1.0  # ten clear winners at the end of the index order; thirty tied
    by_index = accept_top(labels, confidence, 0.5, k)
    assert (by_index[:10] < k).all() and (by_index[10:30] >= k).all()  # index order: the first ten of the tie win
    counts = torch.zeros(n)
    for seed in range(600):
        out = accept_top(labels, confidence, 0.5, k, torch.Generator().manual_seed(seed))
        assert (out[30:] < k).all() and int((out < k).sum()) == 20  # the clear winners always, 20 in all
        counts += (out < k).float()
    again = accept_top(labels, confidence, 0.5, k, torch.Generator().manual_seed(5))
    assert torch.equal(again, accept_top(labels, confidence, 0.5, k, torch.Generator().manual_seed(5)))
    assert (counts[:30] / 600).sub(1 / 3).abs().max() < 0.1  # each tied sample wins 10 of 30 places, on average


def test_pcl_rows_use_pcl_clustering():
    pcl = mode_settings("pcl")
    assert (pcl["kmeans_redo"], pcl["kmeans_seed"], pcl["tie_break"]) == (5, "level", "random")
    from reproduce.specs.table7 import table7_rows

    for row in table7_rows(10):
        o = row["overrides"]
        if row["method"] == "PCL":
            assert o["kmeans_redo"] == 5 and o["kmeans_seed"] == "level"
        else:
            assert "kmeans_redo" not in o
        assert (o.get("tie_break") == "random") == (row["confidence"] == "pcl")


# -- GloFND's loss --------------------------------------------------------------------------------------
def simclr_batch(z, temperature):
    n = z.shape[0] // 2
    index = torch.arange(n).repeat(2)
    logits = z @ z.T / temperature
    valid = ~torch.eye(2 * n, dtype=torch.bool)
    rows = torch.arange(2 * n)
    positive = Pairs(torch.zeros_like(rows), rows, (rows + n) % (2 * n))
    return ContrastiveBatch(logits, index, index, positive, valid, temperature, anchor_embedding=z)


def glofnd_losses(alpha, n=64, dim=32, temperature=0.2, seed=0):
    """(renormalised loss, its gradient, elimination's gradient, the direct formula's loss and gradient)."""
    gen = torch.Generator().manual_seed(seed)
    base = F.normalize(torch.randn(n, dim, generator=gen) + torch.randn(4, dim, generator=gen)[torch.arange(n) % 4],
                       dim=1)
    views = F.normalize(torch.cat([base, base]) + 0.3 * torch.randn(2 * n, dim, generator=gen), dim=1)
    out = []
    for loss_kind in ("renormalised", "elimination"):
        z = views.clone().requires_grad_(True)
        det = GloFNDDetector(n, alpha=alpha, lr=0.05, start_epoch=0, loss=loss_kind)
        sims = (views @ views.T).detach()
        negative = ~torch.eye(2 * n, dtype=torch.bool)
        negative[torch.arange(2 * n), (torch.arange(2 * n) + n) % (2 * n)] = False
        det.lam[:] = torch.stack([sims[i][negative[i]].quantile(1 - alpha) for i in range(n)])  # near the quantile
        batch = simclr_batch(z, temperature)
        loss = contrastive_loss(batch, det, "elimination")
        loss.backward()
        out += [loss.detach(), z.grad.clone()]
        if loss_kind == "renormalised":
            kept = negative & ~(sims > det.lam[torch.arange(n).repeat(2)][:, None])
    z = views.clone().requires_grad_(True)
    logits = z @ z.T / temperature
    pos = logits[torch.arange(2 * n), (torch.arange(2 * n) + n) % (2 * n)]
    scale = negative.sum(1) / kept.sum(1)
    direct = (-pos + torch.log(pos.exp() + scale * (logits.exp() * kept).sum(1))).mean()  # builder.py line 238
    direct.backward()
    return out[0], out[1], out[3], direct.detach(), z.grad


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_glofnd_renormalised_loss_matches_the_official_formula(alpha):
    loss, grad, elimination_grad, direct, direct_grad = glofnd_losses(alpha)
    assert loss.item() == pytest.approx(direct.item(), rel=1e-5)
    assert torch.allclose(grad, direct_grad, atol=1e-6)
    difference = ((grad - elimination_grad).norm() / elimination_grad.norm()).item()
    assert difference > 1e-4  # renormalising changes the gradient (docs/baselines.md gives its size)


def test_glofnd_keeps_no_negative_without_nan():
    z = F.normalize(torch.ones(8, 4) + 0.01 * torch.randn(8, 4), dim=1).requires_grad_(True)
    det = GloFNDDetector(4, alpha=0.5, lr=0.05, start_epoch=0)
    det.lam[:] = 0.0  # every negative (similarity ~1) detected: nothing kept
    batch = simclr_batch(z, 0.2)
    loss = contrastive_loss(batch, det, "elimination")
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and torch.isfinite(z.grad).all()


# -- the paper profile's resolved configs ---------------------------------------------------------------
def paper_runs(tmp_path, sets=()):
    folders = {key: tmp_path / key for key in ("imagenet", "voc07", "places205", "cifar10")}
    for folder in (folders["imagenet"] / "train" / "n01440764", folders["imagenet"] / "val" / "n01440764",
                   folders["cifar10"] / "train", folders["voc07"], folders["places205"]):
        folder.mkdir(parents=True, exist_ok=True)  # the top levels the planner checks (nothing is read)
    profile = apply_overrides(get_profile("paper"), list(sets))
    ctx = Context(profile, DataPaths({k: str(v) for k, v in folders.items()}, "test"),
                  Store(profile.name, tmp_path / "results", tmp_path / "runs"))
    runs = {}
    for target in ("table1", "table4", "table8"):
        for run in SPECS[target].build(ctx).runs():
            train = getattr(run, "train", run)
            runs[train.label] = train.train_config(str(tmp_path / "run")).to_dict()
    return runs


def test_paper_profile_runs_carry_the_official_baseline_settings(tmp_path):
    runs = paper_runs(tmp_path)
    pcl = runs["PCL ImageNet seed 0"]
    assert (pcl["queue_size"], pcl["pcl_negatives"], pcl["kmeans_redo"], pcl["kmeans_seed"]) == (16384, 16384, 5, "level")
    assert pcl["cluster_numbers"] == [25000, 50000, 100000] and pcl["temperature"] == 0.2
    for name in ("SwAV ImageNet seed 0", "IFND (SwAV) ImageNet seed 0"):
        swav = runs[name]
        assert swav["temperature"] == 0.1 and swav["swav_freeze_prototypes_iters"] == 5005
        assert (swav["optimizer"], swav["lr"], swav["lr_final"], swav["weight_decay"]) == ("lars", 0.6, 0.0006, 1e-6)
        assert (swav["lr_schedule"], swav["warmup_epochs"], swav["swav_queue_size"]) == ("cosine", 0, 3840)
    ifnd = runs["IFND ImageNet seed 0"]  # IFND clusters as PCL (Sec. 3.2): PCL's k-means, IFND's queue
    assert (ifnd["kmeans_redo"], ifnd["kmeans_seed"], ifnd["queue_size"], ifnd["temperature"]) == (5, "level", 65536, 0.2)
    glofnd = TrainConfig(**mode_settings("glofnd"), epochs=200, warmup_epochs=0).validate()
    assert (glofnd.glofnd_start_epoch, glofnd.glofnd_loss, glofnd.glofnd_alpha) == (70, "renormalised", 0.01)


def test_swav_freeze_scales_with_the_iterations_of_a_shortened_profile(tmp_path):
    short = paper_runs(tmp_path, ["imagenet.epochs=20"])["SwAV ImageNet seed 0"]
    assert short["swav_freeze_prototypes_iters"] == swav_freeze_iters(20, 1281167, 256) == 500
    assert swav_freeze_iters(7, 12000, 256) == 2  # mini's CIFAR-10 stand-in: 322 iterations, 1/200 of them


def test_show_config_prints_every_resolved_run(tmp_path, capsys, monkeypatch):
    for key, env in (("imagenet", "IFND_IMAGENET"), ("voc07", "IFND_VOC07"), ("places205", "IFND_PLACES205")):
        (tmp_path / key).mkdir()
        monkeypatch.setenv(env, str(tmp_path / key))
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n01440764").mkdir(parents=True)
    code = main(["table1", "--profile", "paper", "--dry-run", "--show-config", "--runs-dir", str(tmp_path / "r"),
                 "--results-dir", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 0
    pcl = out[out.index("PCL ImageNet seed 0"):out.index("IFND ImageNet seed 0")]
    assert "    queue_size = 16384\n" in pcl and "    kmeans_redo = 5\n" in pcl
    assert "    glofnd_alpha = 0.01  (default)\n" in pcl and "run_dir" not in out
