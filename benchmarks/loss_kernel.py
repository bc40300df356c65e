"""The masked contrastive kernel against plain InfoNCE on the same logits, forward + backward.

``python -m benchmarks.loss_kernel [--device cuda] [--quick]``

Two shapes of the paper:

* ``moco``: batch 256 against its 256 keys and a 65536-entry queue, 128-D features (Sec. 4.1,
  ImageNet): logits 256 x 65792; 3 pseudo-label levels k = 1000 / 3000 / 10000.
* ``simclr``: batch 1024, two views each (App. C, CIFAR): logits 2048 x 2048; k = 10 / 30 / 100.

Labels are random pseudo labels with half of the samples accepted (the others keep a label of their
own, as :class:`ifnd.falseneg.incremental.IncrementalDetector` does mid-training). Each timed call
starts from the logits (a leaf) and ends with their gradient, so it pays what the trainer pays each
step: the same-label join (:func:`ifnd.pairs.same_label_pairs`), the objective's pairs
(:func:`ifnd.pairs.objective_pairs`, elimination) and the kernel's forward and backward.

Variants (all ratios are over ``infonce``):

* ``infonce``: ``F.cross_entropy`` on the same logits (MoCo: target = the own key's column; the
  other 255 keys of the batch count as negatives, 0.4% more columns than MoCo's ``[l_pos, l_neg]``;
  SimCLR: NT-Xent, the anchor itself masked with -inf as ``tests/test_losses.py`` writes it).
* ``ifnd``: the trainer's path, label join + objective pairs + kernel forward + backward.
* ``pairs``: only the label join and ``objective_pairs``; ``kernel``: only the kernel (pairs given).
* ``fused`` (CUDA with triton only): :mod:`ifnd.fused_loss`, the trainer's ``--loss-kernel fused``
  path: the labels go straight into two Triton passes, no pairs.
* ``straightforward``: the same sets as dense ``[L, A, C]`` masks, then one ``masked_fill`` +
  ``logsumexp`` per level through autograd (the kind of code the kernel replaces; skipped with
  ``--no-straightforward``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks import common
from ifnd import fused_loss
from ifnd.losses import masked_contrastive_loss
from ifnd.pairs import Pairs, objective_pairs, positive_columns, same_label_pairs

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
        positive = Pairs(torch.zeros(b, dtype=torch.long), torch.arange(b), torch.arange(b))
        valid = torch.cat([own, torch.ones(b, spec["queue"], dtype=torch.bool)], 1)
        target = torch.arange(b)
    else:
        z = F.normalize(torch.randn(2 * b, dim, generator=gen), dim=1)
        logits = z @ z.T / TEMPERATURE
        anchor_index = candidate_index = sample[:b].repeat(2)
        is_self = torch.eye(2 * b, dtype=torch.bool)
        positive = Pairs.from_mask((anchor_index[:, None] == candidate_index[None, :]) & ~is_self)
        valid = ~is_self
        target = (torch.arange(2 * b) + b) % (2 * b)
    labels = pseudo_labels(torch.cat([anchor_index, candidate_index]), spec["ks"], spec["num_samples"], 0.5, gen)
    a = anchor_index.shape[0]
    to = lambda t: t.to(device)
    positive = Pairs(to(positive.level), to(positive.anchor), to(positive.candidate))
    return dict(name=name, logits=to(logits), positive=positive, valid=to(valid), target=to(target),
                anchor_labels=to(labels[:, :a]), candidate_labels=to(labels[:, a:]), ks=spec["ks"])


# -- the variants ----------------------------------------------------------------------------------

def infonce(case: dict, logits: torch.Tensor) -> torch.Tensor:
    if case["name"] == "simclr":
        logits = logits.masked_fill(~case["valid"], float("-inf"))
    return F.cross_entropy(logits, case["target"])


def trainer_pairs(case: dict):
    false_negative = same_label_pairs(case["anchor_labels"], case["candidate_labels"])
    return objective_pairs("elimination", case["positive"], case["valid"], false_negative)


def fused(case: dict, logits: torch.Tensor) -> torch.Tensor:
    table = positive_columns(case["positive"], logits.shape[0])
    return fused_loss.fused_label_loss(logits, case["valid"], table, "elimination", case["anchor_labels"],
                                       case["candidate_labels"])


def has_fused(case: dict) -> bool:
    return case["logits"].is_cuda and fused_loss.available(case["logits"].device)


def straightforward_loss(logits: torch.Tensor, valid: torch.Tensor, positive: Pairs, excluded: Pairs) -> torch.Tensor:
    """Dense ``[L, A, C]`` masks, one ``masked_fill`` + ``logsumexp`` per level, through autograd."""
    a, c = logits.shape
    logits = logits.float()
    kept = valid & ~excluded.to_mask(a, c)
    pos = positive.to_mask(a, c)[0]
    count = pos.sum(1)
    pos_mean = torch.where(pos, logits, 0).sum(1) / count.clamp_min(1)
    per_anchor = [(logits.masked_fill(~level, float("-inf")).logsumexp(1) - pos_mean)[count > 0] for level in kept]
    return torch.cat(per_anchor).mean()


def variants(case: dict, straightforward: bool = True) -> dict:
    prebuilt = trainer_pairs(case)

    def leaf():
        return case["logits"].detach().clone().requires_grad_(True)

    def run_infonce():
        x = leaf()
        infonce(case, x).backward()
        return x.grad

    def run_ifnd():
        x = leaf()
        masked_contrastive_loss(x, case["valid"], *trainer_pairs(case)).backward()
        return x.grad

    def run_pairs():
        return trainer_pairs(case)

    def run_kernel():
        x = leaf()
        masked_contrastive_loss(x, case["valid"], *prebuilt).backward()
        return x.grad

    def run_straightforward():
        x = leaf()
        straightforward_loss(x, case["valid"], *trainer_pairs(case)).backward()
        return x.grad

    def run_fused():
        x = leaf()
        fused(case, x).backward()
        return x.grad

    out = {"infonce": run_infonce, "ifnd": run_ifnd, "pairs": run_pairs, "kernel": run_kernel}
    if has_fused(case):
        out["fused"] = run_fused
    if straightforward:
        out["straightforward"] = run_straightforward
    return out


def check(case: dict) -> dict:
    """Loss and gradient of the kernel against the straightforward formula."""
    positive, excluded = trainer_pairs(case)
    x_ref = case["logits"].detach().clone().requires_grad_(True)
    ref = straightforward_loss(x_ref, case["valid"], positive, excluded)
    ref.backward()
    x = case["logits"].detach().clone().requires_grad_(True)
    loss = masked_contrastive_loss(x, case["valid"], positive, excluded)
    loss.backward()
    scale = x_ref.grad.abs().max().item()
    out = {"loss": ref.item(), "kernel_loss_diff": abs(loss.item() - ref.item()),
           "kernel_grad_diff_rel": (x.grad - x_ref.grad).abs().max().item() / scale}
    if has_fused(case):
        x = case["logits"].detach().clone().requires_grad_(True)
        loss = fused(case, x)
        loss.backward()
        out.update(fused_loss_diff=abs(loss.item() - ref.item()),
                   fused_grad_diff_rel=(x.grad - x_ref.grad).abs().max().item() / scale)
    return {**out, "false_negative_pairs": len(excluded)}


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
                        "trainer path (label join + objective pairs + kernel) on each case")
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
