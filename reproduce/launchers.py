"""Where tasks run: this process (inline), a few local processes (local), or SLURM (slurm).

Every launcher hands each task to :func:`reproduce.execute.execute_task`, which skips what the
store has and resumes what was interrupted; so a launcher can be killed and re-run at any time.

SLURM goes through submitit: one job array per grid (``executor.batch()``), partition, GPUs and
time from a cluster config file (``reproduce/cluster.toml``, see ``cluster.example.toml``). The job
callable is :class:`SlurmTask`: on preemption or timeout submitit calls its ``checkpoint()``, which
requeues the same task (``DelayedSubmission``); the requeued job trains with ``resume=True`` and
continues from the last finished epoch. The trainer itself knows nothing of SLURM.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path

from tqdm import tqdm

from ifnd.io import atomic_write_json
from ifnd.processes import die_with_parent

from reproduce.execute import StoreSpec, Task, execute_task
from reproduce.paths import PROJECT_ROOT, TomlError, load_toml
from reproduce.store import StoreWriteError

DEFAULT_CLUSTER_FILE = PROJECT_ROOT / "reproduce" / "cluster.toml"
LAUNCHERS = ("inline", "local", "slurm")
DEFAULT_TIMEOUT_MIN = 1440


class LaunchError(ValueError):
    pass


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def describe(status: dict) -> str:
    what = status.get("label") or status["key"]
    if status["status"] == "submitted":
        return f"submitted {status['key']} {what} as job {status.get('job_id')}"
    if status["status"] == "failed":
        return f"FAILED {status['key']} {what}: {status['error']}"
    if status["status"] == "busy":
        return f"skipped {status['key']} {what}: running elsewhere (locked)"
    done = ("trained" if status["trained"] else "") + (f"{' + ' if status['trained'] else ''}"
                                                       f"{len(status['evaluated'])} evaluations"
                                                       if status["evaluated"] else "")
    return f"done {status['key']} {what}: {done or 'already finished'} ({status['seconds']:.0f}s)"


def run_job(task: Task, store: StoreSpec, progress: bool = True, threads: int = 0, processes: int = 1) -> dict:
    """One task as one job: in this process, or as ``processes`` spawned processes joined in
    torch.distributed (gloo on CPU, nccl on GPUs) with the variables torchrun / SLURM set (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` ...). All ranks train; rank 0 holds the lock, evaluates and
    records (:func:`reproduce.execute.execute_task`); its status is returned."""
    if processes <= 1:
        return execute_task(task, store, progress=progress, threads=threads)
    import socket
    import tempfile

    with socket.socket() as probe:  # a free port for the group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = threads or max(1, (os.cpu_count() or 1) // processes)
    context = get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ifnd-job-") as tmp:
        out = Path(tmp) / "status.json"
        ranks = [context.Process(target=_rank_main, args=(rank, processes, port, task, store, progress and rank == 0,
                                                          threads, str(out)), daemon=False)
                 for rank in range(processes)]
        for process in ranks:
            process.start()
        try:  # a rank that fails outside the task (e.g. the rendezvous) ends the job: the others would wait
            running = {process.sentinel: process for process in ranks}
            while running:
                finished = [running.pop(sentinel) for sentinel in wait(list(running))]
                if any(process.exitcode for process in finished):
                    break
        finally:
            for process in ranks:
                if process.is_alive():
                    process.terminate()
                process.join()
        status = json.loads(out.read_text()) if out.exists() else None
    died = [f"rank {rank} exited with status {process.exitcode}" for rank, process in enumerate(ranks)
            if process.exitcode]
    if status is None or (died and status.get("status") != "failed"):
        status = {"key": task.key, "label": task.train.label, "status": "failed", "trained": False, "evaluated": [],
                  "error": f"{processes}-process job: " + ("; ".join(died) or "rank 0 wrote no status"),
                  "seconds": 0.0}
    return status


def _rank_main(rank: int, world: int, port: int, task: Task, store: StoreSpec, progress: bool, threads: int,
               out: str) -> None:
    die_with_parent()  # a killed sweep leaves no orphan training on; its runs resume
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    status = execute_task(task, store, progress=progress, threads=threads, lock=rank == 0)
    if rank == 0:
        atomic_write_json(Path(out), status)


class InlineLauncher:
    """Tasks one after another from this process (each a ``processes``-process job when > 1)."""

    name = "inline"

    def __init__(self, threads: int = 0, processes: int = 1):
        self.threads, self.processes = threads, processes

    def launch(self, tasks: list[Task], store: StoreSpec, progress: bool = True) -> list[dict]:
        results = []
        bar = tqdm(tasks, desc="runs", unit="run", file=sys.stderr, disable=None if tasks else True)  # a terminal only
        for task in bar:
            bar.set_postfix_str(task.train.label[:40])
            status = run_job(task, store, progress, self.threads, self.processes)
            _say(describe(status))
            results.append(status)
        return results


class LocalLauncher:
    """``jobs`` worker processes (spawned), each running a ``processes``-process job at a time; torch
    threads are split between them."""

    name = "local"

    def __init__(self, jobs: int = 2, threads: int = 0, processes: int = 1):
        if jobs < 1:
            raise LaunchError(f"--jobs {jobs}: give at least 1")
        self.jobs, self.threads, self.processes = jobs, threads, processes

    def launch(self, tasks: list[Task], store: StoreSpec, progress: bool = True) -> list[dict]:
        if not tasks:
            return []
        threads = self.threads or max(1, (os.cpu_count() or 1) // (self.jobs * self.processes))
        results = []
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=get_context("spawn"),
                                 initializer=die_with_parent) as pool:
            futures = {pool.submit(run_job, task, store, False, threads, self.processes): task for task in tasks}
            try:
                self._collect(pool, futures, results)
            except KeyboardInterrupt:  # the sweep alone was interrupted (kill -INT): its workers stop now, not
                for process in list((getattr(pool, "_processes", None) or {}).values()):  # after their runs
                    process.terminate()
                raise
        return results

    def _collect(self, pool: ProcessPoolExecutor, futures: dict, results: list[dict]) -> None:
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"runs ({self.jobs} processes)",
                           unit="run", file=sys.stderr, disable=None):  # a bar on a terminal only
            try:
                status = future.result()
            except StoreWriteError:  # the store cannot take records: stop the sweep
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            except Exception as err:  # a worker that died (e.g. killed by the OOM killer)
                task = futures[future]
                status = {"key": task.key, "label": task.train.label, "status": "failed", "trained": False,
                          "evaluated": [], "error": f"worker died: {type(err).__name__}: {err}", "seconds": 0.0}
            _say(describe(status))
            results.append(status)


# -- SLURM -------------------------------------------------------------------------------------------
class SlurmTask:
    """The submitit callable of one task; requeued on preemption/timeout, resuming from the last epoch."""

    def __init__(self, task: Task, store: StoreSpec):
        self.task, self.store = task, store

    def __call__(self) -> dict:
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # one process per GPU: join torch.distributed
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        sys.path.insert(0, str(PROJECT_ROOT))
        # torch would start one thread per core of the machine, not of the allocation.
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))
        status = execute_task(self.task, self.store, progress=False, threads=threads,
                              lock=int(os.environ.get("RANK", "0")) == 0)
        if status["status"] == "failed":  # into the job's log, where the re-run's report points
            print(describe(status) + ("\n" + status["traceback"] if status.get("traceback") else ""),
                  file=sys.stderr, flush=True)
        return status

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmTask(self.task, self.store), *args, **kwargs)


ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
                 "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT"}


def _squeue_state(job_id: str, attempts: int = 4) -> str:
    """The job's state as ``squeue`` prints it (needs no SLURM accounting); raises once it left the queue.

    A busy controller (``squeue`` failing for another reason than an unknown job) is asked again,
    so that a job still queued is not taken for one that ended without a result.
    """
    import subprocess
    import time

    for attempt in range(attempts):
        time.sleep(2 ** attempt - 1)
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 or "Invalid job id" in out.stderr:
            break
    if out.returncode != 0 or not out.stdout.strip():
        raise LookupError(f"job {job_id} is not in the queue: {out.stderr.strip()}")
    return out.stdout.split()[0]


def _latest_jobs(store: StoreSpec, keys: set[str]) -> tuple[Path, dict[str, dict]]:
    """The folder of the SLURM records and, for each of ``keys`` submitted there, its latest job
    (``{"job_id", "key", "label"}``)."""
    folder = Path(store.runs_root) / store.profile / "slurm"
    latest: dict[str, dict] = {}
    for record in sorted(folder.glob("submitted-*.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if data.get("cluster") != "slurm":
            continue
        for job in data.get("jobs", []):
            if job.get("key") in keys:
                latest[job["key"]] = job
    return folder, latest


def queued_on_slurm(store: StoreSpec, keys: set[str], state_of=None) -> dict[str, str]:
    """Keys among ``keys`` whose latest SLURM submission is still queued or running: key -> job id.

    Read from ``runs/<profile>/slurm/submitted-*.json``; a state that cannot be read (no ``squeue``
    here, or the job has left the queue) counts as not queued, so nothing is ever skipped by mistake.
    """
    _, latest = _latest_jobs(store, keys)
    state_of = state_of or _squeue_state
    queued = {}
    for key, job in latest.items():
        job_id = str(job["job_id"])
        try:
            state = state_of(job_id)
        except Exception:
            continue
        if state.split()[0] in ACTIVE_STATES:
            queued[key] = job_id
    return queued


def failed_on_slurm(store: StoreSpec, keys: set[str]) -> list[dict]:
    """Failure statuses of the ``keys`` whose latest SLURM job ended without finishing its task.

    Pass only keys that are not queued (:func:`queued_on_slurm`) and not finished. The error says
    why (the task's own error, submitit's, or no result at all: cancelled or killed) and where the
    job's log is.
    """
    import pickle

    from submitit.core.utils import JobPaths

    folder, latest = _latest_jobs(store, keys)
    failures = []
    for key, job in sorted(latest.items()):
        job_id = str(job["job_id"])
        paths = JobPaths(folder / "%j", job_id=job_id, task_id=0)  # task 0: rank 0 of a multi-process job
        result_file = paths.result_pickle
        status = {"key": key, "label": job.get("label"), "status": "failed", "trained": False, "evaluated": [],
                  "seconds": 0.0}
        try:
            with open(result_file, "rb") as fh:
                outcome, value = pickle.load(fh)
        except FileNotFoundError:
            status["error"] = "ended without a result (cancelled, or killed by SLURM or the system)"
        except Exception as err:
            status["error"] = f"its result {result_file} is unreadable ({type(err).__name__}: {err})"
        else:
            if outcome == "success" and isinstance(value, dict):
                if value.get("status") != "failed":
                    continue  # finished (or busy elsewhere): not a failure of this job
                status.update({k: v for k, v in value.items() if k in ("error", "traceback")})
            else:
                status["error"] = str(value).strip().splitlines()[-1] if str(value).strip() else str(outcome)
                status["traceback"] = str(value)
        status["error"] = f"{status['error']} [SLURM job {job_id}, log {paths.stderr}]"
        failures.append(status)
    return failures


GENERIC = {"timeout_min": int, "gpus_per_node": int, "cpus_per_task": int, "mem_gb": (int, float), "nodes": int,
           "tasks_per_node": int}
SLURM_ONLY = ("partition", "account", "qos", "constraint", "exclude", "comment", "setup", "array_parallelism",
              "signal_delay_s", "additional_parameters", "mail_type", "mail_user", "gres")
EXECUTOR_ONLY = {"max_num_timeout": int}  # submitit's SlurmExecutor itself: requeues after a time limit (default 3)


def load_cluster_config(path: str | os.PathLike | None, profile: str) -> tuple[dict, Path]:
    """The ``[slurm]`` table with ``[slurm.<profile>]`` merged over it."""
    chosen = Path(path or os.environ.get("IFND_CLUSTER") or DEFAULT_CLUSTER_FILE).expanduser()
    if not chosen.is_file():
        raise LaunchError(f"SLURM config {chosen} does not exist: copy reproduce/cluster.example.toml to "
                          f"{DEFAULT_CLUSTER_FILE} (or pass --cluster FILE) and set its partition")
    try:
        data = load_toml(chosen)
    except TomlError as err:
        raise LaunchError(f"SLURM config {err}") from err
    section = data.get("slurm")
    if not isinstance(section, dict):
        raise LaunchError(f"SLURM config {chosen} has no [slurm] table: see reproduce/cluster.example.toml")
    merged = {k: v for k, v in section.items() if not isinstance(v, dict)}
    merged.update(section.get(profile, {}) if isinstance(section.get(profile), dict) else {})
    if not merged.get("partition"):
        raise LaunchError(f"SLURM config {chosen} has no partition: set partition = \"<your GPU partition>\" "
                          "in its [slurm] table (sinfo lists them)")
    unknown = sorted(set(merged) - set(GENERIC) - set(SLURM_ONLY) - set(EXECUTOR_ONLY))
    if unknown:
        raise LaunchError(f"SLURM config {chosen} has unknown keys {unknown}: valid are "
                          f"{', '.join(list(GENERIC) + list(SLURM_ONLY) + list(EXECUTOR_ONLY))}")
    merged.setdefault("timeout_min", DEFAULT_TIMEOUT_MIN)  # submitit's own default is 5 minutes
    for key, kind in {**GENERIC, **EXECUTOR_ONLY}.items():
        if key in merged and not isinstance(merged[key], kind):
            raise LaunchError(f"SLURM config {chosen}: {key} = {merged[key]!r} must be a number")
    return merged, chosen


def executor_parameters(config: dict, name: str) -> dict:
    """submitit AutoExecutor parameters: generic ones as they are, the rest prefixed ``slurm_``."""
    params = {k: v for k, v in config.items() if k in GENERIC}
    params.update({f"slurm_{k}": v for k, v in config.items() if k in SLURM_ONLY})
    params["name"] = name
    return params


def sbatch_preview(config: dict, folder: Path, name: str, count: int) -> str:
    """The sbatch header submitit would write for the array (submitit's own renderer)."""
    try:
        from submitit.slurm.slurm import _make_sbatch_string
    except ImportError:
        return "(submitit is not installed: cannot render the sbatch script)"
    kwargs = {"time": config.get("timeout_min", 5), "job_name": name}
    rename = {"gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task", "nodes": "nodes",
              "tasks_per_node": "ntasks_per_node"}
    for key, target in rename.items():
        if key in config:
            kwargs[target] = config[key]
    if "mem_gb" in config:
        kwargs["mem"] = f"{int(config['mem_gb'])}GB"
    for key in SLURM_ONLY:
        if key in config:
            kwargs[key] = config[key]
    try:
        command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
        return _make_sbatch_string(command=command, folder=str(folder), map_count=count, **kwargs)  # as submitit
    except Exception as err:  # a private API: show the parameters instead of failing the dry run
        return f"(could not render the sbatch script: {err}); parameters: {json.dumps(kwargs)}"


class SlurmLauncher:
    name = "slurm"

    def __init__(self, profile: str, cluster_file: str | None = None, cluster: str = "slurm",
                 folder: str | os.PathLike | None = None):
        self.profile = profile
        self.cluster = cluster  # "slurm", or "local" (submitit's local executor: tests, a workstation)
        self.config, self.config_path = load_cluster_config(cluster_file, profile)
        self.folder = Path(folder) if folder else None

    def _folder(self, store: StoreSpec) -> Path:
        return self.folder or Path(store.runs_root) / store.profile / "slurm"

    def dry_run(self, tasks: list[Task], store: StoreSpec, name: str) -> str:
        folder = self._folder(store)
        lines = [f"SLURM dry run ({self.config_path}): {len(tasks)} tasks as one job array '{name}' "
                 f"(array parallelism {self.config.get('array_parallelism', 256)}), logs in {folder}/%A_%a",
                 "sbatch parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))]
        for i, task in enumerate(tasks):
            lines.append(f"  [{i:3d}] {task.key}  {task.train.summary()}  (+{len(task.evals)} evaluations)")
        lines += ["sbatch script of the array:", sbatch_preview(self.config, folder / "%j", name, len(tasks))]
        return "\n".join(lines)

    def launch(self, tasks: list[Task], store: StoreSpec, name: str = "ifnd", wait: bool = False) -> list:
        if not tasks:
            return []
        import submitit

        folder = self._folder(store)
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster,
                                         **{f"slurm_{k}": self.config[k] for k in EXECUTOR_ONLY
                                            if k in self.config and self.cluster == "slurm"})
        params = executor_parameters(self.config, name)
        if self.cluster != "slurm":
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        jobs = []
        with executor.batch():
            for task in tasks:
                jobs.append(executor.submit(SlurmTask(task, store)))
        record = {"submitted_at": time.strftime("%Y-%m-%d %H:%M:%S"), "name": name, "cluster": self.cluster,
                  "jobs": [{"job_id": job.job_id, "key": task.key, "label": task.train.label}
                           for job, task in zip(jobs, tasks)]}
        atomic_write_json(folder / f"submitted-{int(time.time())}.json", record)
        _say(f"submitted {len(jobs)} tasks as job array {jobs[0].job_id.split('_')[0]} ({self.cluster}); "
             f"run the same command again to collect (finished runs are never redone)")
        if wait:
            results = []
            for job, task in zip(jobs, tasks):
                try:
                    status = job.results()[0]  # rank 0 (a multi-process job has one result per task)
                except Exception as err:  # the job failed outside execute_task (e.g. killed, bad environment)
                    status = {"key": task.key, "label": task.train.label, "status": "failed", "trained": False,
                              "evaluated": [], "error": f"{type(err).__name__}: {err}", "seconds": 0.0}
                if status["status"] == "failed":
                    status["error"] = f"{status['error']} [job {job.job_id}, log {job.paths.stderr}]"
                results.append(status)
            return results
        return [{"key": task.key, "label": task.train.label, "status": "submitted", "job_id": job.job_id,
                 "trained": False, "evaluated": [], "error": None, "seconds": 0.0} for job, task in zip(jobs, tasks)]
