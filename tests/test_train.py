"""The trainer end to end on a tiny on-disk dataset: outputs, resume, bad configs."""
import json

import pytest
import torch

from ifnd.config import ConfigError, TrainConfig, config_from_args
from ifnd.data import DataError
from ifnd.train import Trainer, main


def tiny_config(root, run_dir, **overrides) -> TrainConfig:
    base = dict(run_dir=str(run_dir), data_root=str(root), arch="convnet4", epochs=3, batch_size=40, lr=0.1,
                warmup_epochs=1, refresh_every=1, cluster_numbers=[5, 10], progress=False, threads=1, knn_k=10)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("mode", ["simclr", "supcon", "ifnd"])
def test_each_mode_trains_and_writes_its_run_directory(tiny_cifar, tmp_path, mode):
    argv = ["--mode", mode, "--run-dir", str(tmp_path / mode), "--data-root", str(tiny_cifar), "--arch", "convnet4",
            "--epochs", "2", "--batch-size", "40", "--warmup-epochs", "0", "--refresh-every", "1",
            "--cluster-numbers", "5", "10", "--no-progress", "--knn-k", "10", "--threads", "1"]
    assert main(argv) == 0
    run = tmp_path / mode
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["loss"] > 0 for r in records)
    assert 0 <= json.loads((run / "final.json").read_text())["knn_top1"] <= 100
    assert json.loads((run / "config.json").read_text())["detector"] == {"simclr": "none", "supcon": "true_labels",
                                                                        "ifnd": "ifnd"}[mode]
    if mode == "ifnd":
        assert records[0]["acceptance_rate"] == pytest.approx(0.5)
        assert 0 <= records[0]["mtpr_k5"] <= 100 and 0 <= records[0]["mtnr_k10"] <= 100


class Killed(Exception):
    pass


@pytest.mark.parametrize("cluster_features", ["extract", "bank"])
def test_resume_reproduces_an_uninterrupted_run(tiny_cifar, tmp_path, monkeypatch, cluster_features):
    ifnd = dict(detector="ifnd", objective="elimination", cluster_features=cluster_features)
    full = Trainer(tiny_config(tiny_cifar, tmp_path / "full", **ifnd))
    full.run()

    original = Trainer.train_epoch

    def dies_in_epoch_three(self):
        if self.epoch == 2:
            raise Killed
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", dies_in_epoch_three)
    with pytest.raises(Killed):
        Trainer(tiny_config(tiny_cifar, tmp_path / "cut", **ifnd)).run()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = Trainer(tiny_config(tiny_cifar, tmp_path / "cut", **ifnd))
    resumed.run(resume=True)

    assert resumed.epoch == 3
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(full.detector.level_labels(), resumed.detector.level_labels())
    lines = lambda run: [json.loads(l) for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    timing = ("epoch_seconds", "images_per_second")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]
    assert strip(lines("full")) == strip(lines("cut"))


@pytest.mark.parametrize("batch_size,first_from_bank", [(40, True), (50, False)])
def test_feature_bank_replaces_the_extraction_pass(tiny_cifar, tmp_path, monkeypatch, batch_size, first_from_bank):
    """120 images: batch 40 embeds every sample in epoch 1; batch 50 drops 20 an epoch: extract until all are seen."""
    extracted = []
    original = Trainer.features
    monkeypatch.setattr(Trainer, "features", lambda self, split, which: extracted.append((split, which))
                        or original(self, split, which))
    trainer = Trainer(tiny_config(tiny_cifar, tmp_path / "r", detector="ifnd", objective="elimination",
                                  cluster_features="bank", batch_size=batch_size))
    trainer.run()
    records = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    from_bank = [r["features_from_bank"] for r in records if "features_from_bank" in r]
    assert from_bank[0] == first_from_bank and (all(from_bank) or not first_from_bank)
    assert extracted.count(("train", "projection")) == from_bank.count(False)  # extraction only while incomplete
    bank = trainer.bank.features.float()[trainer.bank.filled]
    assert torch.allclose(bank.norm(dim=1), torch.ones(len(bank)), atol=1e-2)


def test_resume_refuses_a_different_config(tiny_cifar, tmp_path):
    Trainer(tiny_config(tiny_cifar, tmp_path / "r", epochs=1, warmup_epochs=0)).run()
    with pytest.raises(ConfigError, match=r"other settings \(lr 0.1 -> 0.2\)"):
        Trainer(tiny_config(tiny_cifar, tmp_path / "r", epochs=1, warmup_epochs=0, lr=0.2)).run(resume=True)


def test_label_map_relabels_supcon_targets(tiny_cifar, tmp_path):
    cfg = tiny_config(tiny_cifar, tmp_path / "r", detector="true_labels", objective="attraction",
                      label_map=[0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    trainer = Trainer(cfg)
    assert set(trainer.detector.level_labels()[0].tolist()) == {0, 1}


@pytest.mark.parametrize("overrides,message", [
    ({"detector": "ifnd", "objective": "instance"}, "detector 'ifnd' serves objective elimination or attraction"),
    ({"acceptance_final": 1.5, "detector": "ifnd", "objective": "elimination"}, "outside \\[0, 1\\]"),
    ({"arch": "vit"}, "unknown arch"),
    ({"batch_size": 1}, "at least 2"),
    ({"warmup_epochs": 5, "epochs": 3}, "warmup_epochs"),
    ({"cluster_features": "bank", "cluster_on": "backbone", "detector": "ifnd", "objective": "elimination",
      "refresh_every": 1, "epochs": 2, "warmup_epochs": 0}, "needs cluster_on='projection'"),
])
def test_bad_configs_fail_early(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, tmp_path / "r", **overrides).validate()


def test_missing_data_root_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="expected .*train/<class>"):
        Trainer(tiny_config(tmp_path / "nowhere", tmp_path / "r"))


def test_batch_larger_than_data_fails_clearly(tiny_cifar, tmp_path):
    with pytest.raises(ConfigError, match="exceeds the 120 training samples"):
        Trainer(tiny_config(tiny_cifar, tmp_path / "r", batch_size=500))


def test_cli_mode_presets_and_overrides():
    cfg, resume = config_from_args(["--mode", "ifnd", "--objective", "attraction", "--resume"])
    assert (cfg.detector, cfg.objective, resume) == ("ifnd", "attraction", True)


def test_streamed_image_folder_trains(tmp_path):
    from conftest import write_image_folder

    root = write_image_folder(tmp_path / "imagenet", classes=["n01440764", "n01443537", "n01484850"],
                              per_class=16, size=40, splits=("train", "val"))
    cfg = tiny_config(root, tmp_path / "r", dataset="folder", workers=0, batch_size=16, epochs=2,
                      detector="ifnd", objective="elimination", cluster_numbers=[3])
    final = Trainer(cfg).run()
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and "mtpr_k3" in records[0]
    assert 0 <= final["knn_top1"] <= 100


def test_streamed_folder_without_val_split_names_the_layout(tmp_path):
    from conftest import write_image_folder

    root = write_image_folder(tmp_path / "imagenet", classes=["n01440764"], per_class=2, splits=("train",))
    with pytest.raises(DataError, match="val/<class>/<image>"):
        Trainer(tiny_config(root, tmp_path / "r", dataset="folder", workers=0))
