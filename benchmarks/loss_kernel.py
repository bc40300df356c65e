"""The masked contrastive kernel against plain InfoNCE on the same logits, forward + backward.

``python -m benchmarks.loss_kernel [--device cuda] [--quick]``

Two shapes of the paper:

* ``moco``: batch 256 against its 256 keys and a 65536-entry queue, 128-D features (Sec. 4.1,
  ImageNet): logits 256 x 65792; 3 pseudo-label levels k = 1000 / 3000 / 10000.
* ``simclr``: batch 1024, two views each (App. C, CIFAR): logits 2048 x 2048; k = 10 / 30 / 100.

Labels are random pseudo labels with half of the samples accepted (the others keep a label of their
own, as :class:`ifnd.falseneg.incremental.IncrementalDetector` does mid-training). Each timed call
starts from the logits (a leaf) and ends with their gradient, so it pays what the trainer pays each
step: the label comparison (:func:`ifnd.losses.label_false_negatives`), the masks
(:func:`ifnd.losses.objective_masks`, elimination) and the kernel's forward and backward.

Variants (all ratios are over ``infonce``):

* ``infonce``: ``F.cross_entropy`` on the same logits (MoCo: target = the own key's column; the
  other 255 keys of the batch count as negatives, 0.4% more columns than MoCo's ``[l_pos, l_neg]``;
  SimCLR: NT-Xent, the anchor itself masked with -inf as ``tests/test_losses.py`` writes it).
* ``ifnd``: the trainer's path, label comparison + masks + kernel forward + backward.
* ``masks``: only label comparison + ``objective_masks``; ``kernel``: only the kernel (masks given).
* ``straightforward``: the same masks, then one ``masked_fill`` + ``logsumexp`` per level through
  autograd (the kind of code the kernel replaces; skipped with ``--no-straightforward``).
* ``fused``: a prototype that builds the kept set from the labels inside the kernel's row blocks
  (:func:`fused_elimination_loss`), i.e. what the step would cost if ``Framework.training_loss``
  handed labels instead of ``[L, A, C]`` masks to the kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks import common
from ifnd.losses import _masked_loss_blocks, label_false_negatives, masked_contrastive_loss, objective_masks

TEMPERATURE = 0.2
CASES = {  # name: (anchors' batch, queue, feature dim, cluster numbers)
    "moco": dict(batch=256, queue=65536, dim=128, ks=(1000, 3000, 10000), num_samples=1_281_167),
    "simclr": dict(batch=1024, queue=0, dim=128, ks=(10, 30, 100), num_samples=50_000),
}
QUICK = {
    "moco": dict(batch=32, queue=1024, dim=16, ks=(10, 30, 100), num_samples=5000),
    "simclr": dict(batch=64, queue=0, dim=16, ks=(3, 5, 10), num_samples=1000),
}


def pseudo_labels(index: torch.Tensor, ks, num_samples: int, accepted: float, gen) -> torch.Tensor:
    """``[L, n]`` labels of samples ``index``: a random cluster if accepted, else ``k + index``."""
    table = []
    for k in ks:
        cluster = torch.randint(k, (num_samples,), generator=gen)
        keep = torch.rand(num_samples, generator=gen) < accepted
        table.append(torch.where(keep, cluster, k + torch.arange(num_samples)))
    return torch.stack(table)[:, index]


def make_case(name: str, device, quick: bool = False, seed: int = 0) -> dict:
    spec = (QUICK if quick else CASES)[name]
    gen = torch.Generator().manual_seed(seed)
    b, dim = spec["batch"], spec["dim"]
    sample = torch.randperm(spec["num_samples"], generator=gen)
    if name == "moco":
        q = F.normalize(torch.randn(b, dim, generator=gen), dim=1)
        keys = F.normalize(q + 0.5 * torch.randn(b, dim, generator=gen), dim=1)
        queue = F.normalize(torch.randn(spec["queue"], dim, generator=gen), dim=1)
        logits = q @ torch.cat([keys, queue]).T / TEMPERATURE
        anchor_index = sample[:b]
        candidate_index = torch.cat([anchor_index, sample[b:b + spec["queue"]]])
        own = torch.eye(b, dtype=torch.bool)
        positive = torch.cat([own, torch.zeros(b, spec["queue"], dtype=torch.bool)], 1)
        valid = torch.cat([own, torch.ones(b, spec["queue"], dtype=torch.bool)], 1)
        target = torch.arange(b)
    else:
        z = F.normalize(torch.randn(2 * b, dim, generator=gen), dim=1)
        logits = z @ z.T / TEMPERATURE
        anchor_index = candidate_index = sample[:b].repeat(2)
        is_self = torch.eye(2 * b, dtype=torch.bool)
        positive = (anchor_index[:, None] == candidate_index[None, :]) & ~is_self
        valid = ~is_self
        target = (torch.arange(2 * b) + b) % (2 * b)
    labels = pseudo_labels(torch.cat([anchor_index, candidate_index]), spec["ks"], spec["num_samples"], 0.5, gen)
    a = anchor_index.shape[0]
    to = lambda t: t.to(device)
    return dict(name=name, logits=to(logits), positive=to(positive), valid=to(valid), target=to(target),
                anchor_labels=to(labels[:, :a]), candidate_labels=to(labels[:, a:]), ks=spec["ks"])


# -- the variants ----------------------------------------------------------------------------------

def infonce(case: dict, logits: torch.Tensor) -> torch.Tensor:
    if case["name"] == "simclr":
        logits = logits.masked_fill(~case["valid"], float("-inf"))
    return F.cross_entropy(logits, case["target"])


def trainer_masks(case: dict):
    false_negative = label_false_negatives(case["anchor_labels"], case["candidate_labels"])
    return objective_masks("elimination", case["positive"], case["valid"], false_negative)


def straightforward_loss(logits: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """One ``masked_fill`` + ``logsumexp`` per level, through autograd (the reference formula)."""
    logits = logits.float()
    per_anchor = []
    for pos, neg in zip(positive.expand_as(negative), negative):
        log_denominator = logits.masked_fill(~(pos | neg), float("-inf")).logsumexp(1)
        count = pos.sum(1)
        pos_mean = torch.where(pos, logits, 0).sum(1) / count.clamp_min(1)
        per_anchor.append((log_denominator - pos_mean)[count > 0])
    return torch.cat(per_anchor).mean()


def fused_elimination_loss(logits, instance_positive, valid, anchor_labels, candidate_labels):
    """Prototype: the elimination loss with the kept set built from labels block by block.

    Same value as ``masked_contrastive_loss(logits, *objective_masks("elimination", ...))`` but no
    ``[L, A, C]`` tensor is ever made: each block of anchors compares its labels with the
    candidates' straight into the kernel's float buffer. (Forward + gradient; the benchmark calls
    it where the trainer would call the kernel.)
    """
    negative = (valid & ~instance_positive).float()

    def negatives_into(out, start, stop):
        differ = anchor_labels[:, start:stop, None] != candidate_labels[:, None, :]   # bool, block-sized
        out.copy_(differ.view(torch.uint8)).mul_(negative[start:stop])  # (comparing into float is ~8x slower)

    levels = anchor_labels.shape[0]
    shared_positive = instance_positive.unsqueeze(0).expand(levels, *instance_positive.shape)
    return _masked_loss_blocks(logits.detach().float(), shared_positive, negatives_into, need_grad=True)


def variants(case: dict, straightforward: bool = True) -> dict:
    prebuilt = trainer_masks(case)

    def leaf():
        return case["logits"].detach().clone().requires_grad_(True)

    def run_infonce():
        x = leaf()
        infonce(case, x).backward()
        return x.grad

    def run_ifnd():
        x = leaf()
        masked_contrastive_loss(x, *trainer_masks(case)).backward()
        return x.grad

    def run_masks():
        return trainer_masks(case)

    def run_kernel():
        x = leaf()
        masked_contrastive_loss(x, *prebuilt).backward()
        return x.grad

    def run_straightforward():
        x = leaf()
        straightforward_loss(x, *trainer_masks(case)).backward()
        return x.grad

    def run_fused():
        return fused_elimination_loss(leaf(), case["positive"], case["valid"], case["anchor_labels"],
                                      case["candidate_labels"])[1]

    out = {"infonce": run_infonce, "ifnd": run_ifnd, "masks": run_masks, "kernel": run_kernel, "fused": run_fused}
    if straightforward:
        out["straightforward"] = run_straightforward
    return out


def check(case: dict) -> dict:
    """Loss and gradient of the kernel and of the fused prototype against the straightforward formula."""
    p, n = trainer_masks(case)
    x_ref = case["logits"].detach().clone().requires_grad_(True)
    ref = straightforward_loss(x_ref, p, n)
    ref.backward()
    x = case["logits"].detach().clone().requires_grad_(True)
    loss = masked_contrastive_loss(x, p, n)
    loss.backward()
    fused_loss, fused_grad = fused_elimination_loss(case["logits"], case["positive"], case["valid"],
                                                   case["anchor_labels"], case["candidate_labels"])
    scale = x_ref.grad.abs().max().item()
    return {"loss": ref.item(), "kernel_loss_diff": abs(loss.item() - ref.item()),
            "kernel_grad_diff_rel": (x.grad - x_ref.grad).abs().max().item() / scale,
            "fused_loss_diff": abs(fused_loss.item() - ref.item()),
            "fused_grad_diff_rel": (fused_grad - x_ref.grad).abs().max().item() / scale}


def run(device: str = "cpu", quick: bool = False, reps: int = 0, straightforward: bool = True,
        cases=("moco", "simclr")) -> dict:
    reps = reps or (1 if quick else 7)
    figures = {}
    for name in cases:
        case = make_case(name, device, quick)
        a, c = case["logits"].shape
        levels = case["anchor_labels"].shape[0]
        print(f"\n-- {name}: logits {a} x {c}, {levels} levels k = {'/'.join(map(str, case['ks']))}, "
              f"elimination, {device}")
        correctness = check(case)
        print("correctness vs straightforward (float32): " + ", ".join(f"{k} {v:.3g}" for k, v in correctness.items()))
        fns = variants(case, straightforward)
        times = common.interleaved(fns, reps=reps, warmup=0 if quick else 1, device=device)
        ratio = common.ratios(times, "infonce")
        memory = {k: common.peak_memory(f, device) for k, f in fns.items()}
        rows = [[k, f"{common.median(t) * 1e3:.1f}", common.spread(t), f"{ratio[k]:.2f}x",
                 f"{common.paired_ratio(times, k, 'infonce'):.2f}x", common.mib(memory[k])] for k, t in times.items()]
        print(common.table(rows, ["variant", "median ms", "min..max ms", "ratio", "paired ratio", "peak memory"]))
        figures[name] = {"shape": [a, c], "levels": levels, "ks": list(case["ks"]), "reps": reps,
                         "median_ms": {k: common.median(t) * 1e3 for k, t in times.items()},
                         "ratio_vs_infonce": ratio, "peak_memory_bytes": memory, "correctness": correctness}
    return figures


def profile(device: str, quick: bool, cases) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    sort = "self_cuda_time_total" if len(activities) > 1 else "self_cpu_time_total"
    for name in cases:
        run_ifnd = variants(make_case(name, device, quick), straightforward=False)["ifnd"]
        run_ifnd()
        with torch_profile(activities=activities) as prof:
            for _ in range(5):
                run_ifnd()
            common.sync(device)
        print(f"\n-- profile of the trainer path, {name}, 5 calls")
        print(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=48))


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-straightforward", action="store_true", help="skip the slow reference variant")
    parser.add_argument("--cases", nargs="+", default=["moco", "simclr"], choices=sorted(CASES))
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators of the "
                        "trainer path (label comparison + masks + kernel) on each case")
    args = parser.parse_args(argv)
    common.setup(args)
    common.banner("masked contrastive kernel vs plain InfoNCE (forward + backward)")
    if args.profile:
        profile(args.device, args.quick, args.cases)
    figures = run(args.device, args.quick, args.reps, not args.no_straightforward, args.cases)
    print("\nratio = median time / median time of infonce; paired ratio = median of per-round ratios; "
          "peak memory = tensors allocated by the call (CPU: dispatch-mode count, GPU: allocator peak)")
    common.write_json(args.json, {"machine": common.machine(), "device": args.device, "cases": figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
