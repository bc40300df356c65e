"""The harness's pieces without training: profiles, run identity, store, claims, budget, CLI errors."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from ifnd.config import TrainConfig
from reproduce import budget
from reproduce.cli import main
from reproduce.paths import DataPaths
from reproduce.profiles import PROFILES, ProfileError, apply_overrides, get_profile
from reproduce.render import Value, claim_verdict
from reproduce.runs import EvalRun, TrainRun
from reproduce.specs import SPECS, TABLES, resolve_targets
from reproduce.specs.base import Context, method, pretrain
from reproduce.store import RunBusy, Store

CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def ctx_for(profile, tmp_path, paths=None) -> Context:
    return Context(profile, paths or DataPaths({}, "test"), Store(profile.name, tmp_path / "results", tmp_path / "runs"))


# -- profiles ------------------------------------------------------------------------------------------
def test_overrides_rescale_schedule_and_reject_unknown_keys():
    cifar = get_profile("cifar")
    short = apply_overrides(cifar, ["epochs=20"], seeds=3)
    assert short.cifar["epochs"] == 20 and short.cifar["refresh_every"] == 1 and short.cifar["warmup_epochs"] == 0
    assert short.seeds == 3 and short.seeds_for("table7") == 3 and short.overrides == ('epochs=20', 'seeds=3')
    both = apply_overrides(cifar, ["epochs=100", "refresh_every=7", "probe.epochs=3", "cluster_numbers=5,15"])
    assert both.cifar["refresh_every"] == 7 and both.cifar["warmup_epochs"] == 1 and both.probe["epochs"] == 3
    assert both.cifar["cluster_numbers"] == [5, 15] and both.imagenet["cluster_numbers"] == [5, 15]
    assert apply_overrides(cifar, ["imagenet.lr=0.06"]).cifar["lr"] == 0.5
    with pytest.raises(ProfileError, match="unknown setting"):
        apply_overrides(cifar, ["epoch=3"])
    with pytest.raises(ProfileError, match="key=value"):
        apply_overrides(cifar, ["epochs"])
    with pytest.raises(ProfileError, match="set by the harness"):
        apply_overrides(cifar, ["run_dir=/x"])
    with pytest.raises(ProfileError, match="bad cifar config"):
        apply_overrides(cifar, ["batch_size=1"])
    with pytest.raises(ProfileError, match="unknown profile 'tiny'"):
        get_profile("tiny")


def test_mini_profile_keeps_table7_to_one_seed_unless_asked():
    mini = get_profile("mini")
    assert mini.seeds_for("table5") == 2 and mini.seeds_for("table7") == 1
    assert apply_overrides(mini, [], seeds=2).seeds_for("table7") == 2
    assert mini.snapshot_epochs(mini.cifar["epochs"]) == (2, 4, 7)  # 25%, 50%, 100% of 7 epochs


# -- run identity ----------------------------------------------------------------------------------------
def test_run_hash_ignores_machine_fields_and_defaults_but_not_settings(tmp_path):
    profile = get_profile("smoke")
    (tmp_path / "train").mkdir()  # a CIFAR-10 layout's top level (the planner checks it; nothing is read)
    ctx = ctx_for(profile, tmp_path, DataPaths({"cifar10": str(tmp_path)}, "test"))
    simclr = pretrain(ctx, method(ctx, "simclr"), 0)
    assert isinstance(simclr, TrainRun)
    moved = TrainRun({**simclr.config, "data_root": "/elsewhere", "progress": False, "loss_kernel": "fused"},
                     simclr.explicit, simclr.snapshots)
    assert moved.key == simclr.key
    # A method spelling out a default value is the same run (Table 7's IFND row is Table 5's IFND run).
    ifnd = pretrain(ctx, method(ctx, "ifnd"), 0)
    spelled = pretrain(ctx, {**method(ctx, "ifnd"), "acceptance_scheme": "linear", "queue_size": 65536}, 0)
    assert spelled.key == ifnd.key
    assert pretrain(ctx, method(ctx, "ifnd"), 1).key != ifnd.key
    assert pretrain(ctx, method(ctx, "simclr"), 0, label_map=list(range(10))).key == simclr.key  # identity map
    assert pretrain(ctx, method(ctx, "supcon"), 0, label_map=[0] * 5 + [1] * 5).key != \
        pretrain(ctx, method(ctx, "supcon"), 0).key
    # A field added to TrainConfig later (with a default) does not change existing hashes.
    assert "some_future_field" not in simclr.identity()["config"]
    probe_a = EvalRun("probe", simclr, {"label_map": None}, machine={"args": ["--data-root", "/a"]})
    probe_b = EvalRun("probe", simclr, {"label_map": None}, machine={"args": ["--data-root", "/b"]})
    assert probe_a.key == probe_b.key != EvalRun("probe", ifnd, {"label_map": None}).key
    config = simclr.train_config(str(tmp_path / "r"), progress=False)
    assert isinstance(config, TrainConfig) and config.validate()


def test_missing_data_is_a_reason_not_an_error(tmp_path):
    profile = get_profile("cifar")
    ctx = ctx_for(profile, tmp_path, DataPaths({"cifar100": str(tmp_path / "nope")}, "test"))
    run = pretrain(ctx, method(ctx, "simclr"), 0, "cifar100")
    assert "CIFAR-100 not found at" in run.reason and "IFND_CIFAR100" in run.reason
    grid = SPECS["table6"].build(ctx)
    assert grid.runs() == []
    grid = SPECS["table1"].build(ctx)
    reasons = {cell.ours.reason for cell in grid.cells.values() if hasattr(cell.ours, "reason")}
    assert any("ImageNet not" in r for r in reasons)


# -- store -------------------------------------------------------------------------------------------------
def _writer(args):
    root, worker = args
    store = Store("smoke", root / "results", root / "runs")
    for i in range(40):
        key = f"k{i % 25:03d}"  # the writers overlap on most keys
        store.put(key, {"kind": "probe", "result": {"top1": float(i), "worker": worker}})
    return worker


def test_concurrent_writers_lose_nothing(tmp_path):
    with mp.get_context("fork").Pool(4) as pool:  # fork: the writers only write files
        assert sorted(pool.map(_writer, [(tmp_path, w) for w in range(4)])) == [0, 1, 2, 3]
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    assert store.keys() == [f"k{i:03d}" for i in range(25)]
    for key in store.keys():
        assert json.loads(store.record_path(key).read_text())["result"]["worker"] in range(4)
    assert not list((tmp_path / "results" / "smoke" / "store").glob(".*tmp"))


def test_run_lock_is_exclusive(tmp_path):
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    with store.claim("abc"):
        assert store.busy("abc")
        other = Store("smoke", tmp_path / "results", tmp_path / "runs")
        with pytest.raises(RunBusy, match="another process"):
            with other.claim("abc"):
                pass
    assert not store.busy("abc")


# -- claims and rendering ------------------------------------------------------------------------------------
def test_claims_within_the_seed_spread_are_called_unresolved():
    a, b = Value([70.0, 71.0]), Value([69.9, 71.2])
    diff, spread, verdict = claim_verdict(a, b, paper=2.5)
    assert verdict.startswith("within seed spread") and spread > abs(diff)
    diff, spread, verdict = claim_verdict(Value([74.0, 74.2]), Value([71.5, 71.4]), paper=2.5)
    assert verdict == "holds" and diff == pytest.approx(2.65)
    assert claim_verdict(Value([70.0, 70.1]), Value([72.0, 72.2]), paper=2.5)[2] == "reversed"
    assert "spread unknown" in claim_verdict(Value([70.0]), Value([69.0]), paper=1.0)[2]
    assert claim_verdict(Value(status="not run"), Value([1.0]), 1.0)[2] == "not run"


# -- targets, CLI ------------------------------------------------------------------------------------------------
def test_target_names_and_groups():
    assert resolve_targets(["all"]) == TABLES + ["figure1", "figure3", "figure4", "figure6", "figure7"]
    assert resolve_targets(["ablation-pcl", "table7", "fig1"]) == ["table7", "figure1"]
    assert len(TABLES) == 8


def test_cli_names_unknown_targets_and_profiles(capsys):
    assert main(["table9"]) == 2
    assert "unknown table or figure 'table9'" in capsys.readouterr().err
    assert main(["table5", "--profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    assert main(["table5", "--set", "epochs=0", "--dry-run"]) == 2
    assert "epochs=0 must be positive" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "figure7" in capsys.readouterr().out


@pytest.mark.skipif(not CIFAR10.exists(), reason="needs ../shared/data/cifar10-jpeg.tar.gz")
def test_every_mini_table_fits_45_minutes(tmp_path):
    mini = PROFILES["mini"]
    ctx = ctx_for(mini, tmp_path, DataPaths({}, "test"))
    for name, spec in SPECS.items():
        runs = spec.build(ctx).runs()
        minutes = budget.estimate(runs).minutes(mini.train_images_per_second, mini.eval_images_per_second)
        assert minutes <= mini.minutes_per_table, f"{name} needs ~{minutes:.0f} min at mini"
    table5 = SPECS["table5"].build(ctx).runs()
    trains = [r for r in table5 if isinstance(r, TrainRun)]
    assert len(trains) == 16  # SimCLR x2, IFND x2, SupCon x 6 levels x 2: probes share the SimCLR/IFND runs
