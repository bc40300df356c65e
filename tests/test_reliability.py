"""Kill -9 at a random moment, resume, and end with the uninterrupted run's weights; atomic files."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def train_cmd(data, run_dir, extra=()):
    return [sys.executable, "-m", "ifnd.train", "--mode", "ifnd", "--data-root", str(data), "--run-dir", str(run_dir),
            "--arch", "convnet4", "--epochs", "6", "--batch-size", "40", "--lr", "0.1", "--warmup-epochs", "1",
            "--refresh-every", "2", "--cluster-numbers", "5", "10", "--knn-k", "10", "--threads", "1",
            "--no-progress", *extra]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def final_weights(run_dir):
    return torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=False)


@pytest.mark.parametrize("framework_args", [(), ("--framework", "moco", "--queue-size", "80")], ids=["simclr", "moco"])
def test_sigkill_then_resume_matches_uninterrupted(tiny_cifar, tmp_path, framework_args):
    subprocess.run(train_cmd(tiny_cifar, tmp_path / "full", framework_args), check=True, env=env(), cwd=ROOT,
                   capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(tiny_cifar, run, framework_args), env=env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.02)
    time.sleep(random.Random(0).uniform(0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final.json").exists(), "the run finished before it could be killed"
    subprocess.run(train_cmd(tiny_cifar, run, framework_args) + ["--resume"], check=True, env=env(), cwd=ROOT,
                   capture_output=True)
    full, resumed = final_weights(tmp_path / "full"), final_weights(run)
    assert resumed["epoch"] == full["epoch"] == 6
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert torch.equal(full["detector"]["labels"], resumed["detector"]["labels"])
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k not in ("epoch_seconds", "images_per_second")}
                       for l in Path(p).read_text().splitlines()]
    assert strip(tmp_path / "full" / "metrics.jsonl") == strip(metrics)


WRITER = """
import sys, itertools
from ifnd.io import atomic_write_json, atomic_torch_save
import torch
path = sys.argv[1]
print("ready", flush=True)
for i in itertools.count():
    atomic_write_json(path + ".json", {"i": i, "payload": list(range(20000))})
    atomic_torch_save(path + ".pt", {"i": i, "w": torch.randn(200, 200)})
"""


def test_killed_writers_never_leave_a_truncated_file(tmp_path):
    target = tmp_path / "result"
    rng = random.Random(1)
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env(), cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.with_suffix(".json").exists():
            assert json.loads(target.with_suffix(".json").read_text())["payload"][-1] == 19999
        if target.with_suffix(".pt").exists():
            assert torch.load(target.with_suffix(".pt"))["w"].shape == (200, 200)
    assert target.with_suffix(".json").exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 10  # a kill mid-write leaves at most one temporary file, never the target


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat

    from ifnd.io import atomic_write_json

    atomic_write_json(tmp_path / "record.json", {"a": 1})
    (tmp_path / "plain.json").write_text("{}")
    mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
    assert mode("record.json") == mode("plain.json")
