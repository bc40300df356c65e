"""Semi-supervised fine-tuning (Table 2): Appendix C's schedule and one CPU epoch on a tiny subset."""
import json

import pytest
import torch

from eval import fixtures, semisup


def test_appendix_c_schedule():
    one, ten = semisup.appendix_c_schedule(1), semisup.appendix_c_schedule(10)
    assert (one.head_lr, ten.head_lr) == (1.0, 0.1)
    assert (ten.epochs, ten.batch_size, ten.backbone_lr, ten.momentum, ten.weight_decay) == (20, 256, 0.01, 0.9, 5e-4)
    assert (ten.milestones, ten.gamma) == ((12, 16), 0.2)


def test_fine_tuning_updates_the_backbone_and_writes_json(tmp_path):
    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=3, val_per_class=1)
    subset = fixtures.make_subset_file(tmp_path / "1percent.txt", per_class=2)
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "semisup.json"
    record = semisup.main(["--checkpoint", str(path), "--imagenet-root", str(root), "--subset-file", str(subset),
                           "--label-percent", "1", "--epochs", "1", "--batch-size", "3", "--resize-size", "36",
                           "--crop-size", "32", "--workers", "0", "--no-progress", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["protocol"] == "semisup" and written["data"]["num_train"] == 6 and written["data"]["num_val"] == 3
    assert written["settings"]["head_lr"] == 1.0 and written["settings"]["milestones"] == []
    assert 0 <= written["metrics"]["top1"] <= written["metrics"]["top5"] <= 100
    assert record["metrics"] == written["metrics"]


def test_fine_tune_changes_backbone_weights(tmp_path):
    from eval import data
    from eval.checkpoints import load_backbone

    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=2, val_per_class=1)
    backbone, _ = load_backbone(fixtures.save_checkpoint(tmp_path / "ckpt.pt"))
    before = backbone.features[0].weight.clone()
    train = data.image_folder(root, "train", data.random_crop_transform(32))
    val = data.image_folder(root, "val", data.center_crop_transform(36, 32))
    schedule = semisup.FineTuneSchedule(epochs=1, batch_size=3)
    semisup.fine_tune(backbone, train, val, 3, schedule, "cpu", workers=0, progress=False)
    assert not torch.equal(before, backbone.features[0].weight)


def test_unknown_label_fraction_needs_a_head_lr(tmp_path, capsys):
    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=1, val_per_class=1)
    subset = fixtures.make_subset_file(tmp_path / "5percent.txt", per_class=1)
    with pytest.raises(SystemExit):
        semisup.main(["--checkpoint", str(fixtures.save_checkpoint(tmp_path / "c.pt")), "--imagenet-root", str(root),
                      "--subset-file", str(subset), "--label-percent", "5", "--out", str(tmp_path / "r.json")])
    assert "give --head-lr explicitly" in capsys.readouterr().err
