"""What false-negative detection costs: IFND's refresh (k-means, Eq. 2 confidence, acceptance) per N and k,
as a fraction of a training epoch, and GloFND's per-step cost at N = 10k and 1M.

``python -m benchmarks.detection_cost [--quick] [--data-root PATH]``

* Refresh: the real :meth:`ifnd.falseneg.incremental.IncrementalDetector.refresh` (faiss k-means when
  installed, as the paper) on synthetic 128-D features (a mixture of 100 Gaussians, unit-normalised)
  returned by the features function, halfway through a linear schedule (half the samples accepted).
  The k-means, confidence and acceptance parts are timed inside it.
* Feature extraction and the training epoch are measured on the ``mini`` model (convnet4, bf16) with
  the trainer itself on real CIFAR-10 images (a 5k subset): ``Trainer.features`` over the 5k images and
  ``Trainer.train_epoch`` cut to 2 steps of 256; both are per image, so an epoch of N images costs N
  times as much.
* Every round runs one training epoch, one extraction and each refresh, so the ratios come from the
  same minutes of the shared machine; medians over the rounds.
* GloFND: ``false_negatives`` of a SimCLR batch of 256 (512 x 512 logits) with N = 10k and 1M
  thresholds, alternating; IFND's label lookup at the same N beside it.
"""
from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from benchmarks import common
from ifnd.falseneg import incremental
from ifnd.falseneg.base import ContrastiveBatch, LabelDetector
from ifnd.falseneg.incremental import AcceptanceSchedule, IncrementalDetector
from ifnd.falseneg.kmeans import KMEANS_ITERATIONS, faiss_available

CIFAR_KS = (10, 30, 100)        # App. C, CIFAR-10
IMAGENET_KS = (1000, 3000, 10000)  # Sec. 4.1, ImageNet
DIM = 128
MAX_POINTS_PER_CENTROID = 1000  # ifnd.falseneg.kmeans: faiss trains on at most 1000 * k points


def synthetic_features(n: int, dim: int = DIM, centres: int = 100, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    means = F.normalize(torch.randn(centres, dim, generator=gen), dim=1)
    which = torch.randint(centres, (n,), generator=gen)
    return F.normalize(means[which] + 0.5 * torch.randn(n, dim, generator=gen) / dim ** 0.5, dim=1)


def kmeans_flops(n: int, ks, iterations: int = KMEANS_ITERATIONS, dim: int = DIM) -> float:
    """Multiply-adds x2 of Lloyd on the faiss training sample, the final assignment and Eq. 2 over all N."""
    total = 0.0
    for k in ks:
        train = min(n, MAX_POINTS_PER_CENTROID * k)
        total += 2 * dim * k * (iterations * train + 2 * n)
    return total


class PartTimer:
    """Seconds spent in the k-means, confidence and acceptance calls inside each ``refresh`` call."""

    def __init__(self):
        self.calls: list[dict[str, float]] = []

    def wrap(self, part, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls[-1][part] += time.perf_counter() - start
        return timed

    @contextmanager
    def installed(self):
        self.calls.append({"kmeans": 0.0, "confidence": 0.0, "acceptance": 0.0})
        saved = incremental.kmeans, dict(incremental.CONFIDENCE_FNS), incremental.accept_top
        incremental.kmeans = self.wrap("kmeans", saved[0])
        incremental.CONFIDENCE_FNS.update({k: self.wrap("confidence", f) for k, f in saved[1].items()})
        incremental.accept_top = self.wrap("acceptance", saved[2])
        try:
            yield self
        finally:
            incremental.kmeans, incremental.accept_top = saved[0], saved[2]
            incremental.CONFIDENCE_FNS.update(saved[1])


def refresh_call(n: int, ks, timer: PartTimer, features: torch.Tensor):
    detector = IncrementalDetector(n, list(ks), AcceptanceSchedule("linear"), refresh_every=1, temperature=0.2)

    def call():
        with timer.installed():
            detector.refresh(1, 2, lambda: features)  # halfway: acceptance rate 0.5
    return call


def glofnd_section(sizes, reps: int) -> dict:
    """Per-step cost of GloFND's ``false_negatives`` at each N (and IFND's label lookup beside it)."""
    from ifnd.falseneg.glofnd import GloFNDDetector
    from ifnd.pairs import Pairs

    batch = 256
    gen = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(2 * batch, DIM, generator=gen), dim=1)
    logits = z @ z.T / 0.2
    is_self = torch.eye(2 * batch, dtype=torch.bool)
    fns = {}
    for n in sizes:
        index = torch.randperm(n, generator=gen)[:batch].repeat(2)
        positive = Pairs.from_mask((index[:, None] == index[None, :]) & ~is_self)
        contrastive = ContrastiveBatch(logits, index, index, positive, ~is_self, 0.2)
        glofnd = GloFNDDetector(n, start_epoch=0)
        labels = LabelDetector(torch.stack([torch.randint(k, (n,), generator=gen) for k in CIFAR_KS]))
        fns[f"glofnd N={n:,}"] = (lambda d, b: lambda: d.false_negatives(b))(glofnd, contrastive)
        fns[f"ifnd labels N={n:,}"] = (lambda d, b: lambda: d.false_negatives(b))(labels, contrastive)
    times = common.interleaved(fns, reps=reps, warmup=2)
    first = f"glofnd N={sizes[0]:,}"
    ratio = common.ratios(times, first)
    print(f"\n-- GloFND per-step detection cost (SimCLR batch {batch}: {2 * batch} x {2 * batch} logits), "
          f"ratio over {first}")
    rows = [[k, f"{common.median(t) * 1e3:.2f}", common.spread(t), f"{ratio[k]:.2f}x"] for k, t in times.items()]
    print(common.table(rows, ["detector, training-set size", "median ms / step", "min..max ms", "ratio"]))
    big = f"glofnd N={sizes[-1]:,}"
    print(f"GloFND step cost at N = {sizes[-1]:,} over N = {sizes[0]:,}: {ratio[big]:.2f}x "
          "(the state is O(N) memory; a step touches only the batch's entries)")
    return {"median_ms": {k: common.median(t) * 1e3 for k, t in times.items()}, "ratio": ratio}


def run(args) -> dict:
    from ifnd.train import Trainer

    quick = args.quick
    n_sizes = [2000, 5000] if quick else [10_000, 50_000, 100_000, 500_000]
    k_sweep_n = 3000 if quick else 10_000
    k_sweep = [(10,), (30,)] if quick else [(300,), (1000,), (3000,)]
    cifar_ks = (5, 10, 20) if quick else CIFAR_KS
    print(f"k-means backend: {'faiss' if faiss_available() else 'torch'} (auto), {KMEANS_ITERATIONS} iterations, "
          f"faiss training sample <= {MAX_POINTS_PER_CENTROID} x k points")
    timers: dict[str, PartTimer] = {}
    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        overrides = dict(batch_size=32) if quick else {}
        cfg = common.mini_train_config(f"{tmp}/run", args.data_root, args.subset, args.threads, **overrides)
        trainer = Trainer(cfg)
        trainer.steps_per_epoch = min(trainer.steps_per_epoch, args.train_steps)  # the per-image rate is what counts
        images = len(trainer.source)
        epoch_images = trainer.steps_per_epoch * cfg.batch_size
        fns["train epoch"] = trainer.train_epoch
        fns["feature extraction"] = lambda: trainer.features("train", cfg.cluster_on)
        configs = [(n, cifar_ks) for n in n_sizes] + [(k_sweep_n, ks) for ks in k_sweep]
        for n, ks in configs:
            name = f"refresh N={n:,} k={'/'.join(map(str, ks))}"
            timers[name] = PartTimer()
            fns[name] = refresh_call(n, ks, timers[name], synthetic_features(n))
        reps = args.reps or (1 if quick else 3)
        if not quick:  # first-call costs (oneDNN primitives, faiss threads) out of the timings
            trainer.train_epoch()
            fns["feature extraction"]()
        times = common.interleaved(fns, reps=reps, warmup=0)
    epoch_per_image = common.median(times["train epoch"]) / epoch_images
    extract_per_image = common.median(times["feature extraction"]) / images
    print(f"\nmini model (convnet4, bf16, batch {cfg.batch_size}) on {images} CIFAR-10 images, medians of {reps}:")
    print(f"  training: {epoch_per_image * 1e3:.3f} ms / image ({1 / epoch_per_image:.0f} images/s); "
          f"feature extraction: {extract_per_image * 1e3:.3f} ms / image ({1 / extract_per_image:.0f} images/s) "
          f"= {extract_per_image / epoch_per_image * 100:.1f}% of an epoch at any N")
    rows, figures = [], {}
    for n, ks in configs:
        name = f"refresh N={n:,} k={'/'.join(map(str, ks))}"
        t = common.median(times[name])
        epoch = epoch_per_image * n
        middle = sorted(range(len(times[name])), key=times[name].__getitem__)[len(times[name]) // 2]
        parts = timers[name].calls[middle]  # the parts of the median call
        flops = kmeans_flops(n, ks)
        rows.append([f"{n:,}", "/".join(map(str, ks)), f"{t:.2f}", f"{parts['kmeans']:.2f}",
                     f"{parts['confidence']:.3f}", f"{parts['acceptance']:.3f}", f"{flops / t / 1e9:.0f}",
                     f"{epoch:.0f}", f"{t / epoch * 100:.2f}%", f"{(t + extract_per_image * n) / epoch * 100:.1f}%"])
        figures[name] = {"n": n, "ks": list(ks), "refresh_s": t, "parts_s": parts, "kmeans_gflop": flops / 1e9,
                         "epoch_s": epoch, "refresh_over_epoch": t / epoch,
                         "with_extraction_over_epoch": (t + extract_per_image * n) / epoch}
    print(common.table(rows, ["N", "k", "refresh s", "k-means s", "confidence s", "acceptance s", "GFLOP/s",
                              "epoch s (mini)", "refresh / epoch", "+ extraction / epoch"]))
    growth = [figures[f"refresh N={n:,} k={'/'.join(map(str, cifar_ks))}"]["refresh_s"] for n in n_sizes]
    print("growth with N at k = " + "/".join(map(str, cifar_ks)) + ": " + ", ".join(
        f"N x{n / n_sizes[0]:.0f} -> time x{g / growth[0]:.1f}" for n, g in zip(n_sizes, growth)))
    rate = max(figures.values(), key=lambda f: f["kmeans_gflop"])
    gflops = rate["kmeans_gflop"] / rate["refresh_s"]
    paper_flop = kmeans_flops(1_281_167, IMAGENET_KS)
    print(f"\npaper scale (ImageNet, N = 1,281,167, k = 1000/3000/10000, every epoch): "
          f"{paper_flop / 1e12:.0f} TFLOP of k-means per refresh -> {paper_flop / gflops / 1e9 / 60:.0f} min at this "
          f"machine's {gflops:.0f} GFLOP/s; a GPU at 20 TFLOP/s: {paper_flop / 20e12:.1f} s "
          f"(benchmarks/gpu.py measures k = 10000 on one GPU). Paper: 3.5 h of 60 h = 5.8% "
          f"= {3.5 * 3600 / 200:.0f} s per refresh over 200 epochs of {60 * 60 / 200:.0f} min.")
    out = {"epoch_s_per_image": epoch_per_image, "extraction_s_per_image": extract_per_image,
           "refresh": figures, "kmeans_gflops": gflops, "paper_scale_kmeans_tflop": paper_flop / 1e12}
    out["glofnd"] = glofnd_section([2000, 20_000] if quick else [10_000, 1_000_000], reps=args.reps or (3 if quick else 31))
    return out


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="CIFAR-10 location (default: the project's shared copy)")
    parser.add_argument("--subset", type=int, default=5000, help="images of the trainer measurement")
    parser.add_argument("--train-steps", type=int, default=2, help="training steps per timed call (per-image rate)")
    args = parser.parse_args(argv)
    if args.quick:
        args.subset = min(args.subset, 100)
    common.setup(args)
    common.banner("detection cost: IFND refresh vs N and k, GloFND per step")
    figures = run(args)
    common.write_json(args.json, {"machine": common.machine(), **figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
