"""The whole training step with IFND (elimination, 3 levels) against the same SimCLR without detection.

``python -m benchmarks.train_step [--quick] [--data-root PATH]``

Both trainers are built from the ``mini`` profile (convnet4, CIFAR-10 32x32, batch 256, bf16 autocast
on CPU, a class-balanced 5k-image subset) and run the trainer's own ``train_epoch`` cut to a few steps,
alternating. The IFND trainer's pseudo labels come from a real refresh halfway through the schedule
(k = 10 / 30 / 100, half the samples accepted), so each step pays the same-label join, the pairs
and the kernel over 3 levels. Target: IFND at most 3% slower per step.
"""
from __future__ import annotations

import tempfile

from benchmarks import common


def build(mode: str, run_dir, args):
    from ifnd.config import mode_settings
    from ifnd.train import Trainer

    overrides = dict(batch_size=args.batch_size) if args.batch_size else {}
    cfg = common.mini_train_config(run_dir, args.data_root, args.subset, args.threads, **mode_settings(mode),
                                   **overrides)
    trainer = Trainer(cfg)
    trainer.steps_per_epoch = min(trainer.steps_per_epoch, args.steps)
    return trainer


def loss_only(trainer, reps: int) -> dict:
    """The per-step part that differs: detection + pairs + kernel forward/backward on a 2B x 2B batch.

    ``Framework.training_loss``'s :func:`~ifnd.frameworks.base.contrastive_loss` on the unit
    embeddings of a SimCLR batch (the encoder, identical for both, left out), timed many times: a
    less noisy figure for the overhead.
    """
    import torch
    import torch.nn.functional as F

    from ifnd.falseneg.base import ContrastiveBatch, NoDetector
    from ifnd.frameworks.base import contrastive_loss
    from ifnd.pairs import Pairs

    cfg = trainer.cfg
    gen = torch.Generator().manual_seed(0)
    index = torch.randperm(len(trainer.source), generator=gen)[:cfg.batch_size]
    z0 = F.normalize(torch.randn(2 * cfg.batch_size, 128, generator=gen), dim=1)
    anchor_index = index.repeat(2)
    is_self = torch.eye(2 * cfg.batch_size, dtype=torch.bool)
    positive = Pairs.from_mask((anchor_index[:, None] == anchor_index[None, :]) & ~is_self)

    def step(detector, objective):
        def call():
            z = z0.clone().requires_grad_(True)
            batch = ContrastiveBatch(z @ z.T / cfg.temperature, anchor_index, anchor_index, positive, ~is_self,
                                     cfg.temperature)
            contrastive_loss(batch, detector, objective).backward()
        return call

    times = common.interleaved({"simclr": step(NoDetector(), "instance"), "ifnd": step(trainer.detector, "elimination")},
                               reps=reps, warmup=2)
    return {k: common.median(t) for k, t in times.items()}


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        simclr = build("simclr", f"{tmp}/simclr", args)
        ifnd = build("ifnd", f"{tmp}/ifnd", args)
        cfg = ifnd.cfg
        record = ifnd.detector.refresh(cfg.epochs // 2, cfg.epochs, lambda: ifnd.features("train", cfg.cluster_on))
        labels = ifnd.detector.level_labels()
        accepted = [(level < k).float().mean().item() for level, k in zip(labels, cfg.cluster_numbers)]
        print(f"IFND labels: k = {cfg.cluster_numbers}, acceptance rate {record['acceptance_rate']:.2f}, "
              f"accepted per level {', '.join(f'{a:.2f}' for a in accepted)}")
        steps = simclr.steps_per_epoch
        print(f"{steps} steps of batch {cfg.batch_size} per timed call, {len(ifnd.source)} training images, "
              f"arch {cfg.arch}, amp {cfg.amp}")
        times = common.interleaved({"simclr": simclr.train_epoch, "ifnd": ifnd.train_epoch},
                                   reps=args.reps or (1 if args.quick else 7), warmup=0 if args.quick else 1)
        loss_part = loss_only(ifnd, 5 if args.quick else 101)
    ratio = common.ratios(times, "simclr")
    rows = [[k, f"{common.median(t) / steps * 1e3:.1f}", f"{steps * cfg.batch_size / common.median(t):.0f}",
             f"{ratio[k]:.3f}x", f"{common.paired_ratio(times, k, 'simclr'):.3f}x"] for k, t in times.items()]
    print(common.table(rows, ["trainer", "ms / step", "images / s", "ratio", "paired ratio"]))
    overhead = ratio["ifnd"] - 1
    print(f"IFND step overhead: {overhead * 100:+.1f}% (target <= +3%)")
    extra = loss_part["ifnd"] - loss_part["simclr"]
    simclr_step = common.median(times["simclr"]) / steps
    print(f"loss part alone ({2 * cfg.batch_size} x {2 * cfg.batch_size} logits, medians of many calls): SimCLR "
          f"{loss_part['simclr'] * 1e3:.2f} ms, IFND {loss_part['ifnd'] * 1e3:.2f} ms -> IFND adds "
          f"{extra * 1e3:.2f} ms = {extra / simclr_step * 100:+.2f}% of a SimCLR step")
    return {"loss_part_ms": {k: v * 1e3 for k, v in loss_part.items()},
            "loss_part_overhead_of_step": extra / simclr_step, "times_s": times,
            "steps_per_call": steps, "batch_size": cfg.batch_size, "reps": len(times["simclr"]),
            "ms_per_step": {k: common.median(t) / steps * 1e3 for k, t in times.items()},
            "ratio_vs_simclr": ratio, "paired_ratio": common.paired_ratio(times, "ifnd", "simclr")}


def main(argv=None) -> int:
    return common.cifar_training_main(argv, __doc__, "training step: IFND (elimination, 3 levels) vs SimCLR, same process", run,
                                      "training steps per timed call")


if __name__ == "__main__":
    raise SystemExit(main())
