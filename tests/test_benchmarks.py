"""Smoke tests of benchmarks/: every script runs end to end on tiny sizes (``--quick``).

No timing is asserted (the machines are shared and noisy); only that each script runs, prints its
table and writes well-formed figures.
"""
import json
import sys
from pathlib import Path

import pytest
import torch

# benchmarks/ is run from the checkout (``python -m benchmarks.run_all``), not installed: make it
# importable when pytest is started without the repository root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common, detection_cost, gpu, loss_kernel, precision, run_all, throughput, train_step  # noqa: E402,E501


def figures(tmp_path, name):
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_loss_kernel_quick(tmp_path, capsys):
    assert loss_kernel.main(["--quick", "--json", str(tmp_path / "k.json")]) == 0
    out = figures(tmp_path, "k")
    for case in ("moco", "simclr"):
        assert set(out["cases"][case]["ratio_vs_infonce"]) >= {"infonce", "ifnd", "kernel", "pairs"}
        assert out["cases"][case]["correctness"]["kernel_grad_diff_rel"] < 1e-4
        assert out["cases"][case]["correctness"]["kernel_loss_diff"] < 1e-4
    assert "| variant" in capsys.readouterr().out


def test_train_step_quick(tiny_cifar, tmp_path):
    assert train_step.main(["--quick", "--data-root", str(tiny_cifar), "--json", str(tmp_path / "s.json")]) == 0
    assert set(figures(tmp_path, "s")["ratio_vs_simclr"]) == {"simclr", "ifnd"}


def test_throughput_quick(tiny_cifar, tmp_path):
    assert throughput.main(["--quick", "--data-root", str(tiny_cifar), "--json", str(tmp_path / "t.json")]) == 0
    assert figures(tmp_path, "t")["throughput_ratio_trainer_over_hand"] > 0


def test_precision_quick(tiny_cifar, tmp_path):
    assert precision.main(["--quick", "--data-root", str(tiny_cifar), "--json", str(tmp_path / "p.json")]) == 0
    out = figures(tmp_path, "p")
    assert set(out["ratio_vs_fp32"]) == {"off", "bf16"} and isinstance(out["onednn_bf16"], bool)


def test_detection_cost_quick(tiny_cifar, tmp_path, capsys):
    assert detection_cost.main(["--quick", "--data-root", str(tiny_cifar), "--json", str(tmp_path / "d.json")]) == 0
    out = figures(tmp_path, "d")
    assert len(out["refresh"]) == 4 and all(r["refresh_s"] > 0 for r in out["refresh"].values())
    assert "paper scale" in capsys.readouterr().out


def test_gpu_script_skips_cleanly_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the skip path does not apply")
    assert gpu.main(["--out", str(tmp_path / "g.json")]) == 0
    assert "no GPU: skipped" in capsys.readouterr().out
    assert figures(tmp_path, "g")["skipped"] == "no GPU"


def test_gpu_script_code_path_on_cpu(tmp_path):
    assert gpu.main(["--device", "cpu", "--quick", "--out", str(tmp_path / "g.json")]) == 0
    out = figures(tmp_path, "g")
    assert set(out["imagenet_step"]["images_per_second"]) == {"no detection", "IFND"}
    assert out["refresh"]["seconds"] and all(s > 0 for s in out["refresh"]["seconds"].values())


def test_run_all_runs_a_script_in_its_own_process(tmp_path):
    assert run_all.main(["--quick", "--only", "loss_kernel", "--out-dir", str(tmp_path)]) == 0
    assert "moco" in figures(tmp_path, "loss_kernel")["cases"]


def test_tensor_memory_counts_what_the_block_allocates():
    x = torch.ones(1000, 1000)
    with common.TensorMemory() as tracker:
        y = x * 2          # 4 MB, alive
        z = (y + 1).sum()  # 4 MB temporary
        del z
    assert 8e6 <= tracker.peak <= 8.1e6 and tracker.total >= 8e6


def test_interleaved_alternates_and_rotates():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=0)
    assert calls == ["a", "b", "b", "a", "a", "b"] and all(len(t) == 3 for t in times.values())
