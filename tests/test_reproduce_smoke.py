"""Every table and figure renders at the smoke profile, and a re-run redoes only what is missing.

One module-scoped sweep (``python -m reproduce all --profile smoke``) on a tiny CIFAR-10-layout
fixture (160 train / 160 test images) feeds all tests here; it takes about a minute on 2 free cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_image_folder
from reproduce.cli import main
from reproduce.specs import EXTRAS, FIGURES, TABLES

SMOKE_SETS = ["--set", "train_subset=0", "--set", "batch_size=32", "--set", "probe_train_subset=0",
              "--set", "eval_test_subset=0", "--set", "tsne_points=60", "--set", "knn_k=10"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce-smoke")
    data = write_image_folder(root / "tiny-cifar", per_class=16)
    (root / "paths.toml").write_text("[data]\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IFND_DATA_ROOT", str(data))
        mp.setenv("IFND_CACHE", str(root / "cache"))
        mp.setenv("IFND_PATHS", str(root / "paths.toml"))
        args = ["--profile", "smoke", "--no-progress", "--threads", "1", "--results-dir", str(root / "results"),
                "--runs-dir", str(root / "runs"), *SMOKE_SETS]
        code = main(["all", *args])
        yield {"root": root, "args": args, "code": code, "results": root / "results" / "smoke",
               "runs": root / "runs" / "smoke", "mp": mp}


def store_records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (results / "store").glob("*.json")}


def test_every_table_and_figure_renders_at_smoke(sweep):
    assert sweep["code"] == 0
    out = sweep["results"]
    for name in TABLES + FIGURES + EXTRAS:
        md = (out / f"{name}.md").read_text()
        assert md.startswith("# ") and "Profile: **smoke**" in md and "Generated" not in md
        assert "Records: trained at git " in md or "Runs: 0 of 0 finished" in md  # the records' commits
        assert "pending" not in md, f"{name} has unfinished cells"
        frame = pd.read_csv(out / f"{name}.csv")
        assert len(frame) > 0 and {"ours_mean", "paper", "n_seeds", "status"} <= set(frame.columns)
    for name in FIGURES + EXTRAS:
        assert (out / f"{name}.png").stat().st_size > 5000


def test_rendering_the_same_records_again_rewrites_the_same_bytes(sweep):
    out = sweep["results"]
    files = sorted(p for p in out.iterdir() if p.suffix in (".md", ".csv", ".png"))
    before = {p.name: p.read_bytes() for p in files}
    assert main(["all", "--collect-only", *sweep["args"]]) == 0
    assert {p.name: p.read_bytes() for p in files} == before


def test_tables_hold_our_numbers_beside_the_papers(sweep):
    out = sweep["results"]
    t5 = pd.read_csv(out / "table5.csv")
    ten = t5[(t5.row == "simclr") & t5.col_title.str.contains("= paper CIFAR-10")]
    assert len(ten) == 1 and ten.iloc[0].paper == 94.2 and 0 <= ten.iloc[0].ours_mean <= 100
    assert set(t5[t5.row == "classes"].ours_mean.dropna()) == {2, 3, 6, 7, 8, 10}
    imagenet = t5[t5.col_title == "ImageNet d18"]
    assert (imagenet.status == "not run").all() and "not part of profile smoke" in imagenet.iloc[0].note
    t6 = pd.read_csv(out / "table6.csv")
    mtpr = t6[(t6.col == "mtpr") & (t6.row == "g")].iloc[0]
    assert mtpr.status == "ok" and 0 <= mtpr.ours_mean <= 100 and mtpr.paper == 43.26
    t7 = pd.read_csv(out / "table7.csv")
    # The paper's 10 rows and Appendix E's comparison row (Table 6 [h], the same runs).
    assert len(t7[t7.col == "top1"]) == 11 and (t7[t7.col == "top1"].status == "ok").all()
    t1 = (out / "table1.md").read_text()
    assert "not run" in t1 and ("ImageNet not configured" in t1 or "ImageNet not found" in t1)
    assert "| 69.7" not in t1  # no invented numbers: the paper's value appears only as "paper 69.7"
    assert "paper 69.7" in t1
    for name in ("table4", "table8"):
        assert "CIFAR-10 stand-in" in (out / f"{name}.md").read_text()


def test_shared_runs_train_once(sweep):
    records = store_records(sweep["results"])
    trains = [r for r in records.values() if r["kind"] == "train"]
    labels = [r["label"] for r in trains]
    # SimCLR and IFND pre-train once (seed 0) although Tables 4-7 and Figures 1, 3, 4, 6, 7 use them.
    simclr = [r for r in trains if r["config"]["detector"] == "none" and r["config"]["framework"] == "simclr"]
    assert len(simclr) == 1, labels
    ifnd = [r for r in trains if r["config"]["detector"] == "ifnd" and r["config"]["objective"] == "elimination"
            and r["config"]["framework"] == "simclr" and r["config"]["acceptance_scheme"] == "linear"
            and r["config"]["acceptance_final"] == 1.0 and r["config"]["confidence"] == "ifnd"
            and r["config"]["cluster_numbers"] == [10, 30, 100]]
    assert len(ifnd) == 1, labels
    for objective in ("attraction", "elimination"):  # SupCon, oracle elimination: one per CIFAR-10 WordNet level
        oracle = [r for r in trains if r["config"]["detector"] == "true_labels"
                  and r["config"]["objective"] == objective]
        assert len(oracle) == 6, (objective, labels)


def test_rerun_redoes_only_what_was_deleted(sweep):
    results, runs = sweep["results"], sweep["runs"]
    before = store_records(results)
    t5 = pd.read_csv(results / "table5.csv")
    probe = t5[(t5.row == "simclr") & (t5.status == "ok")].iloc[0].runs.split(";")[0]
    supcon = next(k for k, r in before.items() if r["kind"] == "train"
                  and r["config"]["detector"] == "true_labels")
    assert before[probe]["kind"] == "probe"
    metrics_before = (runs / supcon / "metrics.jsonl").read_text()
    (results / "store" / f"{probe}.json").unlink()
    (results / "store" / f"{supcon}.json").unlink()
    (runs / supcon / "final.json").unlink()
    assert main(["table5", *sweep["args"]]) == 0
    after = store_records(results)
    assert set(after) == set(before)  # the deleted records are back ...
    redone = {k for k in after if after[k]["finished_at"] != before[k]["finished_at"]}
    assert redone == {probe, supcon}  # ... newly finished, and nothing else is
    # The train run resumed from its last checkpoint (the final epoch): no epoch was trained again.
    assert (runs / supcon / "metrics.jsonl").read_text() == metrics_before
    assert (runs / supcon / "final.json").exists()


def test_collect_only_launches_nothing(sweep):
    results = sweep["results"]
    before = store_records(results)
    victim = next(k for k, r in before.items()  # Table 4's NMI (the figures' and Table 6's have an epoch)
                  if r["kind"] == "nmi" and "epoch" not in r["identity"]["params"])
    (results / "store" / f"{victim}.json").unlink()
    assert main(["table4", "--collect-only", *sweep["args"]]) == 0
    assert not (results / "store" / f"{victim}.json").exists()
    md = (results / "table4.md").read_text()
    assert "pending" in md and "re-run the same command" in md
    assert main(["table4", *sweep["args"]]) == 0
    assert (results / "store" / f"{victim}.json").exists()
