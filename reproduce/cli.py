"""``python -m reproduce TARGET... --profile P --launcher L``: plan, launch what is missing, render.

Targets: ``table1`` .. ``table8``, ``figure1``, ``figure3``, ``figure4``, ``figure6``, ``figure7``, or
the groups ``tables``, ``figures``, ``all``, ``ablation-pcl`` (= table7); ``list`` shows them.

Steps: build each target's grid at the profile; group its runs into tasks (a pre-training run and
the evaluations of its checkpoints); launch the tasks the store lacks (``--launcher inline`` in this
process, ``local`` in ``--jobs`` processes, ``slurm`` as one submitit job array); render every
target from the store into ``results/<profile>/``. ``--dry-run`` prints the plan (and, for SLURM,
the job array and its sbatch parameters) and runs nothing; ``--collect-only`` renders what the store
has (e.g. after a SLURM sweep) without launching anything.

``python -m reproduce make-rehearsal-data [DIR]`` writes the synthetic data sets of ``--profile
rehearsal`` (:mod:`reproduce.rehearsal`).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from reproduce import budget
from reproduce.execute import StoreSpec, Task
from reproduce.launchers import (LAUNCHERS, InlineLauncher, LaunchError, LocalLauncher, SlurmLauncher, describe,
                                 queued_on_slurm)
from reproduce.paths import DataPaths, PathsError
from reproduce.profiles import PROFILES, ProfileError, apply_overrides, get_profile
from reproduce.render import render_table, resolve
from reproduce.runs import EvalRun, TrainRun
from reproduce.specs import GROUPS, SPECS, UnknownTarget, resolve_targets
from reproduce.specs.base import Context
from reproduce.store import Store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reproduce", description=__doc__.split("\n\n")[0],
        epilog="Targets: " + ", ".join(SPECS) + "; groups: " + ", ".join(GROUPS) + "; 'list' shows all. Profiles: "
               + "; ".join(f"{p.name} = {p.description}" for p in PROFILES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="table5, figure1, figures, all, list, ...")
    parser.add_argument("--profile", default="mini", help=f"one of {', '.join(PROFILES)} (default mini)")
    parser.add_argument("--launcher", default="inline", choices=LAUNCHERS, help="where runs execute (default inline)")
    parser.add_argument("--jobs", type=int, default=2, help="processes of --launcher local (default 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per run (inline/local; default: torch's, or cores/jobs for local); "
                             "1 is often faster on a busy shared machine")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile setting or a TrainConfig field, e.g. --set epochs=20 "
                             "--set train_subset=5000 --set probe.epochs=20 (repeatable)")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds of every compared run")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (SLURM: the job array), run nothing")
    parser.add_argument("--collect-only", action="store_true", help="render what has finished; launch nothing")
    parser.add_argument("--paths", default=None, help="data paths file (default reproduce/paths.toml)")
    parser.add_argument("--cluster", default=None, help="SLURM config (default reproduce/cluster.toml)")
    parser.add_argument("--results-dir", default=None, help="default: results/ of the checkout")
    parser.add_argument("--runs-dir", default=None, help="default: runs/ of the checkout")
    parser.add_argument("--wait", action="store_true", help="SLURM: wait for the jobs, then render")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no per-epoch progress bars")
    return parser


def list_targets() -> str:
    lines = ["Tables and figures:"]
    lines += [f"  {name:8s} {spec.title}" for name, spec in SPECS.items()]
    lines += ["Groups: " + ", ".join(f"{g} ({' '.join(n)})" for g, n in GROUPS.items()), "Profiles:"]
    lines += [f"  {p.name:6s} {p.description}" for p in PROFILES.values()]
    return "\n".join(lines)


def plan_tasks(grids: list) -> tuple[list[Task], list]:
    """Tasks (one per pre-training run, with its evaluations) for every run of the grids, in order."""
    tasks: dict[str, Task] = {}
    runs: dict[str, object] = {}
    for grid in grids:
        for run in grid.runs():
            runs.setdefault(run.key, run)
            train = run if isinstance(run, TrainRun) else run.train
            task = tasks.setdefault(train.key, Task(train))
            if isinstance(run, EvalRun) and all(e.key != run.key for e in task.evals):
                task.evals.append(run)
    return list(tasks.values()), list(runs.values())


def pending(tasks: list[Task], store: Store) -> list[Task]:
    return [t for t in tasks if not store.has(t.key) or any(not store.has(e.key) for e in t.evals)]


def render_target(ctx: Context, spec, grid) -> list[str]:
    resolved = resolve(grid, ctx.store)
    paths = render_table(ctx, grid, resolved)
    written = [str(paths["md"]), str(paths["csv"])]
    if spec.kind == "figure":
        png = ctx.store.results_dir / f"{grid.name}.png"
        spec.plot(ctx, grid, resolved, png)
        written.append(str(png))
    return written


def make_rehearsal_data(argv: list[str]) -> int:
    """``python -m reproduce make-rehearsal-data [DIR]``: the synthetic data sets of ``--profile rehearsal``."""
    from reproduce import rehearsal

    parser = argparse.ArgumentParser(prog="python -m reproduce make-rehearsal-data",
                                     description=rehearsal.__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default=None,
                        help=f"where to write them (default {rehearsal.default_dir()}, where --profile rehearsal "
                             "looks unless $IFND_REHEARSAL_DATA names DIR)")
    args = parser.parse_args(argv)
    root = Path(args.dir or rehearsal.default_dir()).expanduser()
    try:
        paths = rehearsal.write(root)
    except (FileExistsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(f"{key:16s} {path}" for key, path in paths.items()))
    print(f"rehearse with: IFND_REHEARSAL_DATA={root} make all PROFILE=rehearsal "
          f"(or any target; --paths {root / 'paths.toml'} points another profile at them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["make-rehearsal-data"]:
        return make_rehearsal_data(argv[1:])
    args = build_parser().parse_args(argv)
    if args.targets == ["list"]:
        print(list_targets())
        return 0
    try:
        names = resolve_targets(args.targets)
        profile = apply_overrides(get_profile(args.profile), args.sets, args.seeds)
        if profile.name == "rehearsal":  # the data sets' usual environment variables, at the synthetic data
            from reproduce import rehearsal

            rehearsal.use(say=lambda message: print(message, file=sys.stderr))
        paths = DataPaths.load(args.paths)
    except (UnknownTarget, ProfileError, PathsError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    store = Store(profile.name, args.results_dir, args.runs_dir)
    ctx = Context(profile, paths, store)
    grids, failed_builds = {}, []
    for name in names:
        try:
            grids[name] = SPECS[name].build(ctx)
        except RuntimeError as err:  # e.g. a library piece that is not there yet (TODO)
            print(f"error: {name}: {err}", file=sys.stderr)
            failed_builds.append(name)
    tasks, runs = plan_tasks(list(grids.values()))
    todo = pending(tasks, store)
    spec = StoreSpec(profile.name, str(store.results_dir.parent), str(store.runs_dir.parent))
    queued = queued_on_slurm(spec, {t.key for t in todo}) if todo else {}
    if queued:
        print(f"{len(queued)} tasks are queued or running on SLURM (jobs {', '.join(sorted(set(queued.values())))}): "
              "not launched again; re-run this command when they finish to collect them", file=sys.stderr)
        todo = [t for t in todo if t.key not in queued]
    rate = (profile.train_images_per_second, profile.eval_images_per_second)
    print(f"profile {profile.name}: {profile.summary()}" + (f"; overrides {', '.join(profile.overrides)}"
                                                            if profile.overrides else ""), file=sys.stderr)
    for name, grid in grids.items():
        grid_runs = grid.runs()
        done = sum(store.has(r.key) for r in grid_runs)
        missing = [r for r in grid_runs if not store.has(r.key)]
        print(f"{name}: {done}/{len(grid_runs)} runs finished; to do: "
              f"{budget.describe(budget.estimate(missing), *rate)}", file=sys.stderr)

    if args.dry_run:
        print(f"dry run: {len(todo)} of {len(tasks)} tasks to launch with --launcher {args.launcher}")
        if args.launcher == "slurm" and todo:
            try:
                print(SlurmLauncher(profile.name, args.cluster).dry_run(todo, spec, f"ifnd-{profile.name}"))
            except LaunchError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        else:
            for task in todo:
                busy = " (running elsewhere)" if store.busy(task.key) else ""
                print(f"  {task.key}  {task.train.summary()}  (+{len(task.evals)} evaluations){busy}")
        return 0

    statuses: list[dict] = []
    if todo and not args.collect_only:
        started = time.time()
        try:
            if args.launcher == "inline":
                statuses = InlineLauncher(args.threads, profile.processes_per_job).launch(todo, spec,
                                                                                       args.progress)
            elif args.launcher == "local":
                statuses = LocalLauncher(args.jobs, args.threads, profile.processes_per_job).launch(
                    todo, spec, args.progress)
            else:
                statuses = SlurmLauncher(profile.name, args.cluster).launch(todo, spec, f"ifnd-{profile.name}",
                                                                            wait=args.wait)
        except LaunchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted: finished runs are kept; the same command resumes the rest", file=sys.stderr)
            return 130
        print(f"launched {len(todo)} tasks in {time.time() - started:.0f}s", file=sys.stderr)

    for name, grid in grids.items():
        for path in render_target(ctx, SPECS[name], grid):
            print(path)
    failures = [s for s in statuses if s.get("status") == "failed"]
    for status in failures:
        print(describe(status), file=sys.stderr)
        if status.get("traceback"):
            print(status["traceback"], file=sys.stderr)
    left = pending(tasks, store)
    if left and args.launcher != "slurm":
        print(f"{len(left)} tasks unfinished" + (" (--collect-only)" if args.collect_only else ""), file=sys.stderr)
    return 1 if failures or failed_builds else 0
