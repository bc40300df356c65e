"""The harness's pieces without training: profiles, run identity, store, claims, budget, CLI errors."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp

import pytest

from ifnd.config import TrainConfig
from reproduce import budget
from reproduce.cli import main
from reproduce.paths import DataPaths
from reproduce.profiles import PROFILES, ProfileError, apply_overrides, get_profile
from reproduce.render import evaluate_claim, num, resolve, to_frames
from reproduce.runs import EvalRun, TrainRun
from reproduce.specs import SPECS, TABLES, resolve_targets, table5
from reproduce.specs.base import Claim, Context, Derived, Grid, Source, method, pretrain, result
from reproduce.store import RunBusy, Store


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


def test_table5_keeps_the_wordnet_levels_the_profile_names(tmp_path):
    columns = lambda profile: [col["classes"] for col in table5.columns(ctx_for(profile, tmp_path))
                               if not col["reason"]]
    mini = get_profile("mini")
    assert columns(mini) == [2, 3, 6, 10]
    every = apply_overrides(mini, ["table5_classes=[]"])
    assert columns(every) == [2, 3, 6, 7, 8, 10]
    assert columns(apply_overrides(mini, ["table5_classes=10"])) == [10]
    notes = " ".join(SPECS["table5"].build(ctx_for(mini, tmp_path)).notes)
    assert "7 (depth 10), 8 (depth 11)" in notes and "table5_classes=[]" in notes
    for bad in ("table5_classes=5", "table5_classes=2,2"):
        with pytest.raises(ProfileError, match=r"give distinct numbers of classes among CIFAR-10's WordNet levels "
                                               r"\(2, 3, 6, 7, 8, 10\)"):
            apply_overrides(mini, [bad])


def test_mini_seeds_a_table_cap_and_snapshots():
    capped = apply_overrides(get_profile("mini"), ['table_seeds={"table7": 1}'])
    assert capped.seeds_for("table5") == 3 and capped.seeds_for("table7") == 1
    assert apply_overrides(capped, [], seeds=2).seeds_for("table7") == 2
    assert capped.snapshot_epochs(capped.cifar["epochs"]) == (2, 4, 7)  # 25%, 50%, 100% of 7 epochs


# -- run identity ----------------------------------------------------------------------------------------
def test_run_hash_ignores_machine_fields_and_defaults_but_not_settings(tmp_path, tiny_cifar):
    profile = get_profile("smoke")
    ctx = ctx_for(profile, tmp_path, DataPaths({"cifar10": str(tiny_cifar)}, "test"))
    simclr = pretrain(ctx, method(ctx, "simclr"), 0)
    assert isinstance(simclr, TrainRun)
    moved = TrainRun(dataclasses.replace(simclr.config, data_root="/elsewhere", progress=False, loss_kernel="fused"),
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
def _grid_with(cells: dict, claims: list) -> Grid:
    grid = Grid("t", "T", "Table T")
    for (row, col), ours in cells.items():
        if row not in [r.key for r in grid.rows]:
            grid.add_row(row, row)
        if col not in [c.key for c in grid.cols]:
            grid.add_col(col, col)
        grid.set(row, col, ours)
    grid.claims = claims
    return grid


def _probe_runs(tmp_path, store: Store, label: str, values: dict) -> list:
    """Finished probe records with the given ``{seed: top1}`` (one train run per seed)."""
    runs = []
    for seed, top1 in values.items():
        train = TrainRun(TrainConfig(seed=seed, lr=0.1 + len(label) / 100), frozenset({"seed", "lr"}), (), label)
        run = EvalRun("probe", train, {"label": label})
        if top1 is not None:
            store.put(run.key, {"kind": "probe", "result": {"top1": top1}})
        runs.append(run)
    return runs


def test_claims_pair_seeds_by_id_and_follow_the_verdict_rules(tmp_path):
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    ifnd = _probe_runs(tmp_path, store, "ifnd", {0: 74.0, 1: 74.2, 2: 73.9, 3: None})  # seed 3 unfinished
    simclr = _probe_runs(tmp_path, store, "simclr", {3: 10.0, 2: 71.6, 1: 71.5, 0: 71.4})  # other order, extra seed
    grid = _grid_with({("ifnd", "top1"): Source(ifnd, result("top1")),
                       ("simclr", "top1"): Source(simclr, result("top1")),
                       ("gap", "top1"): Derived(("ifnd", "top1"), ("simclr", "top1"))},
                      [Claim("IFND above SimCLR", ("ifnd", "top1"), ("simclr", "top1"), 2.5),
                       Claim("IFND equals itself", ("ifnd", "top1"), ("ifnd", "top1"), 0.0)])
    resolved = resolve(grid, store)
    gap = resolved.value("gap", "top1")
    assert gap.by_seed == pytest.approx({0: 2.6, 1: 2.7, 2: 2.3})  # paired by seed id; seed 3 has no IFND run
    result_ = evaluate_claim(grid.claims[0], resolved)
    assert result_.n == 3 and result_.verdict.startswith("holds") and result_.lo > 0
    assert evaluate_claim(grid.claims[1], resolved).verdict == "n/a at this profile (both cells are the same training)"
    table, frame, claims, _ = to_frames(resolved, ctx_for(get_profile("smoke"), tmp_path))
    assert "[+" in claims.iloc[0]["ours: mean [95 % interval]"] and claims.iloc[0]["n"] == 3
    assert not any("(Δ" in line for line in table)  # cells show "ours (paper X)", no second meaning of Δ


def test_claims_on_a_cell_that_repeats_another_training_are_not_applicable(tmp_path):
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    a = _probe_runs(tmp_path, store, "a", {0: 1.0, 1: 2.0, 2: 3.0})
    b = _probe_runs(tmp_path, store, "bb", {0: 0.0, 1: 0.0, 2: 0.0})
    grid = _grid_with({("a", "x"): Source(a, result("top1")),
                       ("c", "x"): Source(b, result("top1"), alias="[c] is [b]")},
                      [Claim("a above c", ("a", "x"), ("c", "x"), 1.0)])
    assert evaluate_claim(grid.claims[0], resolve(grid, store)).verdict == "n/a at this profile ([c] is [b])"


def test_a_ratio_claim_is_the_share_of_the_gap_per_seed(tmp_path):
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    simclr = _probe_runs(tmp_path, store, "s", {0: 60.0, 1: 61.0, 2: 62.0})
    ifnd = _probe_runs(tmp_path, store, "ii", {0: 63.0, 1: 64.0, 2: 65.5})
    supcon = _probe_runs(tmp_path, store, "sup", {0: 66.0, 1: 67.0, 2: 69.0})
    grid = _grid_with({("s", "x"): Source(simclr, result("top1")), ("i", "x"): Source(ifnd, result("top1")),
                       ("u", "x"): Source(supcon, result("top1"))},
                      [Claim("closes", ("i", "x"), ("s", "x"), 51.7, c=("u", "x"))])
    r = evaluate_claim(grid.claims[0], resolve(grid, store))
    assert r.n == 3 and r.mean == pytest.approx(50.0) and r.lo == pytest.approx(50.0)  # 3/6, 3/6, 3.5/7
    assert r.verdict == "holds" and r.size == "ours smaller"


def test_markdown_numbers_use_one_minus_sign_and_csv_is_rounded(tmp_path):
    assert num(-1.25, "{:.1f}") == "\u22121.2" and num(0.04, "{:.1f}", True) == "0.0"  # no sign on a rounded zero
    assert num(-0.0004, "{:.2f}", True) == "0.00" and num(2.5, "{:.1f}", True) == "+2.5"
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    runs = _probe_runs(tmp_path, store, "x", {0: 70.02000000000001, 1: 70.1})
    grid = _grid_with({("x", "top1"): Source(runs, result("top1"))}, [])
    grid.cells[("x", "top1")].paper = 70.3
    _, frame, _, _ = to_frames(resolve(grid, store), ctx_for(get_profile("smoke"), tmp_path))
    assert frame.iloc[0].ours_mean == 70.06 and frame.iloc[0].diff_vs_paper == -0.24 and "\u2212" not in frame.to_csv()


# -- targets, CLI ------------------------------------------------------------------------------------------------
def test_target_names_and_groups():
    assert resolve_targets(["all"]) == TABLES + ["figure1", "figure3", "figure4", "figure6", "figure7",
                                                 "detection_quality"]
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


def test_figure_claims_pair_every_training_seed_at_mini(tmp_path, tiny_cifar):
    """Figures 4 and 7 draw seed 0's t-SNE but test their claims on the silhouette of all 3 seeds."""
    ctx = ctx_for(PROFILES["mini"], tmp_path, DataPaths({"cifar10": str(tiny_cifar)}, "test"))
    trains = lambda grid, row, col: [r.train.key for r in grid.cells[(row, col)].ours.runs]
    table5, figure4 = SPECS["table5"].build(ctx), SPECS["figure4"].build(ctx)
    for row in ("simclr", "ifnd", "supcon"):
        assert trains(figure4, row, "silhouette") == trains(table5, row, "c10-d12") and len(set(
            trains(figure4, row, "silhouette"))) == 3
    figure7 = SPECS["figure7"].build(ctx)
    epochs = [col.key for col in figure7.cols if col.key.startswith("e")]
    assert [len(trains(figure7, "ifnd", col)) for col in epochs] == [1, 1, 3]  # 2, 4 and 7 of 7 epochs
    assert trains(figure7, "simclr", epochs[-1]) == trains(table5, "simclr", "c10-d12")


def test_every_mini_table_fits_45_minutes(tmp_path, tiny_cifar):
    """From scratch for the paper's tables and figures; an experiment beyond the paper counts the runs no paper
    table trains (the runs it shares train once, with the tables)."""
    for mini, table5_trains in ((PROFILES["mini"], 21), (apply_overrides(PROFILES["mini"], ["oracle_levels=none"]), 18)):
        ctx = ctx_for(mini, tmp_path, DataPaths({"cifar10": str(tiny_cifar)}, "test"))  # mini's sizes: no data read
        paper = {r.key for name, spec in SPECS.items() if not spec.beyond_paper for r in spec.build(ctx).runs()}
        for name, spec in SPECS.items():
            runs = [r for r in spec.build(ctx).runs() if not spec.beyond_paper or r.key not in paper]
            minutes = budget.estimate(runs).minutes(mini.train_images_per_second, mini.eval_images_per_second)
            assert minutes <= mini.minutes_for(name), f"{name} needs ~{minutes:.0f} min at mini"
        # SimCLR x3, IFND x3, SupCon x 4 levels x 3 (+ oracle elimination at 10 classes x3 where it trains)
        assert sum(isinstance(r, TrainRun) for r in SPECS["table5"].build(ctx).runs()) == table5_trains


# -- Table 7's grid -----------------------------------------------------------------------------------
SWITCHES = ("objective", "acceptance_scheme", "cluster_numbers", "confidence")


def _switches(cfg: TrainConfig) -> dict:
    """Table 7's four switches of a config; its objective column is the (detector, objective) pair."""
    return {"objective": (cfg.detector, cfg.objective), "acceptance_scheme": cfg.acceptance_scheme,
            "cluster_numbers": cfg.cluster_numbers, "confidence": cfg.confidence}


def test_table7_rows_are_configs_with_one_switch_changed_per_ablation():
    from ifnd.config import mode_settings
    from reproduce.specs.table7 import table7_rows

    rows = table7_rows(100)
    assert len(rows) == 10
    by_name = {(r["method"], r["baseline"]): r for r in rows}
    pcl, ifnd = by_name[("PCL", False)]["overrides"], by_name[("IFND (Ours)", False)]["overrides"]
    assert pcl["cluster_numbers"] == [2500, 5000, 10000] and ifnd["cluster_numbers"] == [100, 300, 1000]
    assert {k: pcl[k] for k in mode_settings("pcl")} == mode_settings("pcl")
    assert (ifnd["objective"], ifnd["acceptance_scheme"], ifnd["confidence"]) == ("elimination", "linear", "ifnd")
    references = {"PCL": _switches(TrainConfig(**pcl)), "IFND": _switches(TrainConfig(**ifnd))}
    for row in rows:
        cfg = TrainConfig(batch_size=1024, **row["overrides"]).validate()
        if row["baseline"]:
            reference = references[row["method"]]
            changed = [s for s in SWITCHES if _switches(cfg)[s] != reference[s]]
            assert len(changed) == 1, (row, changed)
    assert [r["paper_top1"] for r in rows] == [71.5, 72.8, 74.0, 73.1, 73.4, 73.5, 73.1, 69.9, 73.2, 71.2]
    assert table7_rows(10)[2]["overrides"]["cluster_numbers"] == [10, 30, 100]  # CIFAR-10's default k
