"""Two CPU processes (gloo) reproduce one process on the same global batch: loss and gradients
of each framework and detector, then a whole pre-training job's weights.

In the loss tests BatchNorm is put in evaluation mode: without SyncBN (GPU only) its batch
statistics are per process by design, which is the one intended difference between the two
settings. The job test uses MoCo v2, whose BatchNorm groups (``moco_bn_splits``) are the same in
both settings.
"""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ifnd.distributed import average_gradients, gather_rows, shard
from ifnd.falseneg.base import LabelDetector, NoDetector, TrueLabelDetector
from ifnd.falseneg.glofnd import GloFNDDetector
from ifnd.frameworks.moco import MoCo
from ifnd.frameworks.simclr import SimCLR

BATCH, T = 8, 0.2


def simclr():
    return SimCLR("convnet4")


def moco_with_full_queue():
    """MoCo v2 with a queue already holding keys of known samples (so labels reach the queue)."""
    model = MoCo("convnet4", queue_size=32)
    gen = torch.Generator().manual_seed(1)
    model.queue.copy_(torch.nn.functional.normalize(torch.randn(32, model.queue.shape[1], generator=gen), dim=1))
    model.queue_index.copy_(torch.randint(0, 3 * BATCH, (32,), generator=gen))
    return model


def glofnd(labels):
    detector = GloFNDDetector(len(labels), alpha=0.2, lr=0.5, start_epoch=0)
    detector.lam.fill_(0.1)  # low thresholds, so some negatives are removed
    return detector


CASES = {  # framework factory, detector factory, objective
    "simclr": (simclr, lambda labels: NoDetector(), "instance"),
    "supcon": (simclr, lambda labels: TrueLabelDetector(labels), "attraction"),
    "ifnd": (simclr, lambda labels: LabelDetector(torch.stack([labels, labels % 2])), "elimination"),
    "moco-ifnd": (moco_with_full_queue, lambda labels: LabelDetector(labels[None]), "elimination"),
    "glofnd": (simclr, glofnd, "elimination"),
}


def fixed_inputs():
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(BATCH, 3, 16, 16, generator=gen) for _ in range(2)]
    index = torch.arange(BATCH) * 3
    labels = torch.randint(0, 3, (3 * BATCH,), generator=gen)
    return views, index, labels


def loss_and_grads(case: str, part: slice):
    torch.manual_seed(0)
    make_model, make_detector, objective = CASES[case]
    model = make_model().eval()
    views, index, labels = fixed_inputs()
    loss = model.training_loss([v[part] for v in views], index[part], make_detector(labels), objective, T)
    loss.backward()
    average_gradients(model.parameters())
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def worker(rank: int, world: int, init_file: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    results = {}
    for case in CASES:
        loss, grads = loss_and_grads(case, half)
        dist.all_reduce(loss)
        results[case] = {"loss": loss / world, "grads": grads}
    results["rows"] = gather_rows(torch.arange(10)[shard(10)].float()[:, None], 10)
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    """Every case run once under 2 processes (one spawn for all: starting processes is the slow part)."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(2, str(tmp / "init"), str(tmp / "rank0.pt")), nprocs=2, join=True)
    return torch.load(tmp / "rank0.pt")


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_match_one(two_process_results, case):
    two = two_process_results[case]
    loss, grads = loss_and_grads(case, slice(None))
    assert torch.allclose(two["loss"], loss, atol=1e-5)
    assert len(two["grads"]) == len(grads) > 0
    for a, b in zip(two["grads"], grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_sharded_rows_are_gathered_in_order(two_process_results):
    assert torch.equal(two_process_results["rows"][:, 0], torch.arange(10).float())


def test_a_two_process_job_ends_with_the_one_process_weights(tmp_path):
    """The multi-process path of the ``paper`` profile (:func:`reproduce.launchers.run_job`, gloo):
    MoCo v2 with 2 BatchNorm groups, a global batch of 16, 2 epochs (a full queue), once in one
    process and once as 2 processes of 8: the same augmented views (drawn for the global batch),
    the same shuffled groups and the same weights at the end."""
    from conftest import final_weights, moco_job, write_image_folder
    from reproduce.execute import StoreSpec
    from reproduce.launchers import run_job

    task = moco_job(write_image_folder(tmp_path / "data", per_class=4))
    stores = {n: StoreSpec("smoke", str(tmp_path / f"results-{n}"), str(tmp_path / f"runs-{n}")) for n in (1, 2)}
    for processes, store in stores.items():
        status = run_job(task, store, progress=False, threads=1, processes=processes)
        assert status["status"] == "done" and status["trained"], status.get("error")
    one, two = (final_weights(stores[n], task.key) for n in (1, 2))
    assert one.keys() == two.keys() and any(".weight" in name for name in one)
    for name in one:
        assert torch.allclose(one[name].float(), two[name].float(), atol=1e-5, rtol=1e-4), name
