"""Two CPU processes (gloo) reproduce one process on the same global batch: loss and gradients.

BatchNorm is put in evaluation mode: without SyncBN (GPU only) its batch statistics are per
process by design, which is the one intended difference between the two settings.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ifnd.distributed import average_gradients, gather_rows, shard
from ifnd.falseneg.base import Detector, LabelDetector, TrueLabelDetector
from ifnd.frameworks.simclr import SimCLR

BATCH, T = 8, 0.2
CASES = {  # detector factory, objective
    "simclr": (lambda labels: Detector(), "instance"),
    "supcon": (lambda labels: TrueLabelDetector(labels), "attraction"),
    "ifnd": (lambda labels: LabelDetector(torch.stack([labels, labels % 2])), "elimination"),
}


def fixed_inputs():
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(BATCH, 3, 16, 16, generator=gen) for _ in range(2)]
    index = torch.arange(BATCH) * 3
    labels = torch.randint(0, 3, (3 * BATCH,), generator=gen)
    return views, index, labels


def loss_and_grads(case: str, part: slice):
    torch.manual_seed(0)
    model = SimCLR("convnet4").eval()
    views, index, labels = fixed_inputs()
    make_detector, objective = CASES[case]
    loss = model.training_loss([v[part] for v in views], index[part], make_detector(labels), objective, T)
    loss.backward()
    average_gradients(model.parameters())
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def worker(rank: int, world: int, init_file: str, case: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss, grads = loss_and_grads(case, half)
    dist.all_reduce(loss)
    rows = gather_rows(torch.arange(10)[shard(10)].float()[:, None], 10)
    if rank == 0:
        torch.save({"loss": loss / world, "grads": grads, "rows": rows}, out)
    dist.destroy_process_group()


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_match_one(tmp_path, case):
    out = tmp_path / "rank0.pt"
    mp.spawn(worker, args=(2, str(tmp_path / "init"), case, str(out)), nprocs=2, join=True)
    two = torch.load(out)
    loss, grads = loss_and_grads(case, slice(None))
    assert torch.allclose(two["loss"], loss, atol=1e-5)
    for a, b in zip(two["grads"], grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert torch.equal(two["rows"][:, 0], torch.arange(10).float())
