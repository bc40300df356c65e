"""The fused Triton kernel against the float64 formula and the pair kernel.

The kernels run on CPU tensors when ``TRITON_INTERPRET=1`` is set before ``triton`` decorates them, so
the checks run in a child process (``python tests/test_fused_loss.py [cuda]``) with that variable set;
on a machine with a GPU the same checks also run compiled, on the GPU.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ifnd.pairs import Pairs

ROOT = Path(__file__).resolve().parent.parent


def run_checks(device: str, interpret: bool) -> None:
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(ROOT), **({"TRITON_INTERPRET": "1"} if interpret else {}))
    done = subprocess.run([sys.executable, __file__, device], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "all fused checks passed" in done.stdout


def test_fused_kernel_matches_the_formula_under_the_triton_interpreter():
    run_checks("cpu", interpret=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the compiled kernel is checked on CUDA machines")
def test_fused_kernel_matches_the_formula_on_the_gpu():
    run_checks("cuda", interpret=False)


def test_the_fused_path_checks_its_inputs_like_the_pair_kernel():
    """An invalid positive is refused before any kernel runs (the fused kernel itself would skip it)."""
    from ifnd.falseneg.base import ContrastiveBatch, LabelDetector
    from ifnd.frameworks.base import contrastive_loss

    index, positive, valid = _views_batch(4, 2, None)
    valid[0, positive.candidate[positive.anchor == 0]] = False
    batch = ContrastiveBatch(torch.randn(8, 8), index, index, positive, valid, 0.2)
    with pytest.raises(ValueError, match="a positive pair is not a valid candidate"):
        contrastive_loss(batch, LabelDetector(torch.zeros(1, 4, dtype=torch.long)), "elimination", "fused")


# -- the checks, run in the child process ---------------------------------------------------------------

def _views_batch(samples: int, views: int, gen):
    """``views`` views of each sample: positives = the other views, valid = all but the anchor itself."""
    index = torch.arange(samples).repeat(views)
    n = index.numel()
    is_self = torch.eye(n, dtype=torch.bool)
    return index, Pairs.from_mask((index[:, None] == index[None, :]) & ~is_self), ~is_self


DEVICE = torch.device(sys.argv[1] if __name__ == "__main__" and len(sys.argv) > 1 else "cpu")


def _check(name, logits64, valid, positive, objective, anchor_labels, candidate_labels, dtype=torch.float32):
    from ifnd.fused_loss import fused_label_loss
    from ifnd.losses import reference_loss
    from ifnd.pairs import positive_columns, same_label_pairs

    fn = same_label_pairs(anchor_labels, candidate_labels) if len(anchor_labels) else None
    reference = logits64.to(dtype).double().requires_grad_(True)  # the kernel's input, exactly
    expected = reference_loss(objective, reference, valid, positive, fn)
    expected.backward()
    x = logits64.to(dtype).to(DEVICE).requires_grad_(True)
    on = lambda t: t.to(DEVICE)  # noqa: E731
    loss = fused_label_loss(x, on(valid), on(positive_columns(positive, valid.shape[0])), objective,
                            on(anchor_labels), on(candidate_labels))
    loss.backward()
    loss_error = abs(loss.item() - expected.item()) / abs(expected.item())
    grad_error = (x.grad.cpu().double() - reference.grad).abs().max().item()
    print(f"{name} {objective}: loss {loss.item():.6f} (rel. error {loss_error:.1e}), grad error {grad_error:.1e}")
    assert torch.isfinite(x.grad).all(), name
    # a GPU's exp is an approximation good to a few float32 ulps; a bf16 leaf's gradient is bf16
    grad_tolerance = (1e-7 if DEVICE.type == "cpu" else 1e-6) if dtype == torch.float32 else \
        reference.grad.abs().max().item() * 2.0 ** -8
    assert loss_error < (1e-6 if DEVICE.type == "cpu" else 1e-5) and grad_error < grad_tolerance, name


def _main() -> None:
    gen = torch.Generator().manual_seed(0)
    objectives = ("instance", "elimination", "attraction")

    # SimCLR batch, 3 overlapping label levels, an empty candidate slot, an anchor left without positives
    index, positive, valid = _views_batch(12, 2, gen)
    valid[:, 5] = False
    positive = positive.select(positive.candidate != 5)
    labels = torch.stack([torch.randint(k, (12,), generator=gen) for k in (2, 3, 5)])[:, index]
    logits = torch.randn(24, 24, generator=gen, dtype=torch.float64) * 3
    for objective in objectives:
        _check("simclr", logits, valid, positive, objective, labels, labels)
    _check("simclr, no detector", logits, valid, positive, "elimination", labels[:0], labels[:0])

    # three views: two positives per anchor
    index, positive, valid = _views_batch(8, 3, gen)
    labels = torch.randint(3, (2, 8), generator=gen)[:, index]
    logits = torch.randn(24, 24, generator=gen, dtype=torch.float64) * 2
    for objective in objectives:
        _check("3 views", logits, valid, positive, objective, labels, labels)

    # MoCo: 6 queries against their keys and a 2500-entry queue (3 blocks per row), a row with nothing valid
    b, queue = 6, 2500
    sample = torch.cat([torch.arange(b), torch.randint(b, 400, (queue,), generator=gen)])
    valid = torch.cat([torch.eye(b, dtype=torch.bool), torch.rand(b, queue, generator=gen) < 0.9], 1)
    valid[4] = False
    rows = torch.arange(b)
    positive = Pairs(torch.zeros_like(rows), rows, rows).select(rows != 4)
    table = torch.stack([torch.randint(k, (400,), generator=gen) for k in (4, 9)])
    logits = torch.randn(b, b + queue, generator=gen, dtype=torch.float64) * 2
    for objective in objectives:
        _check("moco", logits, valid, positive, objective, table[:, :b], table[:, sample])
    _check("moco, bf16 logits", logits, valid, positive, "elimination",
           table[:, :b], table[:, sample], dtype=torch.bfloat16)

    # detected false negatives e^35 above the rest; the anchor's own logit 200 above every valid one
    index, positive, valid = _views_batch(4, 2, gen)
    logits = torch.full((8, 8), -10.0, dtype=torch.float64)
    logits[:, 2] = 25.0
    labels = torch.tensor([[0, 1, 0, 0, 0, 1, 0, 0]])
    _check("excluded mass dominant", logits, valid, positive, "elimination", labels, labels)
    logits = (torch.randn(8, 8, generator=gen, dtype=torch.float64) - 100).fill_diagonal_(100)
    _check("invalid far above", logits, valid, positive, "elimination", labels, labels)

    # through the trainer's entry point: the same loss and gradient as the pair kernel
    from ifnd.falseneg.base import ContrastiveBatch, LabelDetector
    from ifnd.frameworks.base import contrastive_loss
    index, positive, valid = _views_batch(10, 2, gen)
    detector = LabelDetector(torch.stack([torch.randint(k, (10,), generator=gen) for k in (3, 5)]))
    z = torch.nn.functional.normalize(torch.randn(20, 16, generator=gen), dim=1)
    positive = Pairs(*(t.to(DEVICE) for t in (positive.level, positive.anchor, positive.candidate)))
    index, valid, z = index.to(DEVICE), valid.to(DEVICE), z.to(DEVICE)
    for objective in objectives:
        grads = []
        for kernel in ("pairs", "fused"):
            x = (z @ z.T / 0.2).requires_grad_(True)
            loss = contrastive_loss(ContrastiveBatch(x, index, index, positive, valid, 0.2), detector, objective, kernel)
            loss.backward()
            grads.append((loss.item(), x.grad))
        close = torch.allclose(grads[0][1], grads[1][1], atol=1e-7 if DEVICE.type == "cpu" else 1e-6)
        assert abs(grads[0][0] - grads[1][0]) < 1e-5 and close, objective
        print(f"contrastive_loss {objective}: pairs {grads[0][0]:.6f}, fused {grads[1][0]:.6f}")
    print("all fused checks passed")


if __name__ == "__main__":
    assert DEVICE.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1", \
        "run through pytest (on a CPU it sets TRITON_INTERPRET=1)"
    _main()
