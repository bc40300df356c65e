"""The mini profile's SimCLR training step in bf16 autocast against fp32, on this CPU.

``python -m benchmarks.precision [--quick] [--data-root PATH]``

The ``mini`` profile trains in bf16 (``amp = "bf16"``): measured on the CPU it was tuned on, bf16 was
the faster setting. PyTorch runs bf16 convolutions fast only through oneDNN's bf16 kernels (AVX-512);
elsewhere (e.g. AVX2-only CPUs) they fall back to a generic GEMM. This prints which this CPU has and
the ratio of the two, the trainer's own ``train_epoch`` cut to a few steps, alternating.
"""
from __future__ import annotations

import tempfile

from benchmarks import common


def run(args) -> dict:
    import torch

    from ifnd.train import Trainer

    overrides = dict(batch_size=args.batch_size) if args.batch_size else {}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for amp in ("off", "bf16"):
            cfg = common.mini_train_config(f"{tmp}/{amp}", args.data_root, args.subset, args.threads, amp=amp,
                                           **overrides)
            trainers[amp] = Trainer(cfg)
            trainers[amp].steps_per_epoch = min(trainers[amp].steps_per_epoch, args.steps)
        steps, batch = trainers["off"].steps_per_epoch, trainers["off"].cfg.batch_size
        supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, oneDNN bf16 kernels: "
              f"{'yes' if supported else 'no'}; {steps} steps of batch {batch} per timed call, convnet4 SimCLR")
        times = common.interleaved({amp: t.train_epoch for amp, t in trainers.items()},
                                   reps=args.reps or (1 if args.quick else 3), warmup=0 if args.quick else 1)
    ratio = common.ratios(times, "off")
    rows = [[amp, f"{common.median(t) / steps * 1e3:.0f}", f"{steps * batch / common.median(t):.0f}",
             f"{ratio[amp]:.2f}x", common.spread([x / steps for x in t])] for amp, t in times.items()]
    print(common.table(rows, ["amp", "ms / step", "images / s", "time ratio", "spread per step (ms)"]))
    return {"onednn_bf16": supported, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "times_s": times, "steps_per_call": steps, "batch_size": batch, "ratio_vs_fp32": ratio}


def main(argv=None) -> int:
    return common.cifar_training_main(argv, __doc__, "training step: bf16 autocast vs fp32 on this CPU", run,
                                      "training steps per timed call")


if __name__ == "__main__":
    raise SystemExit(main())
