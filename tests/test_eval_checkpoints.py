"""Reading backbones out of our trainer's, MoCo/PCL's and torchvision's checkpoints; error messages."""
import pytest
import torch

from eval.checkpoints import CheckpointError, infer_architecture, load_backbone
from eval.fixtures import save_checkpoint
from ifnd.models import Encoder, build_backbone


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_our_format_gives_the_encoders_backbone(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", "convnet4", layout="ifnd", seed=3)
    torch.manual_seed(3)
    expected = Encoder("convnet4").backbone
    backbone, info = load_backbone(path)
    assert _same_weights(backbone, expected)
    assert not backbone.training
    assert (info.arch, info.cifar_stem, info.source_format, info.epoch) == ("convnet4", False, "ifnd", 1)
    assert len(info.sha256) == 64 and info.config["dataset"] == "cifar10"


def test_ddp_prefixed_our_format_is_accepted(tmp_path):
    encoder = Encoder("resnet18", cifar_stem=True)
    state = {f"module.encoder.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"config": {"arch": "resnet18", "cifar_stem": True}, "epoch": 5, "model": state}, tmp_path / "c.pt")
    backbone, info = load_backbone(tmp_path / "c.pt", arch="resnet18", cifar_stem=True)
    assert _same_weights(backbone, encoder.backbone) and info.epoch == 5


def test_official_moco_layout_drops_fc_and_the_key_encoder(tmp_path):
    path = save_checkpoint(tmp_path / "moco_v2.pth.tar", "resnet18", cifar_stem=True, layout="moco", seed=1)
    backbone, info = load_backbone(path)
    assert (info.arch, info.cifar_stem, info.source_format, info.epoch) == ("resnet18", True, "moco", 200)
    raw = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(backbone.state_dict()["layer4.1.bn2.running_var"], raw["module.encoder_q.layer4.1.bn2.running_var"])
    assert not any(k.startswith("fc.") for k in backbone.state_dict())


def test_torchvision_state_dict(tmp_path):
    net = build_backbone("resnet18")
    state = dict(net.state_dict(), **{"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "supervised.pth")
    backbone, info = load_backbone(tmp_path / "supervised.pth")
    assert _same_weights(backbone, net) and info.source_format == "torchvision" and not info.cifar_stem


def test_architecture_is_read_from_the_shapes():
    assert infer_architecture(build_backbone("resnet50").state_dict()) == ("resnet50", False)
    assert infer_architecture(build_backbone("resnet18", cifar_stem=True).state_dict()) == ("resnet18", True)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere\.pt does not exist"):
        load_backbone(tmp_path / "nowhere.pt")


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*broken\.pt"):
        load_backbone(tmp_path / "broken.pt")


def test_other_architecture_is_refused_with_a_readable_message(tmp_path):
    path = save_checkpoint(tmp_path / "r18.pt", "resnet18", cifar_stem=True)
    with pytest.raises(CheckpointError, match=r"r18\.pt holds a resnet18 backbone but resnet50 was asked for"):
        load_backbone(path, arch="resnet50")
    with pytest.raises(CheckpointError, match=r"CIFAR stem .* but the ImageNet stem"):
        load_backbone(path, cifar_stem=False)


def test_config_that_contradicts_the_weights_is_refused(tmp_path):
    encoder = Encoder("resnet18")
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"config": {"arch": "resnet50", "cifar_stem": False}, "model": state}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="holds a resnet18 backbone but resnet50 was declared in the checkpoint"):
        load_backbone(tmp_path / "odd.pt")


def test_wrong_shapes_are_listed(tmp_path):
    encoder = Encoder("convnet4")
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["encoder.backbone.features.4.weight"] = torch.zeros(64, 32, 5, 5)
    torch.save({"config": {"arch": "convnet4"}, "model": state}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"features\.4\.weight \(64, 32, 5, 5\) vs \(64, 32, 3, 3\)"):
        load_backbone(tmp_path / "damaged.pt")


def test_cli_reports_the_architecture_mismatch_without_traceback(tmp_path, capsys):
    from eval import linear
    from eval.fixtures import make_imagenet_folders

    path = save_checkpoint(tmp_path / "r18.pt", "resnet18", cifar_stem=True)
    root = make_imagenet_folders(tmp_path / "imagenet", train_per_class=1, val_per_class=1)
    with pytest.raises(SystemExit) as exit_info:
        linear.main(["--checkpoint", str(path), "--arch", "resnet50", "--data-root", str(root),
                     "--out", str(tmp_path / "r.json"), "--no-cache", "--workers", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds a resnet18 backbone but resnet50 was asked for" in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_foreign_objects_need_explicit_trust(tmp_path):
    import argparse

    net = build_backbone("convnet4")
    torch.save({"state_dict": net.state_dict(), "args": argparse.Namespace(lr=0.03)}, tmp_path / "third_party.pt")
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*--trust-checkpoint"):
        load_backbone(tmp_path / "third_party.pt")
    backbone, _ = load_backbone(tmp_path / "third_party.pt", trusted=True)
    assert _same_weights(backbone, net)
