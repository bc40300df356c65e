"""``python -m reproduce TARGET... --profile P --launcher L``: plan, launch what is missing, render.

Targets: ``table1`` .. ``table8``, ``figure1``, ``figure3``, ``figure4``, ``figure6``, ``figure7``,
``detection_quality`` (beyond the paper), or the groups ``tables``, ``figures``, ``all``,
``ablation-pcl`` (= table7), ``detection-quality``; ``list`` shows them.

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
import json
import sys
import textwrap
import time
from pathlib import Path

from ifnd.config import defining_fields

from reproduce import budget
from reproduce.execute import StoreSpec, Task
from reproduce.launchers import (LAUNCHERS, InlineLauncher, LaunchError, LocalLauncher, SlurmLauncher, describe,
                                 failed_on_slurm, queued_on_slurm)
from reproduce.paths import DATASETS, DataPaths, PathsError
from reproduce.profiles import PROFILES, ProfileError, apply_overrides, get_profile
from reproduce.render import render_table, resolve
from reproduce.runs import EvalRun, NotRun, TrainRun
from reproduce.specs import GROUPS, SPECS, UnknownTarget, resolve_targets
from reproduce.specs.base import Context
from reproduce.store import Store, StoreWriteError

GET_CIFAR10 = ("get CIFAR-10 as the README's first section says (torchvision's download into a folder, then "
               "IFND_DATA_ROOT=<that folder>), or render only what the store holds with --collect-only")
DATA_KEYS = {"cifar10": "cifar10", "cifar100": "cifar100", "folder": "imagenet"}  # TrainConfig.dataset -> paths key


def build_parser() -> argparse.ArgumentParser:
    epilog = ["Targets: " + ", ".join(SPECS) + "; groups: " + ", ".join(GROUPS) + "; 'list' shows all.", "Profiles:"]
    epilog += [f"  {p.name}: {p.description}" for p in PROFILES.values()]
    parser = argparse.ArgumentParser(
        prog="python -m reproduce", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="\n".join(textwrap.fill(line, 100, subsequent_indent="    " if line.startswith("  ") else "")
                         for line in epilog),
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
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="number of training seeds (0..N-1) of every compared run (default: the profile's)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (SLURM: the job array), run nothing")
    parser.add_argument("--show-config", action="store_true",
                        help="print every pre-training run's resolved TrainConfig before launching (with --dry-run: "
                             "instead of launching)")
    parser.add_argument("--collect-only", action="store_true", help="render what has finished; launch nothing")
    parser.add_argument("--paths", default=None, help="data paths file (default reproduce/paths.toml)")
    parser.add_argument("--cluster", default=None, help="SLURM config (default reproduce/cluster.toml)")
    parser.add_argument("--results-dir", default=None, metavar="DIR",
                        help="tables and the store go to DIR/<profile>/ (default: results/ of the checkout)")
    parser.add_argument("--runs-dir", default=None, metavar="DIR",
                        help="checkpoints go to DIR/<profile>/ (default: runs/ of the checkout)")
    parser.add_argument("--wait", action="store_true", help="SLURM: wait for the jobs, then render")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bars on a terminal, one plain line per epoch in a log (default: on)")
    return parser


def list_targets() -> str:
    lines = ["Tables and figures:"]
    lines += [f"  {name:8s} {spec.title}" for name, spec in SPECS.items()]
    lines += ["Groups: " + ", ".join(f"{g} ({' '.join(n)})" for g, n in GROUPS.items()), "Profiles:"]
    lines += [f"  {p.name:6s} {p.description}" for p in PROFILES.values()]
    return "\n".join(lines)


def plan_tasks(grids: list) -> list[Task]:
    """Tasks (one per pre-training run, with its evaluations) for every run of the grids, in order."""
    tasks: dict[str, Task] = {}
    for grid in grids:
        for run in grid.runs():
            train = run if isinstance(run, TrainRun) else run.train
            task = tasks.setdefault(train.key, Task(train))
            if isinstance(run, EvalRun) and all(e.key != run.key for e in task.evals):
                task.evals.append(run)
    return list(tasks.values())


def show_configs(tasks: list[Task], store: Store) -> str:
    """Each pre-training run's resolved TrainConfig, one ``field = value`` per line (machine fields left out;
    "(default)" marks what the run leaves at TrainConfig's default, which its identity does not hash)."""
    lines = []
    for task in tasks:
        state = "finished" if store.has(task.key) else "to launch"
        lines.append(f"{task.key}  {task.train.label}  ({state}, +{len(task.evals)} evaluations)")
        hashed = task.train.identity()["config"]
        lines += [f"    {name} = {json.dumps(value)}" + ("" if name in hashed else "  (default)")
                  for name, value in defining_fields(task.train.config).items()]
    return "\n".join(lines)


def pending(tasks: list[Task], store: Store) -> list[Task]:
    return [t for t in tasks if not store.has(t.key) or any(not store.has(e.key) for e in t.evals)]


def not_run_reasons(grid) -> dict[str, int]:
    """Why cells of a grid cannot be filled: reason -> number of cells (and figure runs)."""
    counts: dict[str, int] = {}
    items = [cell.ours for cell in grid.cells.values()] + list(grid.extra_runs)
    for item in items:
        if isinstance(item, NotRun):
            counts[item.reason] = counts.get(item.reason, 0) + 1
    return counts


def missing_data(tasks: list[Task], grids: dict, paths: DataPaths) -> list[str]:
    """Why runs that must train or evaluate here cannot: a data set they read is missing or broken."""
    from ifnd.data import DataError, resolve_root

    problems: dict[str, None] = {}
    for dataset in sorted({t.train.config.dataset for t in tasks}):
        key = DATA_KEYS.get(dataset, dataset)
        path, reason = paths.locate(key)
        if reason is None and dataset != "folder":
            try:
                resolve_root(dataset, path)  # checks an archive against its .sha256 (once; remembered)
            except DataError as err:
                reason = str(err)
        if reason:
            count = sum(t.train.config.dataset == dataset for t in tasks)
            problems[f"{count} runs to train need it: {reason}"] = None
    _, cifar_reason = paths.locate("cifar10")
    if cifar_reason:  # CIFAR-10 is what every profile trains on: its cells are never "not run" by design
        cells = sum(not_run_reasons(grid).get(cifar_reason, 0) for grid in grids.values())
        if cells:
            problems[f"{cells} table cells need runs on it: {cifar_reason}"] = None
    return list(problems)


def _fingerprint(data: dict) -> str:
    return f"{data['dataset']} sha256 {data['sha256'][:12]}" if data.get("sha256") else \
        f"{data['dataset']} at {data['path']}"


def mixed_copies(runs: list, store: Store, current: dict[str, str]) -> str | None:
    """The data sets a grid's train runs read from more than one copy, as one line (None when there are none):
    the copies its stored records name, and ``current`` (dataset -> fingerprint) for the runs still to train."""
    copies: dict[str, dict[str, int]] = {}  # dataset -> fingerprint -> stored runs (0: only runs to train)
    for run in (r for r in runs if isinstance(r, TrainRun)):
        found = copies.setdefault(run.config.dataset, {})
        record = store.get(run.key)  # read once: None while the run is still to train
        if record is None:
            if copy := current.get(run.config.dataset):
                found.setdefault(copy, 0)
        elif data := record.get("result", {}).get("final", {}).get("data"):
            copy = _fingerprint(data)
            found[copy] = found.get(copy, 0) + 1
    mixed = [", ".join(f"{c}: {f'{n} run' + 's' * (n > 1) if n else 'the runs to train now'}" for c, n in found.items())
             for found in copies.values() if len(found) > 1]
    return "; ".join(mixed) or None


def this_copy(tasks: list[Task], paths: DataPaths) -> dict[str, str]:
    """dataset -> fingerprint of the copy the pending runs will read."""
    from ifnd.data import DataError, source_identity

    out = {}
    for dataset in {t.train.config.dataset for t in tasks}:
        path, _ = paths.locate(DATA_KEYS.get(dataset, dataset))
        try:
            data = source_identity(dataset, path)
        except (DataError, OSError):
            continue
        out[dataset] = _fingerprint(data)
    return out


def settings_summary(profile, runs: list) -> str:
    """The profile's settings for the kinds of pre-training the planned runs are (CIFAR, ImageNet or both)."""
    imagenet = any(isinstance(r, TrainRun) and r.config.dataset == "folder" for r in runs)
    cifar = any(isinstance(r, TrainRun) and r.config.dataset != "folder" for r in runs)
    i = profile.imagenet
    imagenet_text = (f"ImageNet runs: {i.get('arch')}, {i.get('epochs')} epochs, batch {i.get('batch_size')}, "
                     f"lr {i.get('lr')}, seeds {profile.seeds}")
    if imagenet and not cifar:
        return imagenet_text
    return ("CIFAR runs: " if imagenet else "") + profile.summary() + (f"; {imagenet_text}" if imagenet else "")


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
    try:
        if not args.dry_run:
            store.check_writable(runs=False)  # tables are rendered there
    except StoreWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ctx = Context(profile, paths, store)
    grids = {name: SPECS[name].build(ctx) for name in names}
    tasks = plan_tasks(list(grids.values()))
    todo = pending(tasks, store)
    spec = StoreSpec(profile.name, str(store.results_dir.parent), str(store.runs_dir.parent))
    queued = queued_on_slurm(spec, {t.key for t in todo}) if todo else {}
    if queued:
        print(f"{len(queued)} tasks are queued or running on SLURM (jobs {', '.join(sorted(set(queued.values())))}): "
              "not launched again; re-run this command when they finish to collect them", file=sys.stderr)
        todo = [t for t in todo if t.key not in queued]
    slurm = args.launcher == "slurm" or args.collect_only
    failed_before = failed_on_slurm(spec, {t.key for t in todo}) if todo and slurm else []  # reported at the end
    rate = (profile.train_images_per_second, profile.eval_images_per_second)
    print(f"profile {profile.name}: {settings_summary(profile, [t.train for t in tasks])}"
          + (f"; overrides {', '.join(profile.overrides)}" if profile.overrides else ""), file=sys.stderr)
    launching = bool(todo) and not args.collect_only
    if launching and not slurm and any(t.train.config.amp == "bf16" for t in todo):
        import torch
        from ifnd.train import slow_precision_warning

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where device=auto trains
        if warning := slow_precision_warning(torch.bfloat16, device):
            print(warning + f"; the time estimates below assume {rate[0]:.0f} images/s", file=sys.stderr)
    current = this_copy(todo, paths) if launching else {}
    for name, grid in grids.items():
        grid_runs = grid.runs()
        done = sum(store.has(r.key) for r in grid_runs)
        missing = [r for r in grid_runs if not store.has(r.key)]
        print(f"{name}: {done}/{len(grid_runs)} runs finished; to do: "
              f"{budget.describe(budget.estimate(missing), *rate)}", file=sys.stderr)
        for reason, cells in not_run_reasons(grid).items():
            print(f"  not run ({cells} cells): {reason}", file=sys.stderr)
        if mixed := mixed_copies(grid_runs, store, current):
            print(f"warning: {name} mixes runs trained on different copies of the data ({mixed}); its differences "
                  "may reflect the data: retrain into a fresh --results-dir to compare", file=sys.stderr)
    problems = missing_data(todo, grids, paths) if not args.collect_only else []
    if problems and not args.dry_run:
        fix = GET_CIFAR10 if any("CIFAR-10" in p or "cifar10" in p for p in problems) else \
            "set its path (see reproduce/paths.example.toml), or render only what the store holds with --collect-only"
        print(f"error: {'; '.join(problems)}. To fix: {fix}; no table was written", file=sys.stderr)
        return 2
    if launching and not args.dry_run:
        try:
            store.check_writable(runs=True)
        except StoreWriteError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    if args.show_config:
        print(show_configs(tasks, store) or "no pre-training run: every cell is not run (see the reasons above)")
    if args.dry_run:
        print(f"dry run: {len(todo)} of {len(tasks)} tasks to launch with --launcher {args.launcher}")
        if not tasks:
            data = {paths.locate(key)[1] for key in DATASETS}
            reasons = sorted({r for grid in grids.values() for r in not_run_reasons(grid)} & data)
            print("nothing to run here: " + ("; ".join(reasons) if reasons else "the targets have no runs at this "
                                                                               "profile"))
        for problem in problems:
            print(f"  cannot run here: {problem}")
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

    statuses: list[dict] = list(failed_before)
    if todo and not args.collect_only:
        started = time.time()
        try:
            if args.launcher == "inline":
                statuses += InlineLauncher(args.threads, profile.processes_per_job).launch(todo, spec,
                                                                                        args.progress)
            elif args.launcher == "local":
                statuses += LocalLauncher(args.jobs, args.threads, profile.processes_per_job).launch(
                    todo, spec, args.progress)
            else:
                statuses += SlurmLauncher(profile.name, args.cluster).launch(todo, spec, f"ifnd-{profile.name}",
                                                                             wait=args.wait)
        except (LaunchError, StoreWriteError) as err:
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
    return 1 if failures else 0
