"""The config: one type parser, machine vs run-defining fields, resume checks, CLI errors and help, and
the registries (a new detector is its module + one registry line, shown with a toy detector)."""
import json
import os

import pytest
import torch

from ifnd.config import (MACHINE_FIELDS, ConfigError, TrainConfig, build_parser, check_resumable, config_from_args,
                         defining_fields, differing_fields, parse_field, rescale_schedule)


# -- one type parser ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,value,text,expected", [
    ("lr", "0.1", True, 0.1), ("lr", 1, False, 1.0), ("epochs", "20", True, 20), ("progress", "false", True, False),
    ("cluster_numbers", "10,30,100", True, [10, 30, 100]), ("cluster_numbers", ["5", "15"], True, [5, 15]),
    ("cluster_numbers", "[4, 8]", True, [4, 8]), ("cluster_numbers", [4, 8], False, [4, 8]),
    ("blur_p", "null", True, None), ("blur_p", None, False, None), ("label_map", None, False, None),
    ("swav_crop_min_scale", "0.1 0.05", True, [0.1, 0.05]), ("dataset", "cifar10", False, "cifar10"),
])
def test_parse_field_reads_command_line_text_and_json_values(name, value, text, expected):
    assert parse_field(name, value, text=text) == expected


@pytest.mark.parametrize("name,value,pattern", [
    ("lr", "0.1", r"lr='0.1' \(f.json\): expected a number"),
    ("epochs", "two", r"epochs='two' \(f.json\): expected an integer"),
    ("batch_size", 128.0, r"batch_size=128.0 \(f.json\): expected an integer"),
    ("epochs", True, r"epochs=True \(f.json\): expected an integer"),
    ("cluster_numbers", 10, r"cluster_numbers=10 \(f.json\): expected a list of integers"),
    ("progress", "yes", r"progress='yes' \(f.json\): expected true or false"),
    ("blur_p", "x", r"blur_p='x' \(f.json\): expected a number or null"),
])
def test_parse_field_refuses_wrong_json_types_naming_key_type_and_source(name, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_field(name, value, "f.json")


@pytest.mark.parametrize("content,pattern", [
    ('{"lr": "0.1"}', r"lr='0.1' \(.*config.json\): expected a number"),
    ('{"epochs": "two"}', r"epochs='two' \(.*config.json\): expected an integer"),
    ('{"batch_size": "128"}', r"batch_size='128' \(.*config.json\): expected an integer"),
    ('{"cluster_numbers": 10}', r"cluster_numbers=10 \(.*config.json\): expected a list of integers"),
    ('{"lr": 0.1,', r"config .*config.json is not valid JSON \(.* line 1, column 12\)"),
    ('[1, 2]', r"config.json: a config is a JSON object of fields, not list"),
    ('{"epoch": 3}', r"config.json: unknown config keys \['epoch'\]"),
])
def test_mistyped_config_json_is_one_line_naming_key_type_and_file(tmp_path, capsys, content, pattern):
    from ifnd.train import main

    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig.load(path)
    assert main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and str(path) in err
    assert not (tmp_path / "run").exists()


def test_set_overrides_use_the_same_parser():
    from reproduce.profiles import ProfileError, apply_overrides, get_profile

    profile = apply_overrides(get_profile("mini"), ["cluster_numbers=5,15", "lr=1", "cifar.cifar_stem=false"])
    assert profile.cifar["cluster_numbers"] == [5, 15] and profile.cifar["lr"] == 1.0
    assert profile.cifar["cifar_stem"] is False
    with pytest.raises(ProfileError, match=r"epochs='two' \(--set epochs\): expected an integer"):
        apply_overrides(get_profile("mini"), ["epochs=two"])


# -- machine vs run-defining fields ---------------------------------------------------------------------
def test_machine_fields_are_not_run_defining():
    cfg = TrainConfig()
    assert set(defining_fields(cfg)) == {f for f in cfg.to_dict() if f not in MACHINE_FIELDS}
    other = TrainConfig(threads=3, device="cpu", workers=1, run_dir="elsewhere", progress=False, loss_kernel="fused")
    assert differing_fields(cfg, other) == []
    assert differing_fields(cfg, TrainConfig(epochs=4, lr=0.1)) == ["epochs", "lr"]
    assert 1 <= TrainConfig().workers <= min(8, os.cpu_count() or 1)


def test_resume_with_other_settings_names_the_differing_fields(tmp_path):
    saved = TrainConfig(epochs=2, warmup_epochs=0, threads=1).to_dict()
    check_resumable(saved, TrainConfig(epochs=2, warmup_epochs=0, threads=4, device="cpu"), "r/checkpoints/last.pt")
    with pytest.raises(ConfigError, match=r"other settings \(epochs 2 -> 4\).*--config r/config.json.*cannot be "
                                          r"extended to more epochs.*new --run-dir"):
        check_resumable(saved, TrainConfig(epochs=4, warmup_epochs=0), "r/checkpoints/last.pt")
    with pytest.raises(ConfigError, match=r"other settings \(lr 0.5 -> 0.1, seed 0 -> 1\)"):
        check_resumable(saved, TrainConfig(epochs=2, warmup_epochs=0, lr=0.1, seed=1), "r/checkpoints/last.pt")


# -- command line ---------------------------------------------------------------------------------------
def test_epochs_alone_rescales_the_schedule_and_says_so(capsys):
    cfg, _ = config_from_args(["--mode", "ifnd", "--epochs", "2"])
    assert (cfg.epochs, cfg.warmup_epochs, cfg.refresh_every) == (2, 0, 1)
    assert "warmup_epochs 10 -> 0, refresh_every 20 -> 1" in capsys.readouterr().err
    cfg, _ = config_from_args(["--mode", "ifnd", "--epochs", "100", "--refresh-every", "10"])
    assert (cfg.warmup_epochs, cfg.refresh_every) == (1, 10)
    assert rescale_schedule({"epochs": 200}, {"epochs": 200, "lr_schedule": "step"}, {"epochs"}) == ({"epochs": 200}, [])


def test_cli_errors_name_the_flags(capsys):
    with pytest.raises(ConfigError, match=r"warmup_epochs=5 must be in \[0, epochs=2\) \[--epochs, --warmup-epochs\]"):
        config_from_args(["--epochs", "2", "--warmup-epochs", "5"])
    with pytest.raises(ConfigError, match=r"lr='x' \(--lr\): expected a number"):
        config_from_args(["--lr", "x"])


def test_ifnd_that_never_refreshes_is_refused_not_silently_simclr():
    with pytest.raises(ConfigError, match=r"detector 'ifnd' re-detects every refresh_every=20 epochs, but the run "
                                          r"has epochs=20.*--refresh-every"):
        config_from_args(["--mode", "ifnd", "--epochs", "20", "--refresh-every", "20"])
    with pytest.raises(ConfigError, match="refresh_every=5 epochs, but the run has epochs=5"):
        TrainConfig(detector="pcl", epochs=5, warmup_epochs=0, refresh_every=5).validate()


def test_help_groups_every_flag_with_one_line_and_one_default():
    parser = build_parser()
    titles = [g.title for g in parser._action_groups]
    assert {"start", "data", "model", "method", "optimisation", "running"} <= set(titles)
    assert any(t.startswith("detector glofnd:") for t in titles) and any(t.startswith("framework swav:") for t in titles)
    flags = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "mode", "config", "resume")]
    assert len(flags) == len(TrainConfig().to_dict())
    for action in flags:
        assert action.help.count("(default") == 1 and len(action.help.split("(default")[0].split()) >= 2, action.help
    mode = next(a for a in parser._actions if a.dest == "mode")
    assert "instance = detector=none objective=instance" in mode.help and "simclr = instance" in mode.help


# -- registries: adding a detector ------------------------------------------------------------------------
from ifnd.falseneg.base import DetectorSpec, LabelDetector  # noqa: E402  (the toy detector's module starts here)


class ParityDetector(LabelDetector):
    """A toy label detector: samples of equal index parity are false negatives."""

    name = "parity"

    def __init__(self, num_samples: int):
        super().__init__((torch.arange(num_samples) % 2).view(1, -1))


def parity_problem(cfg) -> str | None:
    return "detector parity needs an even batch_size" if cfg.batch_size % 2 else None


PARITY = DetectorSpec("parity", lambda cfg, true_labels: ParityDetector(true_labels.shape[0]),
                      "toy: equal index parity", check=parity_problem)


def test_a_new_detector_is_its_module_and_one_registry_line(tmp_path, tiny_cifar, monkeypatch):
    from ifnd.falseneg import DETECTORS
    from ifnd.train import Trainer

    monkeypatch.setitem(DETECTORS, PARITY.name, PARITY)  # the registry line
    fields = dict(run_dir=str(tmp_path / "run"), data_root=str(tiny_cifar), arch="convnet4", epochs=2, batch_size=40,
                  warmup_epochs=0, progress=False, threads=1, knn_k=5, detector="parity", objective="elimination")
    with pytest.raises(ConfigError, match="detector parity needs an even batch_size"):
        TrainConfig(**{**fields, "batch_size": 41}).validate()
    with pytest.raises(ConfigError, match="detector 'parity' serves objective elimination or attraction"):
        TrainConfig(**{**fields, "objective": "instance"}).validate()
    assert "parity" in build_parser().format_help()
    cfg, _ = config_from_args(["--detector", "parity", "--objective", "attraction", "--epochs", "2"])
    assert cfg.detector == "parity"
    final = Trainer(TrainConfig(**fields)).run()
    assert 0 <= final["knn_top1"] <= 100
    assert json.loads((tmp_path / "run" / "config.json").read_text())["detector"] == "parity"
