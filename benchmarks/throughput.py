"""Images per second of the trainer against a minimal hand-written SimCLR loop, same model and data.

``python -m benchmarks.throughput [--quick] [--data-root PATH]``

The trainer runs the ``mini`` profile's SimCLR (convnet4, CIFAR-10 32x32, batch 256, bf16 autocast on
CPU) on a class-balanced 5k-image subset, 6 steps per timed call (``Trainer.train_epoch`` cut short;
``--steps 0``: the whole epoch of 19 steps), 5 calls each after a warm-up. The hand-written loop
is what a user would write without the suite: the same uint8 images in memory, the same batched
augmentation calls (:func:`ifnd.augment.augment`), the same encoder, SGD settings and autocast, and
NT-Xent as ``F.cross_entropy`` over the other 2B-1 views. The two alternate, call by call.
Target: the trainer at least 1.0x the hand-written loop (the suite adds no overhead).
"""
from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F

from benchmarks import common


class HandWrittenSimCLR:
    """A plain PyTorch SimCLR epoch on the trainer's data, model architecture and settings."""

    def __init__(self, cfg, steps: int):
        from ifnd import augment as aug
        from ifnd.data import channel_stats, load_split, training_indices
        from ifnd.models import Encoder

        train = load_split(cfg.dataset, "train", cfg.data_root)
        train = train.subset(training_indices(train.labels, cfg.train_subset, cfg.seed))
        self.aug = aug
        self.images = train.images
        self.mean, self.std = channel_stats(cfg.dataset)
        self.spec = aug.AugmentConfig(size=cfg.image_size, scale=(cfg.crop_scale_min, 1.0))
        torch.manual_seed(cfg.seed)
        self.model = Encoder(cfg.arch, cfg.cifar_stem)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.cfg, self.steps, self.epoch = cfg, steps, 0
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

    def train_epoch(self) -> float:
        cfg, b = self.cfg, self.cfg.batch_size
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.images), generator=gen)
        target = (torch.arange(2 * b) + b) % (2 * b)
        is_self = torch.eye(2 * b, dtype=torch.bool)
        total = 0.0
        for step in range(self.steps):
            raw = self.images[order[step * b:(step + 1) * b]]
            views = [self.aug.augment(raw, self.spec, self.mean, self.std, gen) for _ in range(2)]
            with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
                z = F.normalize(self.model(torch.cat(views)), dim=1)
                logits = (z @ z.T / cfg.temperature).float().masked_fill(is_self, float("-inf"))
                loss = F.cross_entropy(logits, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
        self.epoch += 1
        return total / self.steps


def run(args) -> dict:
    from ifnd.train import Trainer

    overrides = dict(batch_size=args.batch_size) if args.batch_size else {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = common.mini_train_config(f"{tmp}/simclr", args.data_root, args.subset, args.threads, detector="none",
                                       objective="instance", **overrides)
        trainer = Trainer(cfg)
        if args.steps:
            trainer.steps_per_epoch = min(trainer.steps_per_epoch, args.steps)
        steps = trainer.steps_per_epoch
        hand = HandWrittenSimCLR(cfg, steps)
        print(f"{steps} steps of batch {cfg.batch_size} per timed call ({len(trainer.source)} training images), "
              f"arch {cfg.arch}, amp {cfg.amp}")
        times = common.interleaved({"hand-written": hand.train_epoch, "trainer": trainer.train_epoch},
                                   reps=args.reps or (1 if args.quick else 5), warmup=0 if args.quick else 1)
    images = steps * cfg.batch_size
    ratio = common.ratios(times, "hand-written")
    rows = [[k, f"{images / common.median(t):.0f}", f"{common.median(t):.2f}", f"{1 / ratio[k]:.3f}x",
             f"{1 / common.paired_ratio(times, k, 'hand-written'):.3f}x"] for k, t in times.items()]
    print(common.table(rows, ["loop", "images / s", "s / call", "throughput ratio", "paired"]))
    print(f"trainer / hand-written throughput: {1 / ratio['trainer']:.3f}x (target >= 1.0x)")
    return {"steps_per_call": steps, "batch_size": cfg.batch_size, "reps": len(times["trainer"]), "times_s": times,
            "images_per_second": {k: images / common.median(t) for k, t in times.items()},
            "throughput_ratio_trainer_over_hand": 1 / ratio["trainer"],
            "paired_throughput_ratio": 1 / common.paired_ratio(times, "trainer", "hand-written")}


def main(argv=None) -> int:
    return common.cifar_training_main(argv, __doc__, "throughput: trainer vs hand-written SimCLR loop (mini settings)", run,
                                      "steps per timed call (0: a whole epoch)")


if __name__ == "__main__":
    raise SystemExit(main())
