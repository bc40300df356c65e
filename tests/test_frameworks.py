"""MoCo v2's queue, momentum and shuffled BN; every framework x detector trains; CLI selection; DDP."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ifnd import augment as aug
from ifnd.config import ConfigError, TrainConfig, config_from_args
from ifnd.falseneg import build_detector
from ifnd.falseneg.base import NoDetector
from ifnd.falseneg.glofnd import GloFNDDetector
from ifnd.falseneg.incremental import IncrementalDetector
from ifnd.falseneg.pcl import PrototypeDetector
from ifnd.frameworks import build_framework
from ifnd.frameworks.moco import MoCo
from ifnd.frameworks.swav import SwAV, sinkhorn

MEAN, STD = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])


def small_moco(queue_size=8, bn_splits=1, momentum=0.9) -> MoCo:
    torch.manual_seed(0)
    return MoCo("convnet4", queue_size=queue_size, bn_splits=bn_splits, momentum=momentum)


# -- MoCo queue --------------------------------------------------------------------------------
def test_queue_matches_a_list_model_through_wrap_around():
    model = small_moco(queue_size=8)
    history = []  # (index, key) in enqueue order: the list model
    gen = torch.Generator().manual_seed(1)
    for step in range(5):  # 5 batches of 4 into 8 slots: wraps twice
        keys = F.normalize(torch.randn(4, 128, generator=gen), dim=1)
        index = torch.arange(4) + 10 * step
        model.enqueue(keys, index)
        history += list(zip(index.tolist(), keys))
        assert int(model.queue_ptr) == len(history) % 8
        kept = history[-8:]
        filled = model.queue_index >= 0
        assert int(filled.sum()) == len(kept)
        stored = {i: model.queue[slot] for slot, i in enumerate(model.queue_index.tolist()) if i >= 0}
        assert sorted(stored) == sorted(i for i, _ in kept)
        for i, key in kept:
            assert torch.equal(stored[i], key)
        for position, (i, _) in enumerate(history):  # slot of the n-th key is n mod K, if still there
            if position >= len(history) - 8:
                assert int(model.queue_index[position % 8]) == i
    assert model.queue_index.tolist() == [40, 41, 42, 43, 30, 31, 32, 33]


def test_queue_before_filling_marks_empty_slots_invalid():
    model = small_moco(queue_size=8)
    model.enqueue(F.normalize(torch.randn(4, 128), dim=1), torch.tensor([5, 6, 7, 8]))
    views = [torch.randn(4, 3, 16, 16) for _ in range(2)]
    index = torch.tensor([5, 9, 10, 11])
    batch = model.contrastive_batch(views, index, 0.2)
    assert batch.logits.shape == (4, 4 + 8)
    assert torch.equal(batch.candidate_index, torch.tensor([5, 9, 10, 11, 5, 6, 7, 8, -1, -1, -1, -1]))
    positive = batch.positive.to_mask(4, 12)[0]
    assert torch.equal(positive[:, :4], torch.eye(4, dtype=torch.bool)) and not positive[:, 4:].any()
    assert torch.equal(batch.valid[:, :4], torch.eye(4, dtype=torch.bool))  # other keys of the batch: not yet
    assert not batch.valid[:, 8:].any()                                      # never-filled slots
    assert not batch.valid[0, 4] and batch.valid[1, 4]                       # own sample's stale key excluded
    assert batch.anchor_embedding.shape == (4, 128)


def test_queue_size_must_be_a_multiple_of_the_batch():
    model = small_moco(queue_size=8)
    with pytest.raises(ValueError, match="queue size 8 is not a multiple of the batch size 3"):
        model.enqueue(torch.randn(3, 128), torch.arange(3))
    cfg = TrainConfig(framework="moco", queue_size=1000, batch_size=128)
    with pytest.raises(ConfigError, match="queue size 1000 is not a multiple of the batch size 128: .*--queue-size 896"):
        cfg.validate()


def test_momentum_update_closed_form_after_one_step():
    model = small_moco(momentum=0.9)
    with torch.no_grad():
        for p in model.key_encoder.parameters():
            p.add_(torch.randn_like(p))  # make the key encoder differ from the query encoder
    key_before = [p.clone() for p in model.key_encoder.parameters()]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.enqueue(F.normalize(torch.randn(8, 128), dim=1), torch.arange(100, 108))
    views = [torch.randn(8, 3, 16, 16) for _ in range(2)]
    batch = model.contrastive_batch(views, torch.arange(8), 0.2)
    loss = F.cross_entropy(batch.logits, torch.arange(8))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in model.key_encoder.parameters())
    model.after_step()
    for k0, q1, k1 in zip(key_before, model.encoder.parameters(), model.key_encoder.parameters()):
        assert torch.allclose(k1, 0.9 * k0 + 0.1 * q1.detach(), atol=1e-6)
    assert model.queue_index[:8].tolist() == list(range(8))  # the batch's keys were enqueued after the step


def test_shuffled_bn_keys_are_the_unshuffled_keys_of_each_sample():
    model = small_moco(bn_splits=1)
    x = torch.randn(8, 3, 16, 16)
    expected = F.normalize(model.key_encoder(x), dim=1)  # one BN group: the shuffle cannot change a key
    assert torch.allclose(model.keys(x), expected, atol=1e-5)
    model.eval()
    split = MoCo("convnet4", queue_size=8, bn_splits=4).eval()
    split.load_state_dict(model.state_dict())
    assert torch.allclose(split.keys(x), F.normalize(split.key_encoder(x), dim=1), atol=1e-5)


def test_shuffled_bn_groups_use_their_own_statistics():
    model = small_moco(bn_splits=4)
    x = torch.randn(8, 3, 16, 16)
    grouped = model.keys(x)
    whole = F.normalize(model.key_encoder(x), dim=1)
    assert not torch.allclose(grouped, whole, atol=1e-3)  # BN statistics come from 2-sample groups


def test_queue_pointer_and_index_are_checkpointed():
    model = small_moco(queue_size=8)
    model.enqueue(torch.randn(4, 128), torch.arange(4))
    state = model.state_dict()
    assert {"queue", "queue_index", "queue_ptr", "steps"} <= set(state)
    other = small_moco(queue_size=8)
    other.load_state_dict(state)
    assert int(other.queue_ptr) == 4 and other.queue_index[:4].tolist() == [0, 1, 2, 3]


# -- every framework x detector trains ----------------------------------------------------------
CASES = [  # framework, detector, objective
    ("simclr", "none", "instance"), ("simclr", "ifnd", "elimination"), ("simclr", "pcl", "instance"),
    ("simclr", "glofnd", "elimination"), ("simclr", "true_labels", "attraction"),
    ("moco", "none", "instance"), ("moco", "ifnd", "elimination"), ("moco", "pcl", "instance"),
    ("moco", "glofnd", "elimination"), ("moco", "true_labels", "attraction"),
    ("swav", "none", "instance"), ("swav", "ifnd", "elimination"),
]
BATCH, N = 16, 64


def tiny_setup(framework, detector, objective):
    cfg = TrainConfig(framework=framework, detector=detector, objective=objective, arch="convnet4", batch_size=BATCH,
                      epochs=10, warmup_epochs=0, refresh_every=5, cluster_numbers=[4, 8], queue_size=BATCH, moco_bn_splits=2,
                      moco_momentum=0.9, glofnd_start_epoch=0, glofnd_lr=0.2, swav_prototypes=10,
                      swav_queue_size=0, swav_freeze_prototypes_iters=0, kmeans_backend="torch").validate()
    torch.manual_seed(0)
    model, det = build_framework(cfg), build_detector(cfg, torch.arange(N) % 4)
    if detector in ("ifnd", "pcl"):
        det.refresh(10, 10, lambda: torch.randn(N, 128, generator=torch.Generator().manual_seed(3)))
    return cfg, model, det


@pytest.mark.parametrize("framework,detector,objective", CASES)
def test_each_framework_and_detector_trains(framework, detector, objective):
    cfg, model, det = tiny_setup(framework, detector, objective)
    raw = torch.randint(0, 256, (BATCH, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    index = torch.arange(BATCH) * 3
    views = model.views(raw, aug.AugmentConfig(), MEAN, STD, torch.Generator().manual_seed(0))  # fixed batch
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = model.training_loss(views, index, det, cfg.objective, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    first = losses[1] if framework == "moco" else losses[0]  # MoCo's first step has an empty queue (loss 0)
    assert sum(losses[-3:]) / 3 < first, losses
    if detector == "pcl":
        assert isinstance(det, PrototypeDetector) and det.centroids


def test_what_a_framework_or_detector_cannot_do_is_a_one_line_error():
    with pytest.raises(ConfigError, match="framework 'swav' cannot train objective 'attraction'.*--framework "
                                          "simclr / moco"):
        TrainConfig(framework="swav", detector="true_labels", objective="attraction", swav_queue_size=0).validate()
    with pytest.raises(ConfigError, match="adds a loss on the anchors' embeddings"):
        TrainConfig(framework="swav", detector="pcl", swav_queue_size=0).validate()
    with pytest.raises(ConfigError, match="detector 'glofnd' has none: use --detector"):
        TrainConfig(framework="swav", detector="glofnd", objective="elimination", glofnd_start_epoch=0).validate()
    with pytest.raises(ConfigError, match="detector 'none' serves objective instance, not 'elimination'"):
        TrainConfig(detector="none", objective="elimination").validate()
    with pytest.raises(ConfigError, match="detector 'ifnd' serves objective elimination or attraction"):
        TrainConfig(detector="ifnd", objective="instance").validate()
    with pytest.raises(ConfigError, match="detector 'glofnd' does not detect by labels.*--loss-kernel pairs"):
        TrainConfig(detector="glofnd", objective="elimination", glofnd_start_epoch=0, loss_kernel="fused").validate()
    with pytest.raises(ConfigError, match="framework 'swav' has no contrastive logits"):
        TrainConfig(framework="swav", detector="ifnd", objective="elimination", swav_queue_size=0,
                    loss_kernel="fused").validate()


def test_a_detector_that_is_not_label_based_refuses_to_give_labels():
    """No silent "nothing detected" for the fused kernel: only label-based detectors have labels."""
    from ifnd.falseneg import DETECTORS
    from ifnd.falseneg.base import ContrastiveBatch
    from ifnd.pairs import Pairs

    cfg = TrainConfig(detector="glofnd", objective="elimination", glofnd_start_epoch=0)
    det = build_detector(cfg, torch.arange(8) % 2)
    batch = ContrastiveBatch(torch.zeros(4, 4), torch.arange(4), torch.arange(4),
                             Pairs.from_mask(torch.zeros(4, 4, dtype=torch.bool)), torch.ones(4, 4, dtype=torch.bool),
                             0.2)
    assert not DETECTORS["glofnd"].label_based
    with pytest.raises(NotImplementedError, match="not label based"):
        det.false_negative_labels(batch)
    for name, spec in DETECTORS.items():  # every label-based detector serves the fused kernel's labels
        if spec.label_based:
            fields = dict(detector=name, objective=spec.objectives[0], cluster_numbers=[2], refresh_every=1,
                          epochs=2, warmup_epochs=0)
            labels = build_detector(TrainConfig(**fields).validate(), torch.arange(8) % 2).false_negative_labels(batch)
            assert labels[0].shape[1] == 4 and labels[1].shape[1] == 4


# -- selection by name from the CLI ---------------------------------------------------------------
@pytest.mark.parametrize("argv,framework,detector_type,objective", [
    (["--framework", "moco", "--mode", "ifnd"], MoCo, IncrementalDetector, "elimination"),
    (["--framework", "moco", "--mode", "pcl"], MoCo, PrototypeDetector, "instance"),
    (["--mode", "pcl"], None, PrototypeDetector, "instance"),
    (["--framework", "moco", "--mode", "instance"], MoCo, NoDetector, "instance"),
    (["--framework", "moco", "--mode", "simclr"], MoCo, NoDetector, "instance"),
    (["--framework", "moco", "--mode", "glofnd", "--glofnd-start-epoch", "1"], MoCo, GloFNDDetector, "elimination"),
    (["--mode", "glofnd"], None, GloFNDDetector, "elimination"),
    (["--framework", "swav", "--mode", "ifnd"], SwAV, IncrementalDetector, "elimination"),
])
def test_frameworks_and_modes_are_selected_by_name(argv, framework, detector_type, objective):
    cfg, _ = config_from_args(argv + ["--arch", "convnet4", "--batch-size", "128", "--queue-size", "1024"])
    assert cfg.objective == objective
    if "--mode" in argv and argv[argv.index("--mode") + 1] == "pcl":
        assert (cfg.acceptance_scheme, cfg.acceptance_step_at, cfg.confidence) == ("step", 0.1, "pcl")
    det = build_detector(cfg, torch.arange(1000) % 10)
    assert type(det) is detector_type
    if framework is not None:
        assert type(build_framework(cfg)) is framework


def test_blur_follows_the_framework_recipe():
    assert build_framework(TrainConfig(framework="moco", arch="convnet4", image_size=224)).blur_p == 0.5
    assert build_framework(TrainConfig(framework="moco", arch="convnet4")).blur_p == 0.0  # CIFAR size
    assert build_framework(TrainConfig(arch="convnet4", image_size=224)).blur_p == 0.0    # SimCLR: unchanged
    assert build_framework(TrainConfig(arch="convnet4", blur_p=0.3)).blur_p == 0.3


def test_blur_off_keeps_the_simclr_views_and_blur_smooths():
    raw = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = aug.augment(raw, aug.AugmentConfig(), MEAN, STD, torch.Generator().manual_seed(5))
    again = aug.augment(raw, aug.AugmentConfig(blur_p=0.0), MEAN, STD, torch.Generator().manual_seed(5))
    assert torch.equal(plain, again)
    cfg = aug.AugmentConfig(scale=(1.0, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=1.0, blur_sigma=(14.0, 14.0))
    blurred = aug.augment(raw, cfg, MEAN, STD, torch.Generator().manual_seed(5))
    sharp = aug.augment(raw, aug.AugmentConfig(scale=(1.0, 1.0), jitter_p=0.0, gray_p=0.0), MEAN, STD,
                        torch.Generator().manual_seed(5))
    assert blurred.std(dim=(2, 3)).mean() < 0.7 * sharp.std(dim=(2, 3)).mean()
    flat = torch.full((2, 32, 32, 3), 128, dtype=torch.uint8)
    assert torch.allclose(aug.augment(flat, cfg, MEAN, STD, torch.Generator()),
                          aug.augment(flat, aug.AugmentConfig(scale=(1.0, 1.0), jitter_p=0.0, gray_p=0.0), MEAN, STD,
                                      torch.Generator()), atol=1e-5)



@pytest.mark.parametrize("blur_p", [0.0, 0.5])
def test_each_shard_of_a_batch_gets_the_whole_batch_views(blur_p):
    """A process holding rows 4:8 of a global batch of 12 sees exactly those rows of the views one
    process makes of the whole batch (what lets a 2-process job reproduce a 1-process one)."""
    raw = torch.randint(0, 256, (12, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = aug.AugmentConfig(blur_p=blur_p)
    whole = aug.augment(raw, cfg, MEAN, STD, torch.Generator().manual_seed(5))
    shard = aug.augment(raw[4:8], cfg, MEAN, STD, torch.Generator().manual_seed(5), rows=(4, 12))
    assert torch.allclose(shard, whole[4:8], atol=1e-6)
    assert not torch.allclose(aug.augment(raw[4:8], cfg, MEAN, STD, torch.Generator().manual_seed(5)), whole[4:8])
    with pytest.raises(ValueError, match="do not lie in a batch of 12"):
        aug.augment(raw[4:8], cfg, MEAN, STD, torch.Generator(), rows=(10, 12))


def test_folder_views_depend_on_the_epoch_seed_and_the_sample_only(tmp_path):
    """FolderSource (ImageNet layout): a sample's views are the same whether its batch is split in
    two or not (how processes split a global batch), and differ between epochs' seeds."""
    from conftest import write_image_folder
    from ifnd.sources import FolderSource

    root = write_image_folder(tmp_path / "folder", classes=["a", "b"], per_class=4, splits=("train", "val"))
    source = FolderSource(root, [aug.AugmentConfig(size=16)] * 2, eval_size=16, device=torch.device("cpu"),
                          workers=0)

    def views(steps, seed):
        out = {}
        for index, (v1, v2) in source.epoch(iter(steps), None, torch.Generator().manual_seed(seed)):
            out.update({int(i): (a, b) for i, a, b in zip(index, v1, v2)})
        return out

    order = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])
    whole, halves = views([order], 1), views(list(order.split(4)), 1)
    assert all(torch.equal(whole[i][0], halves[i][0]) and torch.equal(whole[i][1], halves[i][1]) for i in whole)
    other = views([order], 2)
    assert not all(torch.equal(whole[i][0], other[i][0]) for i in whole)


# -- two processes ---------------------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, init_file: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MoCo("convnet4", queue_size=8, bn_splits=2).eval()  # eval: BN by running stats, comparable
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    mine = slice(rank * 4, rank * 4 + 4)
    keys = model.keys(x[mine])
    model.train()
    batch = model.contrastive_batch([x[mine], x[mine]], torch.arange(8)[mine], 0.2)
    model.after_step()
    # GloFND: each process updates its own anchors; every process ends with all updates.
    det = GloFNDDetector(8, alpha=0.25, lr=0.1, start_epoch=0)
    sims = torch.linspace(-1, 1, 8 * 6).view(8, 6)
    det.update(sims[mine], torch.ones(4, 6, dtype=torch.bool), torch.arange(8)[mine])
    scores = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    plan = sinkhorn(scores[mine], 0.05, 3)
    result = {"keys": keys, "queue_index": model.queue_index.clone(), "queue": model.queue.clone(),
              "lam": det.lam.clone(), "plan": plan, "anchor_embedding": batch.anchor_embedding.detach()}
    torch.save(result, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_processes_shuffle_enqueue_and_sync_like_one(tmp_path):
    out = str(tmp_path / "rank")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    r0, r1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    torch.manual_seed(0)
    model = MoCo("convnet4", queue_size=8, bn_splits=2).eval()
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected_keys = F.normalize(model.key_encoder(x), dim=1)
    assert torch.allclose(torch.cat([r0["keys"], r1["keys"]]), expected_keys, atol=1e-5)  # unshuffled per rank
    assert torch.equal(r0["queue_index"], torch.arange(8)) and torch.equal(r1["queue_index"], torch.arange(8))
    assert torch.equal(r0["queue"], r1["queue"])
    det = GloFNDDetector(8, alpha=0.25, lr=0.1, start_epoch=0)
    det.update(torch.linspace(-1, 1, 48).view(8, 6), torch.ones(8, 6, dtype=torch.bool), torch.arange(8))
    assert torch.equal(r0["lam"], det.lam) and torch.equal(r1["lam"], det.lam)
    plan = sinkhorn(torch.randn(8, 5, generator=torch.Generator().manual_seed(2)), 0.05, 3)
    assert torch.allclose(torch.cat([r0["plan"], r1["plan"]]), plan, atol=1e-6)
