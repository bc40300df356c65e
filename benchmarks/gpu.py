"""GPU figures: MoCo v2 ResNet-50 + IFND images/s, ResNet-18 CIFAR SimCLR images/s, k-means at ImageNet scale.

``python -m benchmarks.gpu --out results/benchmarks/gpu.json`` on a machine with one GPU (about 3-4
minutes on an H100). On a machine without a GPU it prints "no GPU: skipped" and exits 0.

* ResNet-50, 224x224 synthetic uint8 images augmented on the GPU by the framework's own ``views``
  (MoCo v2 recipe, blur included), bf16 autocast, channels_last, batch 256, SGD: the framework's
  ``training_loss`` with IFND (elimination, k = 1000 / 3000 / 10000 pseudo labels over N = 1.28M
  samples, half accepted, queue of 65536 filled with keys of random samples) against the same model
  without detection, alternating. MoCo v2 when ``ifnd/frameworks/moco.py`` exists, else a SimCLR
  ResNet-50 stand-in (labelled as such).
* ResNet-18 (CIFAR stem), 32x32, batch 1024 (App. C): SimCLR, and SimCLR + IFND (k = 10 / 30 / 100).
* Both step comparisons also run IFND with ``--loss-kernel fused`` (:mod:`ifnd.fused_loss`) when triton
  is importable.
* Feature extraction images/s of the ResNet-50 (evaluation forward, bf16), for the refresh's share.
* One IFND refresh at ImageNet scale: 1,281,167 x 128 features, k = 1000 / 3000 / 10000, through
  ``IncrementalDetector.refresh`` (faiss-gpu when importable, else the suite's torch k-means on the
  GPU), and k-means alone at k = 10000.
* The loss-kernel benchmark (:mod:`benchmarks.loss_kernel`) on the GPU; target <= 1.10x InfoNCE.

``--device cpu --quick`` runs the same code on tiny sizes on a CPU (the smoke test does).
"""
from __future__ import annotations

import importlib.util
import time

import torch
import torch.nn.functional as F

from benchmarks import common

IMAGENET_N = 1_281_167
IMAGENET_KS = (1000, 3000, 10000)


def _framework(name: str, arch: str, image_size: int, batch: int, device, quick: bool):
    from ifnd.config import TrainConfig
    from ifnd.frameworks import FRAMEWORKS, build_framework

    fields = dict(framework=name, arch=arch, image_size=image_size, cifar_stem=image_size <= 64, batch_size=batch)
    if name == "moco":
        fields.update(queue_size=batch * (4 if quick else 256), moco_bn_splits=1 if quick else 8)
    cfg = TrainConfig(**fields)
    assert cfg.framework in FRAMEWORKS
    model = build_framework(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def _pseudo_detector(n: int, ks, gen):
    from ifnd.falseneg.incremental import AcceptanceSchedule, IncrementalDetector

    detector = IncrementalDetector(n, list(ks), AcceptanceSchedule("linear"), refresh_every=1, temperature=0.2)
    levels = []
    for k in ks:
        keep = torch.rand(n, generator=gen) < 0.5
        levels.append(torch.where(keep, torch.randint(k, (n,), generator=gen), k + torch.arange(n)))
    detector.labels = torch.stack(levels)
    return detector


class Stepper:
    """The trainer's step (views, autocast, training_loss, backward, SGD, after_step) on synthetic data."""

    def __init__(self, model, detector, objective: str, images: torch.Tensor, n: int, batch: int, image_size: int,
                 dtype, device, kernel: str = "pairs"):
        from ifnd import augment as aug
        from ifnd.data import channel_stats

        self.model, self.detector, self.objective, self.kernel = model, detector, objective, kernel
        self.images, self.n, self.batch, self.dtype, self.device = images, n, batch, dtype, device
        self.spec = aug.AugmentConfig(size=image_size, scale=(0.2, 1.0))
        self.mean, self.std = channel_stats("folder" if image_size > 64 else "cifar10")
        self.optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9,
                                         weight_decay=1e-4)
        self.gen = torch.Generator(device=device).manual_seed(0)
        self.cpu_gen = torch.Generator().manual_seed(0)

    def steps(self, count: int) -> None:
        for _ in range(count):
            index = torch.randint(self.n, (self.batch,), generator=self.cpu_gen).to(self.device)
            raw = self.images[index % self.images.shape[0]]
            views = self.model.views(raw, self.spec, self.mean, self.std, self.gen)
            if self.device.type == "cuda":
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = self.model.training_loss(views, index, self.detector, self.objective, 0.2, self.kernel)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.model.after_step()
            loss.item()


def step_comparison(title: str, framework: str, arch: str, image_size: int, batch: int, ks, n: int, device,
                    quick: bool, reps: int, steps: int) -> dict:
    from ifnd import fused_loss
    from ifnd.falseneg.base import NoDetector

    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (min(4 * batch, 1024), image_size, image_size, 3), dtype=torch.uint8,
                         generator=gen).to(device)
    dtype = torch.bfloat16
    steppers = {}
    methods = [("no detection", NoDetector(), "pairs"), ("IFND", _pseudo_detector(n, ks, gen), "pairs")]
    if device.type == "cuda" and fused_loss.available(device):
        methods.append(("IFND fused", methods[1][1], "fused"))  # --loss-kernel fused
    for mode, detector, kernel in methods:
        torch.manual_seed(0)
        model = _framework(framework, arch, image_size, batch, device, quick)
        if framework == "moco":  # a full queue of keys of random samples, as after the first epoch
            model.queue.copy_(F.normalize(torch.randn(model.queue.shape, generator=gen), dim=1).to(device))
            model.queue_index.copy_(torch.randint(n, model.queue_index.shape, generator=gen).to(device))
        steppers[mode] = Stepper(model, detector, "instance" if mode == "no detection" else "elimination", pool, n,
                                 batch, image_size, dtype, device, kernel)
    times = common.interleaved({k: (lambda s: lambda: s.steps(steps))(s) for k, s in steppers.items()},
                               reps=reps, warmup=0 if quick else 1, device=device)
    ratio = common.ratios(times, "no detection")
    rows = [[k, f"{steps * batch / common.median(t):.0f}", f"{common.median(t) / steps * 1e3:.1f}", f"{ratio[k]:.3f}x"]
            for k, t in times.items()]
    print(f"\n-- {title}: batch {batch}, {image_size}x{image_size}, bf16 autocast"
          f"{', channels_last' if device.type == 'cuda' else ''}, {steps} steps per call, {reps} calls each")
    print(common.table(rows, ["method", "images / s", "ms / step", "step time ratio"]))
    for stepper in steppers.values():
        del stepper.model, stepper.optimizer
    return {"batch": batch, "image_size": image_size,
            "images_per_second": {k: steps * batch / common.median(t) for k, t in times.items()},
            "ratio_vs_no_detection": ratio}


def extraction_rate(arch: str, image_size: int, batch: int, device, reps: int) -> float:
    from ifnd.models import Encoder

    net = Encoder(arch, cifar_stem=image_size <= 64).to(device).eval()
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    if device.type == "cuda":
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            net(x)
    times = common.interleaved({"extract": forward}, reps=reps, warmup=2, device=device)
    rate = batch / common.median(times["extract"])
    print(f"\n-- feature extraction ({arch}, {image_size}x{image_size}, bf16, batch {batch}): {rate:.0f} images/s")
    return rate


def refresh_at_scale(n: int, ks, device) -> dict:
    """The suite's refresh on ``device`` one level at a time (torch k-means on a GPU; faiss on a CPU when
    installed), k-means alone at the largest k, and faiss-gpu's k-means there when faiss-gpu is importable.

    Levels run separately because Eq. 2's confidence (``ifnd_confidence``) materialises an ``N x k`` matrix
    and its log-softmax: at N = 1.28M, k = 10000 that is about 100 GB, more than one GPU holds; a level
    that runs out of memory is reported as such.
    """
    from ifnd.falseneg import incremental
    from ifnd.falseneg.kmeans import kmeans

    backend = "torch" if device.type == "cuda" else "auto"
    gen = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(n, 128, generator=gen), dim=1).to(device)
    calls = {}
    for k in ks:
        detector = incremental.IncrementalDetector(n, [k], incremental.AcceptanceSchedule("linear"), refresh_every=1,
                                                   temperature=0.2, kmeans_backend=backend)
        calls[f"refresh k={k}"] = (lambda d: lambda: d.refresh(1, 2, lambda: features))(detector)
    calls[f"kmeans alone k={ks[-1]}"] = lambda: kmeans(features, ks[-1], backend=backend)
    faiss_gpu = False
    if importlib.util.find_spec("faiss") is not None:
        import faiss
        faiss_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
        if faiss_gpu:
            data = features.cpu().numpy()

            def faiss_kmeans():
                km = faiss.Kmeans(128, ks[-1], niter=20, gpu=True, max_points_per_centroid=1000, seed=0)
                km.train(data)
                km.index.search(data, 1)
            calls[f"faiss-gpu kmeans k={ks[-1]}"] = faiss_kmeans
    seconds, failed = {}, {}
    for name, call in calls.items():
        common.sync(device)
        start = time.perf_counter()
        try:
            call()
            common.sync(device)
            seconds[name] = time.perf_counter() - start
        except torch.OutOfMemoryError as err:
            failed[name] = f"out of memory ({str(err).splitlines()[0][:120]})"
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\n-- IFND refresh at N = {n:,} x 128 (suite k-means backend {backend} on {device.type}"
          f"{'' if faiss_gpu else '; faiss-gpu not importable'}), one call each:")
    for name in calls:
        print(f"  {name}: " + (f"{seconds[name]:.2f} s" if name in seconds else failed[name]))
    return {"backend": backend, "faiss_gpu": faiss_gpu, "seconds": seconds, "failed": failed}


def run(args) -> dict:
    device = torch.device(args.device)
    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    label = "ResNet-50 MoCo v2"
    big_arch, big_size, big_batch = ("convnet4", 32, 16) if quick else ("resnet50", 224, 256)
    small_arch, small_batch = ("convnet4", 32) if quick else ("resnet18", 1024)
    n_big = 5000 if quick else IMAGENET_N
    ks_big = (10, 30, 100) if quick else IMAGENET_KS
    figures = {"machine": common.machine(), "device": str(device)}
    start = time.perf_counter()
    figures["imagenet_step"] = step_comparison(label, "moco", big_arch, big_size, big_batch, ks_big, n_big, device,
                                               quick, reps, 2 if quick else 8)
    figures["imagenet_step"]["framework"] = label
    figures["cifar_step"] = step_comparison(f"{small_arch} CIFAR SimCLR", "simclr", small_arch, 32, small_batch,
                                            (10, 30, 100), 50_000, device, quick, reps, 2 if quick else 10)
    figures["extraction_images_per_second"] = extraction_rate(big_arch, big_size, big_batch, device, 1 if quick else reps + 2)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    figures["refresh"] = refresh_at_scale(n_big, ks_big, device)
    train_rate = figures["imagenet_step"]["images_per_second"]["IFND"]
    epoch = n_big / train_rate
    extract = n_big / figures["extraction_images_per_second"]
    done = figures["refresh"]["seconds"]
    # A level that ran out of memory counts as its k-means alone (a chunked Eq. 2 costs far less than k-means).
    refresh = sum(done.get(f"refresh k={k}", done.get(f"kmeans alone k={k}", float("nan"))) for k in ks_big)
    figures["paper_scale"] = {"epoch_s": epoch, "extraction_s": extract, "refresh_s": refresh,
                              "share_of_training": (extract + refresh) / (epoch + extract + refresh),
                              "share_with_feature_bank": refresh / (epoch + refresh)}
    print(f"\none GPU, paper scale (N = {n_big:,}, refresh every epoch): epoch {epoch:.0f} s, feature extraction "
          f"{extract:.0f} s, k-means + confidence + acceptance {refresh:.1f} s -> pseudo-labelling "
          f"{figures['paper_scale']['share_of_training'] * 100:.1f}% of training time with an extraction pass, "
          f"{figures['paper_scale']['share_with_feature_bank'] * 100:.2f}% clustering the embeddings kept from the "
          "epoch's own steps (paper: 5.8%, target < 2%)")
    from benchmarks import loss_kernel

    print("\n-- loss kernel on the GPU (target <= 1.10x InfoNCE)")
    figures["loss_kernel"] = loss_kernel.run(str(device), quick, args.reps or (1 if quick else 20), True)
    figures["seconds"] = time.perf_counter() - start
    return figures


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.out = args.out or args.json
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("no GPU: skipped (benchmarks/gpu.py needs a CUDA device; run it on a GPU machine)")
        common.write_json(args.out, {"skipped": "no GPU", "machine": common.machine()})
        return 0
    common.setup(args)
    if torch.device(args.device).type == "cuda":
        torch.backends.cudnn.benchmark = True
    common.banner("GPU: training throughput, IFND step overhead, k-means at ImageNet scale, loss kernel")
    figures = run(args)
    common.write_json(args.out, figures)
    print(f"\ntotal {figures['seconds']:.0f} s" + (f"; figures written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
