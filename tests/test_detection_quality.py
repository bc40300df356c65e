"""Issue 16: oracle elimination (Tables 5 and 6) and the detection-quality figure.

Label corruption, the true labels under IFND's schedule, MTPR / MTNR of a checkpoint's detector, the
oracle rows and the detection-quality spec at every profile, and its claims on records with known answers.
"""
from __future__ import annotations

import json

import pytest
import torch

from ifnd.config import ConfigError, TrainConfig
from ifnd.falseneg import DETECTORS, build_detector
from ifnd.falseneg.base import ContrastiveBatch, corrupt_labels
from ifnd.falseneg.glofnd import GloFNDDetector
from ifnd.metrics import mtpr_mtnr, pair_mtpr_mtnr
from ifnd.pairs import Pairs
from reproduce import budget
from reproduce.paths import DataPaths
from reproduce.profiles import PROFILES, ProfileError, apply_overrides, get_profile
from reproduce.render import evaluate_claim, render_table, resolve
from reproduce.runs import EvalRun, NotRun, TrainRun
from reproduce.specs import EXTRAS, FIGURES, GROUPS, SPECS, TABLES, resolve_targets
from reproduce.specs.base import Context, Source, method, pretrain
from reproduce.specs.detection_quality import RATES, rate_key, train_run
from reproduce.store import Store


def ctx_at(profile, tmp_path, data=None) -> Context:
    paths = DataPaths({"cifar10": str(data)} if data else {}, "test")
    return Context(profile, paths, Store(profile.name, tmp_path / "results", tmp_path / "runs"))


# -- label corruption ----------------------------------------------------------------------------------
def test_corruption_replaces_an_exact_fraction_with_another_class_seeded():
    labels = torch.arange(1000) % 10
    for rate in (0.25, 0.5, 0.9, 1.0):
        out = corrupt_labels(labels, rate, seed=3)
        changed = out != labels
        assert int(changed.sum()) == int(rate * 1000)  # exactly, and never the true class
        assert set(out.tolist()) <= set(range(10))
        assert torch.equal(out, corrupt_labels(labels, rate, seed=3))
        assert not torch.equal(out, corrupt_labels(labels, rate, seed=4))
    assert torch.equal(corrupt_labels(labels, 0.0, seed=3), labels)
    wrong = corrupt_labels(labels, 1.0, seed=0)
    counts = torch.bincount(wrong[labels == 0], minlength=10)  # class 0's new labels: the 9 others, about evenly
    assert counts[0] == 0 and counts[1:].min() > 0
    with pytest.raises(ValueError, match="at least 2 classes"):
        corrupt_labels(torch.zeros(10, dtype=torch.long), 0.5, seed=0)


def test_corruption_is_a_true_label_field_that_keeps_run_keys(tmp_path, tiny_cifar):
    ctx = ctx_at(get_profile("smoke"), tmp_path, tiny_cifar)
    supcon = pretrain(ctx, method(ctx, "supcon"), 0)
    assert pretrain(ctx, {**method(ctx, "supcon"), "label_corruption": 0.0}, 0).key == supcon.key
    assert pretrain(ctx, {**method(ctx, "supcon"), "label_corruption": 0.3}, 0).key != supcon.key
    assert "label_corruption" not in supcon.identity()["config"]
    assert {n for n, d in DETECTORS.items() if "label_corruption" in d.fields} == {"true_labels", "scheduled_labels"}
    with pytest.raises(ConfigError, match="detector 'ifnd' reads none: use --detector true_labels / scheduled_labels"):
        TrainConfig(detector="ifnd", objective="elimination", label_corruption=0.2).validate()
    with pytest.raises(ConfigError, match=r"label_corruption=1.5 is outside \[0, 1\]"):
        TrainConfig(detector="true_labels", objective="elimination", label_corruption=1.5).validate()
    labels = torch.arange(40) % 4
    cfg = TrainConfig(detector="true_labels", objective="elimination", label_corruption=0.5, seed=2).validate()
    assert torch.equal(build_detector(cfg, labels).level_labels()[0], corrupt_labels(labels, 0.5, 2))


# -- oracle elimination and the true labels under IFND's schedule -----------------------------------------
def test_oracle_elimination_detects_every_false_negative_and_nothing_else():
    truth = torch.arange(60) % 10
    label_map = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]  # 2 classes (CIFAR-10's WordNet depth 4)
    for mapping in (None, label_map):
        cfg = TrainConfig(detector="true_labels", objective="elimination", label_map=mapping).validate()
        seen = truth if mapping is None else torch.as_tensor(mapping)[truth]
        detector = build_detector(cfg, seen)
        assert mtpr_mtnr(detector.level_labels()[0].numpy(), seen.numpy()) == (100.0, 100.0)
    assert TrainConfig(**method(None, "oracle_elimination")).validate().detector == "true_labels"


def test_scheduled_labels_follow_ifnds_schedule_in_a_fixed_order():
    truth = torch.arange(200) % 10
    cfg = TrainConfig(detector="scheduled_labels", objective="elimination", epochs=4, refresh_every=1,
                      warmup_epochs=0, seed=1).validate()
    detector = build_detector(cfg, truth)
    assert mtpr_mtnr(detector.level_labels()[0].numpy(), truth.numpy()) == (0.0, 100.0)  # nothing accepted yet
    accepted = []
    for epoch in (1, 2, 3):
        assert detector.refresh_due(epoch, 4)
        assert detector.refresh(epoch, 4, lambda: None) == {"acceptance_rate": epoch / 4}
        labels = detector.level_labels()[0]
        accepted.append(set(torch.nonzero(labels < 10).view(-1).tolist()))
        assert len(accepted[-1]) == 50 * epoch and (labels[labels < 10] == truth[labels < 10]).all()
    assert accepted[0] < accepted[1] < accepted[2] and not detector.refresh_due(4, 4)  # nested, IFND's refreshes
    detector.rate = 1.0
    detector.labels = detector._accepted(1.0)
    assert mtpr_mtnr(detector.level_labels()[0].numpy(), truth.numpy()) == (100.0, 100.0)
    state = detector.state_dict()
    again = build_detector(cfg, truth)
    again.load_state_dict(state)
    assert torch.equal(again.level_labels(), detector.level_labels()) and again.rate == 1.0
    noisy = build_detector(TrainConfig(**{**cfg.to_dict(), "label_corruption": 0.5}).validate(), truth)
    noisy.labels = noisy._accepted(1.0)
    mtpr, mtnr = mtpr_mtnr(noisy.level_labels()[0].numpy(), truth.numpy())
    assert mtpr < 50 and mtnr < 100


def test_pair_rates_equal_label_rates_and_glofnd_detects_by_threshold():
    gen = torch.Generator().manual_seed(0)
    truth, pseudo = torch.randint(0, 5, (300,), generator=gen), torch.randint(0, 7, (300,), generator=gen)
    assert pair_mtpr_mtnr(lambda rows: pseudo[rows][:, None] == pseudo[None, :], truth, chunk=64) == \
        pytest.approx(mtpr_mtnr(pseudo.numpy(), truth.numpy()), abs=1e-12)
    glofnd = GloFNDDetector(4, start_epoch=1)
    sims = torch.tensor([[0.9, 0.2, -0.1, 0.5]])
    assert not glofnd.detects(sims, torch.tensor([0])).any()  # before its start epoch
    glofnd.refresh(1, 3, lambda: None)
    glofnd.lam[0] = 0.3
    assert glofnd.detects(sims, torch.tensor([0])).tolist() == [[True, False, False, True]]
    batch = ContrastiveBatch(sims / 0.2, torch.tensor([0]), torch.arange(4), Pairs.from_mask(sims > 0.8),
                             torch.ones(1, 4, dtype=torch.bool), 0.2)
    assert glofnd.false_negatives(batch).candidate.tolist() == [3]  # the positive (sample 0) is not a negative


def test_a_checkpoints_detector_rates_match_the_trainers_log(tiny_cifar, tmp_path):
    from eval.false_negatives import checkpoint_rates
    from ifnd.train import Trainer

    base = dict(data_root=str(tiny_cifar), arch="convnet4", epochs=2, batch_size=40, lr=0.1, warmup_epochs=0,
                refresh_every=1, progress=False, threads=1, knn_k=5, objective="elimination")
    results = {}
    for name, extra in (("scheduled_labels", {"label_corruption": 0.3}), ("glofnd", {"glofnd_start_epoch": 1}),
                        ("none", {"objective": "instance"})):
        run = tmp_path / name
        Trainer(TrainConfig(**{**base, "run_dir": str(run), "detector": name, **extra})).run()
        results[name] = checkpoint_rates(run / "checkpoints" / "last.pt")
        logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        if name == "scheduled_labels":
            last = [r for r in logged if "mtpr_k10" in r][-1]
            assert (results[name]["mtpr"], results[name]["mtnr"]) == (last["mtpr_k10"], last["mtnr_k10"])
    assert results["scheduled_labels"]["rule"] == "labels" and results["scheduled_labels"]["samples"] == 120
    assert results["glofnd"]["rule"] == "similarity" and 0 <= results["glofnd"]["mtpr"] <= 100
    assert (results["none"]["rule"], results["none"]["mtpr"], results["none"]["mtnr"]) == ("nothing", 0.0, 100.0)


# -- the specs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_new_rows_and_figure_build_at_every_profile(profile, tmp_path, tiny_cifar):
    ctx = ctx_at(get_profile(profile), tmp_path, tiny_cifar)
    grid = SPECS["detection_quality"].build(ctx)
    assert {row.key for row in grid.rows} == {"simclr", *map(rate_key, RATES), "ifnd", "glofnd", "pcl"}
    n = 1 if profile in ("smoke", "rehearsal") else 3
    for row in grid.rows:
        cell = grid.cells[(row.key, "top1")].ours
        assert isinstance(cell, Source) and len(cell.runs) == n, (profile, row.key, cell)
    assert "oracle_elimination" in {row.key for row in SPECS["table5"].build(ctx).rows}
    assert "o" in {row.key for row in SPECS["table6"].build(ctx).rows}
    assert "oracle_elimination" not in {row.key for row in SPECS["figure1"].build(ctx).rows}


def test_shared_runs_keep_their_keys_at_mini(tmp_path, tiny_cifar):
    no_oracle = ctx_at(apply_overrides(get_profile("mini"), ["oracle_levels=none"]), tmp_path, tiny_cifar)
    for grid, cell in ((SPECS["table5"].build(no_oracle), ("oracle_elimination", "c10-d12")),
                       (SPECS["table6"].build(no_oracle), ("o", "top1"))):
        assert isinstance(grid.cells[cell].ours, NotRun) and "oracle_levels=finest" in grid.cells[cell].ours.reason
    ctx = ctx_at(get_profile("mini"), tmp_path, tiny_cifar)  # mini: the oracle at 10 classes
    table5 = SPECS["table5"].build(ctx)
    ten = "c10-d12"  # CIFAR-10's 10 classes
    keys = {row: [r.train.key for r in table5.cells[(row, ten)].ours.runs] for row in ("simclr", "ifnd",
                                                                                        "oracle_elimination")}
    assert [train_run(ctx, "simclr", s).key for s in range(3)] == keys["simclr"]
    assert [train_run(ctx, "ifnd", s).key for s in range(3)] == keys["ifnd"]
    table4 = SPECS["table4"].build(ctx)
    assert [train_run(ctx, "pcl", s).key for s in range(3)] == [r.train.key for r in table4.cells[("r3", "nmi")].ours.runs]
    table6 = SPECS["table6"].build(ctx)
    assert [r.train.key for r in table6.cells[("o", "top1")].ours.runs] == keys["oracle_elimination"]
    coarse = table5.cells[("oracle_elimination", "c10-d4")].ours  # mini: the oracle at 10 classes only
    assert isinstance(coarse, NotRun) and "oracle_levels=all" in coarse.reason
    assert isinstance(train_run(ctx, rate_key(0.0), 0), TrainRun)
    dq = SPECS["detection_quality"].build(ctx)  # label detectors' rates: their own log, no checkpoint needed
    assert [r.key for r in dq.cells[("ifnd", "mtpr")].ours.runs] == [train_run(ctx, "ifnd", s).key for s in range(3)]
    assert {r.kind for r in dq.cells[("glofnd", "mtnr")].ours.runs} == {"fn_rates"}
    glofnd = train_run(ctx, "glofnd", 0).config
    assert glofnd.glofnd_start_epoch == 2 and glofnd.epochs == 7  # 70 of 200 epochs -> 2 of 7
    every = apply_overrides(get_profile("mini"), ["oracle_levels=all"])
    assert isinstance(SPECS["table5"].build(ctx_at(every, tmp_path, tiny_cifar)).cells[
        ("oracle_elimination", "c10-d4")].ours, Source)
    with pytest.raises(ProfileError, match="choose one of all, finest, none"):
        apply_overrides(get_profile("mini"), ["oracle_levels=some"])


def test_seeds_floor_and_budget_at_mini(tmp_path, tiny_cifar):
    mini = get_profile("mini")
    assert mini.seeds_for("detection_quality") == 3 and mini.seeds_for("table5") == 3
    assert apply_overrides(mini, [], seeds=2).seeds_for("detection_quality") == 2  # --seeds is obeyed
    ctx = ctx_at(mini, tmp_path, tiny_cifar)
    paper = {r.key for name in TABLES + FIGURES for r in SPECS[name].build(ctx).runs()}
    own = [r for r in SPECS["detection_quality"].build(ctx).runs() if r.key not in paper]
    minutes = budget.estimate(own).minutes(mini.train_images_per_second, mini.eval_images_per_second)
    assert sum(isinstance(r, TrainRun) for r in own) == 12 and minutes <= mini.minutes_per_table
    glofnd = next(r for r in own if isinstance(r, EvalRun) and r.kind == "fn_rates" and
                  r.train.config.detector == "glofnd")
    assert budget.eval_cost(glofnd)[0] == 12000  # embeds its training samples; label detectors read labels only
    assert resolve_targets(["detection-quality"]) == ["detection_quality"] == EXTRAS == GROUPS["detection-quality"]
    assert "detection_quality" in resolve_targets(["all"]) and "detection_quality" not in resolve_targets(["figures"])


# -- claims and rendering --------------------------------------------------------------------------------
def _put(store: Store, run, values: dict) -> None:
    store.put(run.key, {"kind": getattr(run, "kind", "train"), "label": run.label, "result": values})


def _records(ctx, gain_of, mtpr_of) -> None:
    """Finished probe and MTPR / MTNR records of every row: Top-1 = 50 + gain, seed by seed."""
    grid = SPECS["detection_quality"].build(ctx)
    for (row, col), cell in grid.cells.items():
        if not isinstance(cell.ours, Source):
            continue
        for run in cell.ours.runs:
            seed = (run.train if isinstance(run, EvalRun) else run).config.seed
            if col == "top1":
                _put(ctx.store, run, {"top1": 50.0 + (0.0 if row == "simclr" else gain_of(row, seed))})
            elif col == "mtpr":  # a label detector's own log (train record), or GloFND's evaluation
                rates = {"mtpr": mtpr_of(row, seed), "mtnr": 100.0 - mtpr_of(row, seed) / 10}
                if isinstance(run, TrainRun):
                    k = run.config.cluster_numbers[0]
                    rates = {"metrics": [{"epoch": 1, **{f"{name}_k{k}": v for name, v in rates.items()}}]}
                _put(ctx.store, run, rates)


class _Verdicts:
    """The claims of the detection-quality grid on the store's records, looked up by the start of their text."""

    def __init__(self, ctx):
        grid = SPECS["detection_quality"].build(ctx)
        resolved = resolve(grid, ctx.store)
        self.rows = [(claim.text, evaluate_claim(claim, resolved)) for claim in grid.claims]
        self.rows += [(text, comparison) for text, comparison, _, _ in grid.trend(resolved)]

    def __getitem__(self, start: str):
        return next(comparison for text, comparison in self.rows if text.startswith(start))


def test_claims_on_records_with_known_answers(tmp_path, tiny_cifar):
    profile = apply_overrides(get_profile("smoke"), [], seeds=3)
    mtpr = {rate_key(0.0): 70.0, rate_key(0.45): 25.0, rate_key(0.9): 7.0, "ifnd": 15.0, "glofnd": 5.0, "pcl": 10.0}
    jitter = {0: -0.1, 1: 0.0, 2: 0.1}
    known = ctx_at(profile, tmp_path / "a", tiny_cifar)  # gain = MTPR / 10 (+ seed jitter): grows with MTPR
    _records(known, lambda row, s: mtpr[row] / 10 + jitter[s], lambda row, s: mtpr[row] + jitter[s])
    v = _Verdicts(known)
    grows = v["Top-1 gain grows with MTPR"]
    assert grows.n == 3 and grows.verdict == "holds" and grows.mean == pytest.approx(1.0, abs=0.05)
    assert v["Top-1 gain grows with MTNR"].verdict == "reversed"  # MTNR falls as MTPR grows in these records
    assert v["Top-1: perfect labels under IFND's schedule (0 % corrupted) beat SimCLR"].verdict == "holds"
    assert v["Top-1: IFND beats"].verdict == "holds"  # 1.5 points above random labels' 0.7
    flat = ctx_at(profile, tmp_path / "b", tiny_cifar)  # gain unrelated to MTPR: the data cannot tell
    noise = {0: 1.0, 1: -1.0, 2: 0.5}
    _records(flat, lambda row, s: noise[s] * (1 if row == rate_key(0.0) else -1) * (s + 1),
             lambda row, s: mtpr[row])
    assert _Verdicts(flat)["Top-1 gain grows with MTPR"].verdict == "not resolved"
    two = ctx_at(apply_overrides(get_profile("smoke"), [], seeds=2), tmp_path / "c", tiny_cifar)
    _records(two, lambda row, s: mtpr[row] / 10, lambda row, s: mtpr[row] + s)
    assert _Verdicts(two)["Top-1 gain grows with MTPR"].verdict.startswith("n < 3: not tested (direction agrees)")


def test_oracle_rows_render_pending_before_their_runs(tmp_path, tiny_cifar):
    ctx = ctx_at(get_profile("mini"), tmp_path, tiny_cifar)
    t5 = render_table(ctx, SPECS["table5"].build(ctx))["md"].read_text()
    row = next(line for line in t5.splitlines() if line.startswith("| Oracle elimination (beyond the paper)"))
    assert "pending (0/3 runs finished)" in row and "not run [" in row and "paper" not in row.split("|")[-2]
    assert "Δ(Oracle elimination, IFND)" in t5 and "Oracle elimination above IFND" in t5
    t6 = render_table(ctx, SPECS["table6"].build(ctx))["md"].read_text()
    row = next(line for line in t6.splitlines() if line.startswith("| [o] oracle (beyond the paper)"))
    assert row.count("100.00") == 2 and "pending (0/3 runs finished)" in row
    dq = SPECS["detection_quality"].build(ctx)
    md = render_table(ctx, dq)["md"].read_text()
    assert "Paper numbers: none: beyond the paper" in md and "pending (0/3 runs finished)" in md
    assert "n = 3 training seeds" in md
    png = tmp_path / "dq.png"
    SPECS["detection_quality"].plot(ctx, dq, resolve(dq, ctx.store), png)
    assert png.stat().st_size > 5000
