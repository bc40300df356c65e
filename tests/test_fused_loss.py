"""The fused Triton kernel against the float64 formula and the pair kernel, under Triton's interpreter.

The kernels run on CPU tensors when ``TRITON_INTERPRET=1`` is set before ``triton`` decorates them, so
the checks run in a child process (``python tests/test_fused_loss.py``) with that variable set.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def test_fused_kernel_matches_the_formula_under_the_triton_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, __file__], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "all fused checks passed" in done.stdout


# -- the checks, run in the child process ---------------------------------------------------------------

def _views_batch(samples: int, views: int, gen):
    """``views`` views of each sample: positives = the other views, valid = all but the anchor itself."""
    index = torch.arange(samples).repeat(views)
    n = index.numel()
    is_self = torch.eye(n, dtype=torch.bool)
    from ifnd.losses import Pairs
    return index, Pairs.from_mask((index[:, None] == index[None, :]) & ~is_self), ~is_self


def _check(name, logits64, valid, positive, objective, anchor_labels, candidate_labels, dtype=torch.float32):
    from ifnd.fused_loss import fused_label_loss
    from ifnd.losses import positive_columns, same_label_pairs
    from test_losses import dense_sets, formula64

    fn = same_label_pairs(anchor_labels, candidate_labels) if len(anchor_labels) else None
    reference = logits64.to(dtype).double().requires_grad_(True)  # the kernel's input, exactly
    expected = formula64(reference, *dense_sets(objective, positive, valid, fn))
    expected.backward()
    x = logits64.to(dtype).requires_grad_(True)
    loss = fused_label_loss(x, valid, positive_columns(positive, valid.shape[0]), objective,
                            anchor_labels, candidate_labels)
    loss.backward()
    loss_error = abs(loss.item() - expected.item()) / abs(expected.item())
    grad_error = (x.grad.double() - reference.grad).abs().max().item()
    print(f"{name} {objective}: loss {loss.item():.6f} (rel. error {loss_error:.1e}), grad error {grad_error:.1e}")
    assert torch.isfinite(x.grad).all(), name
    grad_tolerance = 1e-7 if dtype == torch.float32 else reference.grad.abs().max().item() * 2.0 ** -8  # (a bf16 leaf's grad is bf16)
    assert loss_error < 1e-6 and grad_error < grad_tolerance, name


def _main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
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
    from ifnd.losses import Pairs
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
    for objective in objectives:
        grads = []
        for kernel in ("pairs", "fused"):
            x = (z @ z.T / 0.2).requires_grad_(True)
            loss = contrastive_loss(ContrastiveBatch(x, index, index, positive, valid, 0.2), detector, objective, kernel)
            loss.backward()
            grads.append((loss.item(), x.grad))
        assert abs(grads[0][0] - grads[1][0]) < 1e-5 and torch.allclose(grads[0][1], grads[1][1], atol=1e-7), objective
        print(f"contrastive_loss {objective}: pairs {grads[0][0]:.6f}, fused {grads[1][0]:.6f}")
    print("all fused checks passed")


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through pytest (it sets TRITON_INTERPRET=1)"
    _main()
