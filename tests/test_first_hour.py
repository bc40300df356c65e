"""What a new user meets first: data without ``../shared``, committed tables, run directories, logs, Ctrl-C.

Each test runs the commands as a user would (subprocesses where the exit code and the printed
lines are the behaviour) on tiny data written here.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASSES

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--arch", "convnet4", "--batch-size", "40", "--warmup-epochs", "0", "--knn-k", "5", "--threads", "1",
         "--cluster-numbers", "5"]


def run(args: list[str], tmp_path: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=full_env, **kw)


# -- data ------------------------------------------------------------------------------------------
def write_cifar_batches(folder: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """torchvision's ``cifar-10-batches-py`` layout with ``per_batch`` random images per pickle."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % 10 for i in range(per_batch)]
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CLASSES}, fh)
    return folder


def test_torchvision_download_folder_is_accepted(tmp_path):
    """``CIFAR10(root=R, download=True)`` leaves ``R/cifar-10-batches-py``; ``R`` is a data root."""
    from ifnd.data import load_split

    batches = write_cifar_batches(tmp_path / "download" / "cifar-10-batches-py")
    train = load_split("cifar10", "train", tmp_path / "download")
    test = load_split("cifar10", "test", batches)
    assert train.images.shape == (100, 32, 32, 3) and len(test) == 20 and train.classes == CLASSES
    with open(batches / "data_batch_2", "rb") as fh:
        second = pickle.load(fh)
    expected = np.asarray(second["data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(train.images[20:40].numpy(), expected)


def test_folder_holding_the_archive_is_accepted_and_its_checksum_remembered(tmp_path, tiny_cifar, monkeypatch):
    import hashlib
    import tarfile

    from ifnd.data import DataError, cache_dir, load_split, resolve_root

    folder = tmp_path / "data"
    folder.mkdir()
    archive = folder / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar, arcname="cifar10-jpeg")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (folder / "cifar10-jpeg.sha256").write_text(f"{digest}  cifar10-jpeg.tar.gz\n")
    monkeypatch.setenv("IFND_DATA_ROOT", str(folder))
    monkeypatch.setenv("IFND_CACHE", str(tmp_path / "cache"))  # this test's remembered checks only
    assert resolve_root("cifar10", None) == archive
    assert len(load_split("cifar10", "train")) == 120
    remembered = list((cache_dir() / "sha256").glob("cifar10-jpeg.tar.gz-*.json"))
    assert len(remembered) == 1 and json.loads(remembered[0].read_text())["sha256"] == digest
    # The remembered check is what is read (no re-hashing): a wrong remembered value is caught as a mismatch.
    remembered[0].write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(DataError, match="does not match its checksum file"):
        resolve_root("cifar10", folder)


def test_first_decode_says_where_the_cache_is(tmp_path, tiny_cifar):
    code = "from ifnd.data import load_split; load_split('cifar10', 'train', %r)" % str(tiny_cifar)
    first = run(["-c", code], tmp_path, {"IFND_CACHE": str(tmp_path / "cache")})
    assert first.returncode == 0, first.stderr
    assert f"in {tmp_path / 'cache'}" in first.stderr and "IFND_CACHE" in first.stderr and "MB" in first.stderr
    again = run(["-c", code], tmp_path, {"IFND_CACHE": str(tmp_path / "cache")})
    assert again.stderr == ""


def test_trainer_records_which_copy_of_the_data_it_read(tmp_path, tiny_cifar):
    import hashlib
    import tarfile

    archive = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar, arcname="cifar10-jpeg")
    result = run(["-m", "ifnd.train", "--data-root", str(archive), "--run-dir", "r", "--epochs", "1", "--no-progress",
                  *TRAIN], tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "r" / "final.json").read_text())["data"]
    assert data == {"dataset": "cifar10", "path": str(archive.resolve()), "bytes": archive.stat().st_size,
                    "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}


# -- the trainer's command line --------------------------------------------------------------------
def test_run_directories_are_never_overwritten(tmp_path, tiny_cifar):
    args = ["-m", "ifnd.train", "--data-root", str(tiny_cifar), "--epochs", "1", "--no-progress", *TRAIN]
    first = run(args, tmp_path)
    second = run(args, tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(made) == 2 and all(name.startswith("simclr-instance-") for name in made)
    config = (tmp_path / "runs" / made[0] / "config.json").read_text()
    again = run([*args, "--run-dir", f"runs/{made[0]}", "--mode", "supcon"], tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1] == (f"error: runs/{made[0]} already holds a run (config.json, metrics.jsonl, "
                                    "checkpoints/last.pt, final.json): continue it with --resume, or choose a new "
                                    "--run-dir (nothing was overwritten)")
    assert (tmp_path / "runs" / made[0] / "config.json").read_text() == config
    missing = run([*args, "--run-dir", "runs/typo", "--resume"], tmp_path)
    assert missing.returncode == 2 and missing.stderr.splitlines()[-1].startswith("error: nothing to resume in runs/typo")
    assert not (tmp_path / "runs" / "typo").exists()


def test_logs_have_one_plain_line_per_epoch_and_a_resume_says_so(tmp_path, tiny_cifar):
    args = ["-m", "ifnd.train", "--data-root", str(tiny_cifar), "--epochs", "2", *TRAIN]
    for run_dir, progress in (("quiet", "--no-progress"), ("bars", "--progress")):  # stderr is a pipe, as in a log
        result = run([*args, "--run-dir", run_dir, progress], tmp_path)
        assert result.returncode == 0, result.stderr
        assert "\r" not in result.stderr and "\x1b[" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
        assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
        for line in lines:
            assert " loss " in line and " lr " in line and " images/s " in line and line.split("  ")[4].endswith("s")
    resumed = run([*args, "--run-dir", "bars", "--config", "bars/config.json", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from epoch 2 of 2" in resumed.stderr


def test_ctrl_c_says_how_to_resume(tmp_path, tiny_cifar):
    process = subprocess.Popen([sys.executable, "-m", "ifnd.train", "--data-root", str(tiny_cifar), "--run-dir", "r",
                                "--epochs", "200", "--no-progress", *TRAIN], cwd=tmp_path, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in process.stderr:
        if line.startswith("epoch 2/200"):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait() == 130
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    message = rest.strip().splitlines()[-1]
    assert message.startswith("interrupted: r/checkpoints/last.pt holds epoch ")
    epoch = int(message.split("holds epoch ")[1].split()[0])
    assert epoch >= 2 and message.endswith(f"--resume` continues from epoch {epoch}")
    import torch

    assert torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=False)["epoch"] == epoch


# -- the harness -----------------------------------------------------------------------------------
def render_table5(tmp_path: Path, results: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "paths.toml").write_text("[data]\n")
    return run(["-m", "reproduce", "table5", "--no-progress", "--results-dir", str(results), "--runs-dir",
                str(tmp_path / "runs"), *extra], tmp_path,
               {"IFND_DATA_ROOT": str(data_root), "IFND_PATHS": str(tmp_path / "paths.toml")})


@pytest.mark.parametrize("data_root", ["empty", "missing"])
def test_committed_records_render_without_the_data(tmp_path, data_root):
    """A clone without ``../shared`` renders the committed Table 5 unchanged (records, not data)."""
    committed = ROOT / "results" / "mini"
    results = tmp_path / "results"
    shutil.copytree(committed / "store", results / "mini" / "store")
    tables_there = data_root == "missing"  # as in a clone: then not even the "Generated" stamp may change
    if tables_there:
        for suffix in ("md", "csv"):
            shutil.copy(committed / f"table5.{suffix}", results / "mini")
    (tmp_path / "empty").mkdir()
    result = render_table5(tmp_path, results, tmp_path / data_root)
    assert result.returncode == 0, result.stderr
    for suffix in ("md", "csv"):
        ours = (results / "mini" / f"table5.{suffix}").read_text().splitlines()
        theirs = (committed / f"table5.{suffix}").read_text().splitlines()
        differ = [(a, b) for a, b in zip(ours, theirs)
                  if a != b and (tables_there or not a.startswith("- Generated:"))]
        assert len(ours) == len(theirs) and not differ, differ[:2]


def test_runs_that_must_train_without_data_stop_before_writing(tmp_path):
    results = tmp_path / "results"
    result = render_table5(tmp_path, results, tmp_path / "nowhere")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 13 table cells need runs on it: CIFAR-10 not found at")
    assert "IFND_DATA_ROOT" in error and "--collect-only" in error
    assert not (results / "mini" / "table5.md").exists()


def test_unwritable_results_directory_is_refused_up_front(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the results directory should be")
    result = render_table5(tmp_path, blocked, tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: cannot write to {blocked}/mini/store (Not a directory): choose a "
                                     "writable --results-dir or fix its permissions")


def test_a_failed_store_write_stops_the_sweep(tmp_path, monkeypatch):
    from ifnd.config import TrainConfig
    from reproduce import execute, store as store_module
    from reproduce.execute import StoreSpec, Task
    from reproduce.launchers import InlineLauncher
    from reproduce.runs import TrainRun
    from reproduce.store import StoreWriteError

    def read_only(path, data):
        raise OSError(30, "Read-only file system")

    trained = []

    def fake_train(run, store, progress=True, log=print):  # the training is not what is tested here
        trained.append(run.key)
        store.put(run.key, {"kind": "train"})

    monkeypatch.setattr(store_module, "atomic_write_json", read_only)
    monkeypatch.setattr(execute, "run_train", fake_train)
    tasks = [Task(TrainRun(TrainConfig(seed=seed), frozenset({"seed"}))) for seed in (0, 1)]
    spec = StoreSpec("mini", str(tmp_path / "results"), str(tmp_path / "runs"))
    with pytest.raises(StoreWriteError, match=r"cannot write the record of run \w+ to .*Read-only file system"):
        InlineLauncher().launch(tasks, spec, progress=False)
    assert trained == [tasks[0].key]


@pytest.fixture
def slurm_dry_run(tmp_path, monkeypatch, capsys):
    from reproduce.cli import main

    (tmp_path / "cluster.toml").write_text('[slurm]\npartition = "gpu"\ngpus_per_node = 8\n')
    (tmp_path / "paths.toml").write_text("[data]\n")
    monkeypatch.setenv("IFND_PATHS", str(tmp_path / "paths.toml"))
    monkeypatch.delenv("IFND_IMAGENET", raising=False)

    def dry_run(imagenet: Path | None) -> tuple[int, str, str]:
        if imagenet is not None:
            monkeypatch.setenv("IFND_IMAGENET", str(imagenet))
        code = main(["table1", "--profile", "paper", "--launcher", "slurm", "--dry-run", "--cluster",
                     str(tmp_path / "cluster.toml"), "--results-dir", str(tmp_path / "results"), "--runs-dir",
                     str(tmp_path / "runs")])
        out = capsys.readouterr()
        return code, out.out, out.err

    return dry_run


def test_slurm_dry_run_says_why_nothing_runs(tmp_path, slurm_dry_run):
    code, out, _ = slurm_dry_run(None)
    assert code == 0 and "nothing to run here: ImageNet not configured (set imagenet in [data] of " \
                          "reproduce/paths.toml or $IFND_IMAGENET)" in out
    (tmp_path / "empty").mkdir()
    code, out, _ = slurm_dry_run(tmp_path / "empty")
    assert code == 0 and "0 of 0 tasks" in out
    assert f"nothing to run here: ImageNet at {tmp_path / 'empty'} has no class folders under train/ and val/" in out


def test_slurm_dry_run_describes_the_runs_it_lists(tmp_path, slurm_dry_run):
    import shlex

    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n01440764").mkdir(parents=True)
    code, out, err = slurm_dry_run(tmp_path / "imagenet")
    assert code == 0 and "3 of 3 tasks" in out
    assert "profile paper: ImageNet runs: resnet50, 200 epochs, batch 256, lr 0.03" in err
    assert all("epochs=200 batch=256 lr=0.03" in line for line in out.splitlines() if line.startswith("  ["))
    assert f"{shlex.quote(sys.executable)} -u -m submitit.core._submit" in out


# -- --help ----------------------------------------------------------------------------------------
EVAL_COMMANDS = ["eval.linear", "eval.semisup", "eval.voc07", "eval.places205", "eval.clustering",
                 "eval.detection.launch", "eval.detection.convert", "eval.detection.config"]


def help_text(module: str) -> str:
    import contextlib
    import importlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    return out.getvalue()


@pytest.mark.parametrize("module", EVAL_COMMANDS)
def test_eval_help_is_consistent(module):
    text = help_text(module)
    assert "(default: None)" not in text and "default: True" not in text and "default: False" not in text
    import re

    assert not re.search(r"default[^()]*\)\s*\(default:", " ".join(text.split())), "a default shown twice"
    assert "--out FILE" in text and "--output FILE" not in text
    for former in ("--imagenet-root", "--voc-root", "--places-root"):
        assert former not in text
    if module not in ("eval.detection.convert", "eval.detection.config", "eval.detection.launch"):
        assert "--progress, --no-progress" in text and "--data-root DIR" in text


def test_former_option_spellings_still_work():
    from eval import semisup

    args = semisup._build_parser().parse_args(["--checkpoint", "c", "--imagenet-root", "/i", "--subset-file", "s",
                                               "--label-percent", "1", "--output", "o.json"])
    assert args.imagenet_root == "/i" and args.out == "o.json"


def test_reproduce_help_is_plain_text():
    from reproduce.cli import build_parser

    text = build_parser().format_help()
    assert "``" not in text and "number of training seeds" in text and "--progress, --no-progress" in text


def test_a_table_mixing_copies_of_the_data_is_flagged(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "mini" / "store", results / "mini" / "store")
    train_records = sorted(p for p in (results / "mini" / "store").glob("*.json")
                           if json.loads(p.read_text()).get("kind") == "train")
    for i, path in enumerate(train_records):  # every other train run read another copy
        digest = "ab"[i % 2] * 64
        record = json.loads(path.read_text())
        record["result"]["final"]["data"] = {"dataset": "cifar10", "path": "/x", "bytes": 1, "sha256": digest}
        path.write_text(json.dumps(record))
    (tmp_path / "empty").mkdir()
    result = render_table5(tmp_path, results, tmp_path / "empty", "--collect-only")
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning: table5 mixes"))
    assert "cifar10 sha256 aaaaaaaaaaaa: " in warning and "cifar10 sha256 bbbbbbbbbbbb: " in warning


def test_runs_of_different_data_sets_are_not_a_mix_of_copies(tmp_path):
    from ifnd.config import TrainConfig
    from reproduce.cli import mixed_copies
    from reproduce.runs import TrainRun
    from reproduce.store import Store

    store = Store("mini", tmp_path / "results", tmp_path / "runs")
    runs = [TrainRun(TrainConfig(dataset=dataset, seed=seed), frozenset({"dataset", "seed"}))
            for dataset in ("cifar10", "cifar100") for seed in (0, 1)]
    for run in runs[:3]:
        data = {"dataset": run.config.dataset, "path": f"/data/{run.config.dataset}"}
        store.put(run.key, {"kind": "train", "result": {"final": {"data": data}}})
    assert mixed_copies(runs, store, {"cifar100": "cifar100 at /data/cifar100"}) is None  # Table 5 at rehearsal
    assert mixed_copies(runs, store, {"cifar100": "cifar100 at /elsewhere"}) == \
        "cifar100 at /data/cifar100: 1 run, cifar100 at /elsewhere: the runs to train now"


def test_a_sweep_interrupted_alone_stops_its_workers_and_says_how_to_resume(tmp_path, tiny_cifar):
    """``kill -INT`` on the sweep (not its process group, as Ctrl-C on a terminal does): the local
    launcher's workers stop at once instead of finishing their runs first."""
    import time

    process = subprocess.Popen([sys.executable, "-m", "reproduce", "table5", "--profile", "smoke", "--launcher",
                                "local", "--jobs", "1", "--threads", "1", "--no-progress", "--results-dir", "results",
                                "--runs-dir", "runs", *[a for s in ("epochs=200", "train_subset=0", "batch_size=32", "probe_train_subset=0",
                                                   "eval_test_subset=0", "knn_k=10") for a in ("--set", s)]],
                               cwd=tmp_path, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "IFND_DATA_ROOT": str(tiny_cifar)})
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs" / "smoke").glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)  # a worker is training (its first epoch is written)
    workers = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "spawn_main"], capture_output=True,
                             text=True).stdout.split()
    process.send_signal(signal.SIGINT)
    try:
        _, rest = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the sweep waited for its workers' runs")
    assert process.returncode == 130, rest
    assert "interrupted: finished runs are kept; the same command resumes the rest" in rest and "Traceback" not in rest
    def running(pid: str) -> bool:
        status = Path(f"/proc/{pid}/status")
        return status.exists() and "zombie" not in status.read_text()

    deadline = time.monotonic() + 10
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers and not any(map(running, workers))
