"""The SLURM path on a real cluster: ``python -m reproduce table5 --profile smoke --launcher slurm``.

Needs the single-node cluster of ``scripts/slurm-single-node start`` (partition ``local``). One
module-scoped sweep feeds the tests: the table's 8 runs go out as one job array; element 1 is
preempted with the signal SLURM sends before preempting (``scancel --signal=USR2``); element 7
finds a corrupted checkpoint and fails. Then a re-run reports that failure with its log and
submits it again (the checkpoint removed), and a last re-run collects all 26 runs and renders.
A separate job hits its 1-minute time limit and is requeued until it finishes, and a 2-task job
trains one run with torch.distributed (gloo) to the weights of the 1-process run. In CI (``CI=true``) a missing cluster fails these
tests; elsewhere they are skipped with the reason.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import require, write_image_folder
from ifnd.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-single-node"
PARTITION = "local"
EPOCHS = 10  # enough for element 1 to be caught between its first and its last epoch
SETS = ["train_subset=0", "batch_size=32", "probe_train_subset=0", "eval_test_subset=0", "knn_k=10",
        f"epochs={EPOCHS}", "oracle_levels=none"]  # Table 5's paper rows: an 8-task array
PREEMPTED, BROKEN = 1, 7  # array elements
WAIT_S = 900

def cluster_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed: scripts/slurm-single-node start installs and starts a single-node cluster"
    out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 or not re.match(r"(idle|mixed|allocated)", out.stdout.strip()):
        return (f"no single-node SLURM cluster is up (partition '{PARTITION}': {out.stdout.strip() or out.stderr.strip()}): "
                "scripts/slurm-single-node start")
    return None


def wait_for(condition, timeout: float, every: float = 0.2):
    """``condition()``'s first true value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    return None


def wait_until(condition, what: str, timeout: float = WAIT_S, every: float = 0.2):
    value = wait_for(condition, timeout, every)
    if not value:
        pytest.fail(f"waited {timeout:.0f} s for {what}")
    return value


def in_queue(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return True  # the controller did not answer (busy): not known to have left, ask again
    return bool(out.stdout.strip())


def restarts(job: str) -> int | None:
    """How often SLURM has restarted (requeued) the job; None when ``scontrol`` cannot say."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    found = re.search(r"\bRestarts=(\d+)", out.stdout)
    return int(found[1]) if found else None


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    require(cluster_problem())
    root = tmp_path_factory.mktemp("slurm-real")
    data = write_image_folder(root / "tiny-cifar", per_class=16)
    (root / "paths.toml").write_text("[data]\n")
    subprocess.run([str(SCRIPT), "cluster-toml", str(root / "cluster.toml")], check=True, capture_output=True)
    env = dict(os.environ, IFND_DATA_ROOT=str(data), IFND_PATHS=str(root / "paths.toml"),
               IFND_CACHE=str(root / "cache"), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                                     os.environ.get("PYTHONPATH")])))
    args = [sys.executable, "-m", "reproduce", "table5", "--profile", "smoke", "--launcher", "slurm", "--cluster",
            str(root / "cluster.toml"), "--results-dir", str(root / "results"), "--runs-dir", str(root / "runs"),
            "--no-progress", *[a for s in SETS for a in ("--set", s)]]

    def reproduce() -> subprocess.CompletedProcess:
        return subprocess.run(args, env=env, cwd=root, capture_output=True, text=True, timeout=WAIT_S)

    with pytest.MonkeyPatch.context() as mp:
        for name in ("IFND_DATA_ROOT", "IFND_PATHS", "IFND_CACHE"):
            mp.setenv(name, env[name])
        tasks, ctx = plan(root)
    runs = root / "runs" / "smoke"
    broken = runs / tasks[BROKEN].key / "checkpoints" / "last.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")

    first = reproduce()
    assert first.returncode == 0, first.stderr
    array = re.search(r"as job array (\d+) \(slurm\)", first.stderr)
    assert array, first.stderr
    array = array[1]

    metrics = runs / tasks[PREEMPTED].key / "metrics.jsonl"
    before = wait_until(lambda: read_jsonl(metrics) if metrics.exists() else None, "element 1's first epoch")
    assert len(before) < EPOCHS, "element 1 finished before it could be preempted: raise EPOCHS"
    # scancel may answer "Job can not be altered now" although the signal went out, and then retries
    # on its own for a minute, by which time the job is requeued: a second USR2 would kill the requeued
    # job before submitit's handler is installed, leaving no result. So scancel is stopped as soon as
    # the job's log says the signal arrived, and never sent to a job SLURM has restarted.
    element = f"{array}_{PREEMPTED}"
    caught = lambda: "Caught signal SIGUSR2" in job_log(runs, element)  # noqa: E731
    for _ in range(5):
        if caught() or restarts(element) not in (0, None):
            break
        sender = subprocess.Popen(["scancel", "--signal=USR2", element], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            if wait_for(caught, 60, every=0.05):
                break
        finally:
            sender.kill()
            sender.wait()
    if not caught():
        pytest.fail(f"element {PREEMPTED} never received SIGUSR2: {job_log(runs, element)[-2000:]}")
    wait_until(lambda: not in_queue(array), f"job array {array} to finish", every=1)

    broken.unlink()  # the user's fix; the re-run reports the failure, then submits the run again
    second = reproduce()
    resubmitted = re.search(r"as job array (\d+) \(slurm\)", second.stderr)
    if resubmitted:
        wait_until(lambda: not in_queue(resubmitted[1]), "the resubmitted run to finish", every=1)
    third = reproduce()
    return {"root": root, "runs": runs, "tasks": tasks, "ctx": ctx, "array": array, "before": before,
            "metrics": metrics, "first": first, "second": second, "third": third, "env": env}


def plan(root: Path):
    """The table's tasks in array order (what the CLI submits), planned here as the CLI plans them."""
    from reproduce.cli import plan_tasks
    from reproduce.paths import DataPaths
    from reproduce.profiles import apply_overrides, get_profile
    from reproduce.specs import SPECS
    from reproduce.specs.base import Context
    from reproduce.store import Store

    ctx = Context(apply_overrides(get_profile("smoke"), SETS), DataPaths.load(),
                  Store("smoke", root / "results", root / "runs"))
    tasks = plan_tasks([SPECS["table5"].build(ctx)])
    return tasks, ctx


def job_log(runs: Path, job: str) -> str:
    return "".join(p.read_text() for p in sorted((runs / "slurm" / job).glob("*_log.*")))


@pytest.mark.slurm
def test_the_table_is_submitted_as_one_job_array(sweep):
    assert "submitted 8 tasks as job array" in sweep["first"].stderr
    [record] = [json.loads(p.read_text()) for p in (sweep["runs"] / "slurm").glob("submitted-*.json")
                if f'"{sweep["array"]}_0"' in p.read_text()]
    assert [job["key"] for job in record["jobs"]] == [t.key for t in sweep["tasks"]]
    assert [job["job_id"] for job in record["jobs"]] == [f"{sweep['array']}_{i}" for i in range(8)]


@pytest.mark.slurm
def test_a_preempted_element_is_requeued_and_resumes_every_epoch_once(sweep):
    task = sweep["tasks"][PREEMPTED]
    log = job_log(sweep["runs"], f"{sweep['array']}_{PREEMPTED}")
    assert "Caught signal SIGUSR2" in log and "this job is preempted" in log, log[-3000:]
    assert "DUE TO JOB REQUEUE" in log, log[-3000:]  # submitit asked SLURM to requeue the element
    assert "Job completed successfully" in log
    epochs = [r["epoch"] for r in read_jsonl(sweep["metrics"])]
    assert epochs == list(range(1, EPOCHS + 1))  # every epoch exactly once
    # Resumed, not restarted: the epochs before the signal are kept as they were, wall-clock
    # epoch_seconds included (a restart would have timed them anew).
    assert read_jsonl(sweep["metrics"])[:len(sweep["before"])] == sweep["before"]
    store = sweep["ctx"].store
    assert store.has(task.key) and all(store.has(e.key) for e in task.evals)


@pytest.mark.slurm
def test_a_failed_element_is_reported_with_its_log_then_resubmitted(sweep):
    task = sweep["tasks"][BROKEN]
    second = sweep["second"]
    assert second.returncode == 1, second.stderr
    report = re.search(rf"FAILED {task.key} .*\[SLURM job ({sweep['array']}_{BROKEN}), log (\S+)\]", second.stderr)
    assert report, second.stderr
    log = Path(report[2]).read_text()
    assert "Traceback" in log and f"FAILED {task.key}" in log  # the job's log holds the failure and its traceback
    assert "submitted 1 tasks as job array" in second.stderr  # only the failed run goes out again
    assert sweep["ctx"].store.has(task.key)


@pytest.mark.slurm
def test_a_rerun_collects_every_run_and_renders(sweep):
    third = sweep["third"]
    assert third.returncode == 0, third.stderr
    assert "table5: 26/26 runs finished" in third.stderr
    assert "submitted" not in third.stderr and "FAILED" not in third.stderr
    md = (sweep["root"] / "results" / "smoke" / "table5.md").read_text()
    assert "Profile: **smoke**" in md and "pending" not in md


@pytest.mark.slurm
def test_a_job_at_its_time_limit_is_requeued_and_finishes(sweep, tmp_path):
    """SLURM signals the job before its 1-minute limit (``--signal=USR2@1``: 29-59 s into it, at the
    controller's 30-s checks); submitit sees it has timed out, checkpoints and requeues it; the
    requeued job resumes. The run is sized from the sweep's measured epoch time to last about 85 s."""
    from reproduce.execute import StoreSpec, Task
    from reproduce.launchers import SlurmLauncher
    from reproduce.profiles import apply_overrides
    from reproduce.specs import SPECS
    from reproduce.specs.base import Context

    seconds = [r["epoch_seconds"] for r in read_jsonl(sweep["metrics"])]
    # Each run is cut 29-59 s after it starts, its start-up included: 85 s of training is cut at
    # least once, and up to 10 requeues leave room for a slow machine.
    epochs = max(EPOCHS + 1, math.ceil(85 / (sum(seconds) / len(seconds))))
    ctx = sweep["ctx"]
    ctx = Context(apply_overrides(ctx.profile, [f"epochs={epochs}"]), ctx.paths, ctx.store)
    from reproduce.cli import plan_tasks

    with pytest.MonkeyPatch.context() as mp:
        for name in ("IFND_DATA_ROOT", "IFND_PATHS", "IFND_CACHE"):
            mp.setenv(name, sweep["env"][name])
        tasks = plan_tasks([SPECS["table5"].build(ctx)])
        task = Task(tasks[0].train)  # training only
        cluster = tmp_path / "cluster.toml"
        cluster.write_text(f'[slurm]\npartition = "{PARTITION}"\ntimeout_min = 1\nsignal_delay_s = 1\n'
                           "max_num_timeout = 10\ngpus_per_node = 0\ncpus_per_task = 1\n")
        spec = StoreSpec("smoke", str(sweep["root"] / "results"), str(sweep["root"] / "runs"))
        [status] = SlurmLauncher("smoke", str(cluster), folder=tmp_path / "jobs").launch([task], spec, "ifnd-timeout")
    job = status["job_id"]
    wait_until(lambda: not in_queue(job), f"job {job} to finish", every=1)
    log = "".join(p.read_text() for p in sorted((tmp_path / "jobs" / job).glob("*_log.*")))
    assert "this job is timed-out" in log, log[-3000:]
    assert "Job completed successfully" in log, log[-3000:]
    with open(next((tmp_path / "jobs" / job).glob("*_result.pkl")), "rb") as fh:
        outcome, result = pickle.load(fh)
    assert outcome == "success" and result["status"] == "done" and result["trained"], result
    metrics = read_jsonl(ctx.store.train_dir(task.key) / "metrics.jsonl")
    assert [r["epoch"] for r in metrics] == list(range(1, epochs + 1))
    assert ctx.store.has(task.key)


@pytest.mark.slurm
def test_a_two_task_job_ends_with_the_one_process_weights(sweep, tmp_path):
    """The ``paper`` profile's multi-process path (``tasks_per_node`` > 1): SLURM starts two tasks,
    :class:`reproduce.launchers.SlurmTask` exports submitit's torch.distributed environment, both
    join one gloo group and train the run with half the global batch each; rank 0 alone writes it.
    The run (MoCo v2 with 2 BatchNorm groups, :func:`conftest.moco_job`) ends with the weights the
    same run trained in one process has."""
    from conftest import final_weights, moco_job
    from reproduce.execute import StoreSpec
    from reproduce.launchers import SlurmLauncher, run_job

    task = moco_job(sweep["root"] / "tiny-cifar")
    stores = {n: StoreSpec("smoke", str(tmp_path / f"results-{n}"), str(tmp_path / f"runs-{n}")) for n in (1, 2)}
    cluster = tmp_path / "cluster.toml"
    cluster.write_text(f'[slurm]\npartition = "{PARTITION}"\ntimeout_min = 60\ngpus_per_node = 0\n'
                       "cpus_per_task = 1\ntasks_per_node = 2\n")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("IFND_DATA_ROOT", "IFND_PATHS", "IFND_CACHE"):
            mp.setenv(name, sweep["env"][name])
        [status] = SlurmLauncher("smoke", str(cluster), folder=tmp_path / "jobs").launch([task], stores[2], "ifnd-ddp")
        single = run_job(task, stores[1], progress=False, threads=1)
    assert single["status"] == "done", single.get("error")
    job = status["job_id"]
    wait_until(lambda: not in_queue(job), f"job {job} to finish", every=1)
    results = {}
    for rank in (0, 1):
        with open(tmp_path / "jobs" / job / f"{job}_{rank}_result.pkl", "rb") as fh:
            results[rank] = pickle.load(fh)
    assert all(outcome == "success" and value["status"] == "done" and value["trained"]
               for outcome, value in results.values()), results
    distributed = stores[2].open()
    assert distributed.has(task.key)
    assert [r["epoch"] for r in read_jsonl(distributed.train_dir(task.key) / "metrics.jsonl")] == [1, 2]
    assert distributed.get(task.key)["config"] == stores[1].open().get(task.key)["config"]
    one, two = final_weights(stores[1], task.key), final_weights(stores[2], task.key)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name].float(), two[name].float(), atol=1e-5, rtol=1e-4), name


def test_failures_of_finished_jobs_are_read_from_their_results(tmp_path):
    """What a re-run reports, from submitit's result files (no cluster needed)."""
    from reproduce.execute import StoreSpec
    from reproduce.launchers import failed_on_slurm

    folder = tmp_path / "runs" / "smoke" / "slurm"
    jobs = {"done": ("success", {"status": "done"}), "failed": ("success", {"status": "failed", "error": "E: x",
                                                                          "traceback": "Traceback ..."}),
            "crashed": ("error", "Traceback (most recent call last):\nImportError: no module y\n"), "killed": None}
    for i, (key, result) in enumerate(jobs.items()):
        (folder / f"9_{i}").mkdir(parents=True)
        if result is not None:
            (folder / f"9_{i}" / f"9_{i}_0_result.pkl").write_bytes(pickle.dumps(result))
    (folder / "submitted-1.json").write_text(json.dumps({"cluster": "slurm", "jobs": [
        {"job_id": f"9_{i}", "key": key, "label": f"run {key}"} for i, key in enumerate(jobs)]}))
    spec = StoreSpec("smoke", str(tmp_path / "results"), str(tmp_path / "runs"))
    failures = {f["key"]: f for f in failed_on_slurm(spec, set(jobs) | {"never-submitted"})}
    assert set(failures) == {"failed", "crashed", "killed"}
    assert failures["failed"]["error"] == f"E: x [SLURM job 9_1, log {folder}/9_1/9_1_0_log.err]"
    assert failures["failed"]["traceback"] == "Traceback ..." and failures["failed"]["label"] == "run failed"
    assert failures["crashed"]["error"].startswith("ImportError: no module y [SLURM job 9_2")
    assert failures["killed"]["error"].startswith("ended without a result (cancelled")
