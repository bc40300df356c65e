"""The rehearsal: the ``paper`` profile's code paths on synthetic data in the real layouts.

One module-scoped run (about 3 minutes on 2 free cores) at the rehearsal profile made smaller
still: Table 1's IFND row (MoCo v2 + IFND pre-training as a 2-process gloo job, then the ImageNet
linear, VOC07 SVM and Places205 command lines and the detectron2 weights conversion) and Table 5's
ImageNet columns (SimCLR probed at WordNet depths 3/5/7/9/18, SupCon trained with the depth-3
labels), all through the launcher, the store and the renderer that ``make all`` uses.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce import rehearsal
from reproduce.cli import main, plan_tasks
from reproduce.execute import StoreSpec
from reproduce.launchers import InlineLauncher
from reproduce.paths import DataPaths
from reproduce.profiles import apply_overrides, get_profile
from reproduce.render import render_table, resolve
from reproduce.runs import EvalRun
from reproduce.specs import SPECS
from reproduce.specs.base import Context, Grid
from reproduce.store import Store

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(1500)  # the first test that needs the run waits for all of it (~4 min on 2 cores)
# CI size: fewer images, one epoch, k below the 64 images
SMALLER = ["imagenet.epochs=2", "imagenet.train_subset=32", "imagenet.cluster_numbers=[4,8,16]", "nmi_seeds=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return rehearsal.write(tmp_path_factory.mktemp("rehearsal") / "data")


@pytest.fixture(scope="module")
def context(data, tmp_path_factory):
    root = Path(data["imagenet"]).parent
    out = tmp_path_factory.mktemp("rehearsal-out")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in rehearsal.environment(root).items():
            mp.setenv(name, value)
        mp.setenv("IFND_FEATURE_CACHE", str(out / "features"))
        profile = apply_overrides(get_profile("rehearsal"), SMALLER)
        yield Context(profile, DataPaths.load(root / "paths.toml"), Store("rehearsal", out / "results", out / "runs"))


def test_data_sets_are_in_the_layouts_the_readers_expect(data):
    from eval.data import imagenet_subset, places205, voc2007
    from ifnd.data import load_split
    from wordnet_hierarchy import imagenet_wnids

    imagenet = Path(data["imagenet"])
    assert sorted(p.name for p in (imagenet / "train").iterdir()) == sorted(imagenet_wnids())
    assert sorted(p.name for p in (imagenet / "val").iterdir()) == sorted(imagenet_wnids())
    one = imagenet_subset(imagenet, Path(data["imagenet_subsets"]) / "1percent.txt")
    ten = imagenet_subset(imagenet, Path(data["imagenet_subsets"]) / "10percent.txt")
    assert len(one) == 1000 and len(ten) == 2000
    voc = {split: voc2007(data["voc07"], split) for split in ("train", "val", "trainval", "test")}
    assert len(voc["train"]) + len(voc["val"]) == len(voc["trainval"]) == 20 and len(voc["test"]) == 15
    annotation = (Path(data["voc07"]) / "VOC2007" / "Annotations" / "000001.xml").read_text()
    assert "<object><name>" in annotation
    assert len(places205(data["places205"], "train").classes) == rehearsal.PLACES205_CLASSES
    assert len(load_split("cifar10", "train", data["cifar10"]).classes) == 10
    assert len(load_split("cifar100", "test", data["cifar100"]).classes) == 100
    with open(Path(data["cifar100"]) / "cifar-100-python" / "train", "rb") as fh:
        assert {"data", "fine_labels", "coarse_labels"} <= set(pickle.load(fh, encoding="latin1"))
    coco = json.loads((Path(data["coco"]) / "annotations" / "instances_val2017.json").read_text())
    assert len(coco["categories"]) == 80 and coco["categories"][-1]["id"] == 90
    assert all((Path(data["coco"]) / "val2017" / image["file_name"]).is_file() for image in coco["images"])
    configured = DataPaths.load(Path(data["imagenet"]).parent / "paths.toml")
    assert {key: configured.locate(key)[0] for key in data} == data


def test_make_rehearsal_data_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("not rehearsal data")
    assert main(["make-rehearsal-data", str(tmp_path)]) == 2
    assert "is not rehearsal data" in capsys.readouterr().err


def test_profile_is_paper_scaled_in_size_only(context):
    paper, rehearse = get_profile("paper"), get_profile("rehearsal")
    sizes = {"image_size", "epochs", "batch_size", "lr_steps", "cluster_numbers", "train_subset", "knn_k",
             "queue_size", "workers", "moco_bn_splits", "swav_prototypes", "swav_queue_start_epoch",
             "swav_freeze_prototypes_iters", "warmup_epochs", "refresh_every"}
    for kind, also in (("imagenet", set()), ("cifar", {"arch", "cifar_stem"})):  # CIFAR: convnet4 (cost)
        changed = {k for k in set(paper.train_fields(kind)) | set(rehearse.train_fields(kind))
                   if paper.train_fields(kind).get(k) != rehearse.train_fields(kind).get(k)}
        assert changed <= sizes | also, changed
    assert rehearse.imagenet_runs and rehearse.processes_per_job == 2
    assert rehearse.description.startswith("rehearsal: synthetic data")


def tasks_of(context, rows: dict[str, set[str]]):
    """The tasks behind some rows (and columns) of some tables, as ``make all`` plans them."""
    grids = {name: SPECS[name].build(context) for name in rows}
    chosen = []
    for name, wanted in rows.items():
        grid = grids[name]
        for (row, col), cell in grid.cells.items():
            if row in wanted[0] and col in wanted[1]:
                assert hasattr(cell.ours, "runs"), f"{name} {row} {col}: {cell.ours}"
                chosen += cell.ours.runs
        if name == "table3":
            chosen += [r for r in grid.extra_runs if isinstance(r, EvalRun) and r.train.label.startswith("IFND")]
    tasks = plan_tasks([Grid("chosen", "", "", extra_runs=chosen)])
    return grids, tasks


@pytest.fixture(scope="module")
def rehearsed(context):
    rows = {"table1": ({"r10"}, {"imagenet", "voc", "places"}),
            "table5": ({"simclr"}, {f"imagenet-d{d}" for d in (3, 5, 7, 9, 18)}),
            "table3": (set(), set())}
    grids, tasks = tasks_of(context, rows)
    supcon = tasks_of(context, {"table5": ({"supcon"}, {"imagenet-d3"})})[1]
    spec = StoreSpec("rehearsal", str(context.store.results_dir.parent), str(context.store.runs_dir.parent))
    statuses = InlineLauncher(threads=1, processes=2).launch(tasks + supcon, spec, progress=False)
    return {"grids": grids, "tasks": tasks + supcon, "statuses": statuses, "spec": spec}


def test_rehearsal_fills_table1_and_table5_imagenet_columns(context, rehearsed):
    assert [s["status"] for s in rehearsed["statuses"]] == ["done"] * len(rehearsed["tasks"]), rehearsed["statuses"]
    assert all(s["trained"] for s in rehearsed["statuses"])
    table1 = resolve(rehearsed["grids"]["table1"], context.store)
    for col in ("imagenet", "voc", "places"):
        assert table1.value("r10", col).status == "ok" and table1.value("r10", col).n == 1
    table5 = resolve(SPECS["table5"].build(context), context.store)
    for depth in (3, 5, 7, 9, 18):
        assert table5.value("simclr", f"imagenet-d{depth}").status == "ok"
    assert table5.value("supcon", "imagenet-d3").status == "ok"
    records = [json.loads(p.read_text()) for p in context.store.runs_dir.glob("evals/*/result.json")]
    classes = {r["data"]["num_classes"] for r in records if r["protocol"] == "linear"}
    assert {9, 36, 206, 486, 1000} <= classes  # the WordNet relabelings ran on the real wnids
    md = render_table(context, rehearsed["grids"]["table1"], table1)["md"].read_text()
    assert "**rehearsal** (rehearsal: synthetic data" in md


def test_two_processes_trained_each_job(context, rehearsed):
    ifnd = next(t for t in rehearsed["tasks"] if t.train.label.startswith("IFND"))
    record = context.store.get(ifnd.key)
    assert record is not None
    log = (context.store.train_dir(ifnd.key) / "metrics.jsonl").read_text()
    assert "knn_top1" in log
    assert json.loads((context.store.train_dir(ifnd.key) / "config.json").read_text())["moco_bn_splits"] == 2


def test_detection_converts_weights_and_says_why_it_does_not_train(context, rehearsed):
    from eval.detection.launch import detectron2_available

    table3 = resolve(rehearsed["grids"]["table3"], context.store)
    cell = table3.value("r3", "APbb")
    if detectron2_available():
        pytest.skip("detectron2 is installed: Table 3 trains for real")
    assert cell.status == "not run" and "detectron2 not installed" in cell.reason
    conversions = list(context.store.runs_dir.glob("evals/*/backbone_d2.pkl"))
    assert len(conversions) == 1 and conversions[0].stat().st_size > 1_000_000


def test_a_rerun_resumes_and_redoes_nothing(context, rehearsed):
    again = InlineLauncher(threads=1, processes=2).launch(rehearsed["tasks"], rehearsed["spec"], progress=False)
    assert [(s["status"], s["trained"], s["evaluated"]) for s in again] == [("done", False, [])] * len(again)


def test_cli_plans_every_paper_cell_with_the_rehearsal_data(data, tmp_path):
    """``python -m reproduce all --profile rehearsal --dry-run``: no cell of an ImageNet table is 'not run'
    for want of data, and the synthetic data are found through the usual environment variables."""
    env = {**os.environ, "IFND_REHEARSAL_DATA": str(Path(data["imagenet"]).parent), "PYTHONPATH": str(ROOT)}
    for name in rehearsal.environment(Path(data["imagenet"]).parent):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "reproduce", "table1", "table2", "table4", "table8", "--profile",
                           "rehearsal", "--dry-run", "--results-dir", str(tmp_path / "r"), "--runs-dir",
                           str(tmp_path / "runs")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "MoCo v2 ImageNet" in done.stdout and "SwAV ImageNet" in done.stdout and "PCL ImageNet" in done.stdout
