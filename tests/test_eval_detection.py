"""COCO transfer (Table 3): weight conversion to detectron2 names, the config, the launcher without detectron2."""
import json
import pickle

import numpy as np
import pytest
import torch

from eval.checkpoints import CheckpointError
from eval.detection import config as d2config
from eval.detection import convert, launch
from eval.fixtures import save_checkpoint


def detectron2_r50_backbone_shapes() -> dict[str, tuple]:
    """detectron2's ResNet-50 parameter names and shapes, from its documented structure.

    ``stem.conv1`` (7x7, 64) with ``.norm``; stages res2..res5 of 3, 4, 6, 3 BottleneckBlocks with
    bottleneck widths 64, 128, 256, 512 and outputs 4x that; every block has conv1 (1x1), conv2 (3x3),
    conv3 (1x1), each with ``.norm``; block 0 of each stage has a 1x1 ``shortcut`` with ``.norm``.
    """
    shapes = {"stem.conv1.weight": (64, 3, 7, 7)}
    norm = lambda prefix, channels: {f"{prefix}.norm.{attr}": (channels,)
                                     for attr in ("weight", "bias", "running_mean", "running_var")}
    shapes |= norm("stem.conv1", 64)
    in_channels = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=2):
        out_channels = 4 * width
        for block in range(blocks):
            prefix = f"res{stage}.{block}"
            block_in = in_channels if block == 0 else out_channels
            if block == 0:
                shapes[f"{prefix}.shortcut.weight"] = (out_channels, block_in, 1, 1)
                shapes |= norm(f"{prefix}.shortcut", out_channels)
            for conv, shape in (("conv1", (width, block_in, 1, 1)), ("conv2", (width, width, 3, 3)),
                                ("conv3", (out_channels, width, 1, 1))):
                shapes[f"{prefix}.{conv}.weight"] = shape
                shapes |= norm(f"{prefix}.{conv}", shape[0])
        in_channels = out_channels
    return shapes


@pytest.fixture(scope="module")
def r50_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("r50") / "r50.pt", "resnet50", cifar_stem=False, seed=0)


def test_converted_names_and_shapes_are_detectron2s(r50_checkpoint, tmp_path):
    output = tmp_path / "backbone_d2.pkl"
    convert.main(["--checkpoint", str(r50_checkpoint), "--output", str(output)])  # the CLI
    with open(output, "rb") as fh:
        converted = pickle.load(fh)
    assert set(converted) == {"model", "__author__", "matching_heuristics"}
    assert converted["__author__"] == "ifnd-repro" and converted["matching_heuristics"] is True
    expected = detectron2_r50_backbone_shapes()
    assert {k: v.shape for k, v in converted["model"].items()} == expected
    assert len(expected) == 265 and expected["res5.2.conv3.norm.running_var"] == (2048,)
    assert all(isinstance(v, np.ndarray) for v in converted["model"].values())
    source = torch.load(r50_checkpoint, weights_only=True)["model"]
    for ours, theirs in (("conv1.weight", "stem.conv1.weight"), ("bn1.running_mean", "stem.conv1.norm.running_mean"),
                         ("layer2.0.downsample.1.weight", "res3.0.shortcut.norm.weight"),
                         ("layer4.2.bn3.bias", "res5.2.conv3.norm.bias")):
        np.testing.assert_array_equal(converted["model"][theirs], source[f"encoder.backbone.{ours}"].numpy())


def test_conversion_needs_a_resnet50_with_imagenet_stem(tmp_path):
    with pytest.raises(CheckpointError, match="holds a resnet18 backbone but resnet50 was asked for"):
        convert.convert_checkpoint(save_checkpoint(tmp_path / "r18.pt", "resnet18"), tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()
    with pytest.raises(CheckpointError, match="no detectron2 name for backbone parameter 'fc.weight'"):
        convert.detectron2_name("fc.weight")


def test_config_has_moco_r50_c4_coco_2x_values(tmp_path):
    yaml = pytest.importorskip("yaml")
    d2config.main(["--weights", "/w/backbone_d2.pkl", "--output", str(tmp_path / "c.yaml"), "--output-dir", "/w/output"])
    cfg = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert (tmp_path / "c.yaml").read_text().startswith("# Mask R-CNN R50-C4, COCO 2x")
    model = cfg["MODEL"]
    assert model["WEIGHTS"] == "/w/backbone_d2.pkl" and model["MASK_ON"] is True
    assert model["PIXEL_MEAN"] == [123.675, 116.28, 103.53] and model["PIXEL_STD"] == [58.395, 57.12, 57.375]
    assert model["RESNETS"] == {"DEPTH": 50, "NORM": "SyncBN", "STRIDE_IN_1X1": False}
    assert model["BACKBONE"]["FREEZE_AT"] == 0 and model["ROI_HEADS"]["NAME"] == "Res5ROIHeadsExtraNorm"
    assert model["RPN"] == {"PRE_NMS_TOPK_TEST": 6000, "POST_NMS_TOPK_TEST": 1000}
    assert cfg["INPUT"]["FORMAT"] == "RGB" and cfg["INPUT"]["MIN_SIZE_TEST"] == 800
    # tuples are written in Python syntax, as detectron2's YAMLs; yacs evaluates them
    assert cfg["INPUT"]["MIN_SIZE_TRAIN"] == "(640, 672, 704, 736, 768, 800)"
    assert cfg["DATASETS"] == {"TRAIN": '("coco_2017_train",)', "TEST": '("coco_2017_val",)'}
    assert cfg["SOLVER"] == {"IMS_PER_BATCH": 16, "BASE_LR": 0.02, "STEPS": "(120000, 160000)", "MAX_ITER": 180000}
    assert cfg["TEST"]["PRECISE_BN"]["ENABLED"] is True and cfg["OUTPUT_DIR"] == "/w/output"
    assert "NORM: \"naiveSyncBN\"" in d2config.render_yaml(d2config.mask_rcnn_c4_2x("w.pkl", norm="naiveSyncBN"))


@pytest.mark.skipif(launch.detectron2_available(), reason="detectron2 is installed here")
def test_launcher_without_detectron2_explains_the_install(r50_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--checkpoint", str(r50_checkpoint), "--work-dir", str(tmp_path / "det"),
                     "--out", str(tmp_path / "table3.json"), "--num-gpus", "8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'" in err
    assert "-m eval.detection.train_net --config-file" in err and "--num-gpus 8" in err
    assert (tmp_path / "det" / "backbone_d2.pkl").exists() and (tmp_path / "det" / "coco_R_50_C4_2x.yaml").exists()
    assert not (tmp_path / "table3.json").exists()


def test_metrics_are_read_from_detectron2_output(r50_checkpoint, tmp_path):
    output = tmp_path / "det" / "output"
    output.mkdir(parents=True)
    final = {"iteration": 179999, "bbox/AP": 41.8, "bbox/AP50": 61.2, "bbox/AP75": 44.5, "bbox/APs": 20.0,
             "segm/AP": 36.1, "segm/AP50": 57.6, "segm/AP75": 38.5}
    lines = [json.dumps({"iteration": 19, "total_loss": 2.0}), json.dumps(final), '{"iteration": 18']
    (output / "metrics.json").write_text("\n".join(lines) + "\n")
    launch.main(["--checkpoint", str(r50_checkpoint), "--work-dir", str(tmp_path / "det"), "--collect-only",
                 "--out", str(tmp_path / "table3.json")])
    metrics = json.loads((tmp_path / "table3.json").read_text())["metrics"]
    assert metrics == {"APbb": 41.8, "APbb50": 61.2, "APbb75": 44.5, "APmk": 36.1, "APmk50": 57.6, "APmk75": 38.5,
                       "iteration": 179999}
    (output / "metrics.json").write_text(json.dumps({"iteration": 5000, "total_loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="holds no COCO evaluation \\(last iteration 5000\\)"):
        launch.read_detectron2_metrics(output)


def test_dry_run_prints_the_training_command(r50_checkpoint, tmp_path, capsys):
    launch.main(["--checkpoint", str(r50_checkpoint), "--work-dir", str(tmp_path / "det"), "--num-gpus", "2",
                 "--dry-run", "--out", str(tmp_path / "t.json"), "SOLVER.IMS_PER_BATCH", "4"])
    command = capsys.readouterr().out.strip()
    assert "-m eval.detection.train_net --config-file" in command and command.endswith(
        f"--num-gpus 2 OUTPUT_DIR {tmp_path / 'det' / 'output'} SOLVER.IMS_PER_BATCH 4")
    assert not (tmp_path / "t.json").exists()
