"""Launchers: an interrupted task resumes, local processes, submitit's local executor, the SLURM dry run."""
from __future__ import annotations

import os

import pytest

from conftest import write_image_folder
from ifnd.io import read_jsonl
from reproduce import execute
from reproduce.cli import main
from reproduce.execute import StoreSpec, Task, execute_task
from reproduce.launchers import LaunchError, LocalLauncher, SlurmLauncher, SlurmTask, load_cluster_config
from reproduce.paths import DataPaths
from reproduce.profiles import apply_overrides, get_profile
from reproduce.specs.base import Context, method, pretrain, probe
from reproduce.store import Store

CLUSTER = """
[slurm]
partition = "gpu-test"
timeout_min = 120
gpus_per_node = 0
cpus_per_task = 2
mem_gb = 8
array_parallelism = 4

[slurm.paper]
gpus_per_node = 8
tasks_per_node = 8
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    data = write_image_folder(tmp_path / "tiny", per_class=12)
    monkeypatch.setenv("IFND_DATA_ROOT", str(data))
    monkeypatch.setenv("IFND_PATHS", str(tmp_path / "paths.toml"))
    (tmp_path / "paths.toml").write_text("[data]\n")
    profile = apply_overrides(get_profile("smoke"), ["train_subset=0", "batch_size=16", "probe_train_subset=0",
                                                     "eval_test_subset=0", "knn_k=5", "probe.epochs=2"])
    store = Store("smoke", tmp_path / "results", tmp_path / "runs")
    ctx = Context(profile, DataPaths.load(), store)
    spec = StoreSpec("smoke", str(tmp_path / "results"), str(tmp_path / "runs"))
    return ctx, store, spec, tmp_path


def task_of(ctx, name: str, seed: int = 0) -> Task:
    train = pretrain(ctx, method(ctx, name), seed, label=f"{name} seed {seed}")
    return Task(train, [probe(ctx, train)])


def test_an_interrupted_task_resumes_from_its_last_epoch(setup, monkeypatch):
    ctx, store, spec, _ = setup
    task = task_of(ctx, "ifnd")
    original = execute.SnapshotTrainer.train_epoch

    def dies_in_epoch_two(self):
        if self.epoch == 1:
            raise RuntimeError("killed")
        return original(self)

    monkeypatch.setattr(execute.SnapshotTrainer, "train_epoch", dies_in_epoch_two)
    status = execute_task(task, spec, progress=False, threads=1)
    assert status["status"] == "failed" and "killed" in status["error"]
    assert not store.has(task.key) and not store.busy(task.key)
    assert [r["epoch"] for r in read_jsonl(store.train_dir(task.key) / "metrics.jsonl")] == [1]
    monkeypatch.setattr(execute.SnapshotTrainer, "train_epoch", original)
    status = execute_task(task, spec, progress=False, threads=1)
    assert status["status"] == "done" and status["trained"] and status["evaluated"] == [task.evals[0].key]
    assert [r["epoch"] for r in read_jsonl(store.train_dir(task.key) / "metrics.jsonl")] == [1, 2]
    assert store.get(task.key)["result"]["snapshots"] == {"1": "checkpoints/epoch_0001.pt",
                                                           "2": "checkpoints/epoch_0002.pt"}
    again = execute_task(task, spec, progress=False, threads=1)
    assert not again["trained"] and again["evaluated"] == []


def test_local_launcher_runs_tasks_in_processes(setup):
    ctx, store, spec, _ = setup
    tasks = [task_of(ctx, "simclr", 0), task_of(ctx, "supcon", 0)]
    statuses = LocalLauncher(jobs=2, threads=1).launch(tasks, spec, progress=False)
    assert sorted(s["status"] for s in statuses) == ["done", "done"]
    assert all(store.has(t.key) and store.has(t.evals[0].key) for t in tasks)


def test_submitit_local_executor_runs_and_requeues(setup):
    ctx, store, spec, tmp_path = setup
    (tmp_path / "cluster.toml").write_text(CLUSTER)
    task = task_of(ctx, "simclr", 1)
    launcher = SlurmLauncher("smoke", str(tmp_path / "cluster.toml"), cluster="local", folder=tmp_path / "jobs")
    [status] = launcher.launch([task], spec, name="ifnd-test", wait=True)
    assert status["status"] == "done" and status["trained"], status
    assert store.has(task.key) and store.has(task.evals[0].key)
    assert list((tmp_path / "jobs").glob("submitted-*.json"))
    # Preemption: submitit calls checkpoint(), which resubmits the same task (the trainer resumes).
    delayed = SlurmTask(task, spec).checkpoint()
    assert isinstance(delayed.function, SlurmTask) and delayed.function.task.key == task.key


def test_cluster_config_errors_are_clear(tmp_path):
    config = tmp_path / "cluster.toml"
    config.write_text("[slurm]\ntimeout_min = 10\n")
    with pytest.raises(LaunchError, match=r"has no partition: set partition = "):
        load_cluster_config(config, "mini")
    with pytest.raises(LaunchError, match="does not exist: copy reproduce/cluster.example.toml"):
        load_cluster_config(tmp_path / "missing.toml", "mini")
    config.write_text(CLUSTER)
    merged, _ = load_cluster_config(config, "paper")
    assert merged["gpus_per_node"] == 8 and merged["partition"] == "gpu-test"


def test_slurm_dry_run_prints_the_job_array(setup, capsys):
    ctx, store, spec, tmp_path = setup
    (tmp_path / "cluster.toml").write_text(CLUSTER)
    code = main(["table6", "--profile", "smoke", "--launcher", "slurm", "--dry-run", "--cluster",
                 str(tmp_path / "cluster.toml"), "--results-dir", str(tmp_path / "results"), "--runs-dir",
                 str(tmp_path / "runs"), "--set", "train_subset=0", "--set", "batch_size=16",
                 "--set", "probe_train_subset=0", "--set", "eval_test_subset=0", "--set", "knn_k=5",
                 "--set", "probe.epochs=2"])
    out = capsys.readouterr().out
    assert code == 0
    # Table 6's 9 rows ([a]-[h] and the oracle [o]) train 8 runs at smoke: [c] is [b]'s training there (its first
    # refresh comes after the step).
    assert "8 tasks as one job array 'ifnd-smoke'" in out and "partition=gpu-test" in out
    assert "#SBATCH --partition=gpu-test" in out and "#SBATCH --array=0-7%4" in out
    assert task_of(ctx, "simclr").key in out and "simclr/none/instance" in out
    assert not store.keys()  # a dry run runs nothing


def test_example_cluster_config_renders_an_sbatch_script(tmp_path):
    from reproduce.launchers import sbatch_preview
    from reproduce.paths import PROJECT_ROOT

    text = (PROJECT_ROOT / "reproduce" / "cluster.example.toml").read_text().replace('partition = ""',
                                                                                  'partition = "gpu"')
    (tmp_path / "cluster.toml").write_text(text)
    for profile, gpus in (("mini", 1), ("paper", 8)):
        config, _ = load_cluster_config(tmp_path / "cluster.toml", profile)
        script = sbatch_preview(config, tmp_path / "%j", "ifnd-test", 3)
        assert "#SBATCH --partition=gpu" in script and f"#SBATCH --gpus-per-node={gpus}" in script
        assert "#SBATCH --array=0-2%3" in script  # parallelism capped at the array size


def test_tasks_queued_on_slurm_are_not_launched_twice(tmp_path):
    import json

    from reproduce.launchers import queued_on_slurm

    spec = StoreSpec("paper", str(tmp_path / "results"), str(tmp_path / "runs"))
    folder = tmp_path / "runs" / "paper" / "slurm"
    folder.mkdir(parents=True)
    (folder / "submitted-1.json").write_text(json.dumps({"cluster": "slurm", "jobs": [
        {"job_id": "100_0", "key": "aaa"}, {"job_id": "100_1", "key": "bbb"}, {"job_id": "100_2", "key": "ccc"}]}))
    states = {"100_0": "RUNNING", "100_1": "COMPLETED", "100_2": "PENDING"}
    assert queued_on_slurm(spec, {"aaa", "bbb", "zzz"}, states.__getitem__) == {"aaa": "100_0"}
    assert queued_on_slurm(spec, {"ccc"}, lambda job: 1 / 0) == {}  # unreadable state: not skipped


def test_preempted_submitit_job_checkpoints_requeues_and_resumes(setup):
    """submitit's preemption signal (what SLURM sends before preempting) on a running local job:
    checkpoint() requeues the task, which resumes from its last finished epoch and completes."""
    import time

    import submitit

    ctx, store, spec, tmp_path = setup
    ctx = Context(apply_overrides(ctx.profile, ["epochs=12"]), ctx.paths, store)
    task = task_of(ctx, "simclr")
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(SlurmTask(task, spec))
    metrics = store.train_dir(task.key) / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and len(read_jsonl(metrics)) < 2:
        time.sleep(0.2)
    assert len(read_jsonl(metrics)) >= 2, "the job did not start training in time"
    # SLURM signals the task process before preempting it (submitit's default: USR2); the local
    # executor's controller relaunches a task that exits asking to be requeued.
    import signal
    import subprocess

    tasks = subprocess.run(["pgrep", "-P", str(job._process.pid)], capture_output=True, text=True).stdout.split()
    assert tasks, "no task process under the submitit controller"
    for pid in tasks:
        os.kill(int(pid), signal.SIGUSR2)
    status = job.result()
    assert status["status"] == "done" and status["trained"], status
    epochs = [r["epoch"] for r in read_jsonl(metrics)]
    assert epochs == list(range(1, 13))  # every epoch exactly once: resumed, not restarted
    log = (job.stdout() or "") + (job.stderr() or "")
    assert "requeued" in log.lower(), log[-2000:]


def _job_rank(rank: int, world: int, port: int, task: Task, spec: StoreSpec, out: str) -> None:
    """One process of a multi-process SLURM task, as SlurmTask runs it (rank 0 holds the lock)."""
    import json

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    status = execute_task(task, spec, progress=False, threads=1, lock=rank == 0)
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump({"status": status["status"], "trained": status["trained"]}, fh)


def test_a_multi_process_job_whose_run_another_sweep_holds_ends_on_every_rank(setup):
    """Rank 0 finds the run's lock taken: every rank must return 'busy', none may wait in training."""
    import json
    import socket
    import time

    import torch.multiprocessing as mp

    ctx, store, spec, tmp = setup
    task = task_of(ctx, "simclr")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with store.claim(task.key):  # another sweep is working on this run
        job = mp.spawn(_job_rank, args=(2, port, task, spec, str(tmp)), nprocs=2, join=False)
        deadline = time.time() + 120
        while not job.join(timeout=5):
            if time.time() > deadline:
                for process in job.processes:
                    process.kill()
                pytest.fail("a rank of the job did not return within 120 s")
    statuses = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]
    assert statuses == [{"status": "busy", "trained": False}] * 2


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except FileNotFoundError:
        return False


def child_dies_with_parent(parent_code: str) -> bool:
    """Run ``python -c parent_code`` (it prints the pid of a child it started), SIGKILL it, and say
    whether that child ended within 20 s."""
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        return not alive(child)
    finally:
        parent.kill()
        if alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_local_worker_dies_with_the_sweep_that_spawned_it():
    """A killed sweep leaves no orphan training on: its workers get SIGTERM (ifnd.processes.die_with_parent)."""
    assert child_dies_with_parent(
        "import os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\n"
        "from ifnd.processes import die_with_parent\n"
        "pool = ProcessPoolExecutor(1, mp_context=get_context('spawn'), initializer=die_with_parent)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "pool.submit(time.sleep, 120)\n"
        "time.sleep(120)\n"), "the worker outlived the killed sweep"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="PR_SET_PDEATHSIG is Linux's")
def test_an_evaluation_subprocess_dies_with_the_worker_that_started_it():
    """An evaluation command (``python -m eval.<protocol>``, detectron2's training) run through
    ``ifnd.processes.run_tied`` ends when the worker running it is killed."""
    assert child_dies_with_parent(
        "import sys\n"
        "from ifnd.processes import run_tied\n"
        "run_tied([sys.executable, '-c', 'import os, time; print(os.getpid(), flush=True); time.sleep(120)'])\n"), \
        "the evaluation outlived the killed worker"
