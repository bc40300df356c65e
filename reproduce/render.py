"""Resolve a grid against the store and write ``results/<profile>/<name>.{md,csv}``.

Every cell shows our number (mean ± std over training seeds, with n) and the paper's number in
parentheses; cells that are still running say ``pending``, cells the profile cannot fill say
``not run`` with a numbered reason (columns with nothing run are left out of the table, their
paper numbers listed below it). Δ rows and columns are differences the row or column names,
computed seed by seed. The Claims section tests each difference the paper claims with the rules of
:mod:`reproduce.stats`. The header describes the records (what they trained, at which commits, when),
never the render, so re-rendering the same records rewrites the same bytes.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ifnd.io import atomic_write_text

from reproduce import stats
from reproduce.runs import EvalRun, NotRun, TrainRun
from reproduce.specs.base import PAPER, Claim, Const, Context, Derived, Grid, Source
from reproduce.store import Store

MINUS = "\u2212"


@dataclass
class Value:
    by_seed: dict = field(default_factory=dict)  # training seed -> number (finished runs)
    const: float | None = None                   # a Const cell: one number, no seeds
    expected: int = 0
    status: str = "ok"                           # ok | pending | not run | no value
    reason: str | None = None
    keys: list = field(default_factory=list)     # the run keys the cell reads
    alias: str = ""                              # the spec says the cell repeats another training

    @property
    def values(self) -> list[float]:
        if self.const is not None:
            return [self.const]
        return [self.by_seed[s] for s in sorted(self.by_seed)]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def paired(self):
        """What :func:`reproduce.stats.paired_differences` pairs: ``{seed: value}``, or the constant."""
        return self.const if self.const is not None else self.by_seed


@dataclass
class Resolved:
    grid: Grid
    values: dict
    records: dict                                 # run key -> store record (finished runs)

    def value(self, row: str, col: str) -> Value:
        return self.values.get((row, col), Value(status="not run", reason="no such cell"))

    def record(self, run) -> dict | None:
        return self.records.get(run.key) if isinstance(run, (TrainRun, EvalRun)) else None


def seed_of(run) -> int | None:
    train = run.train if isinstance(run, EvalRun) else run
    return train.config.seed if isinstance(train, TrainRun) else None


def _load(run, store: Store, records: dict) -> dict | None:
    if run.key not in records:
        record = store.get(run.key)
        if record is None:
            return None
        records[run.key] = record
    return records[run.key]


def _resolve_source(src: Source, store: Store, records: dict) -> Value:
    value = Value(expected=len(src.runs), keys=[r.key for r in src.runs], alias=src.alias)
    missing = 0
    for run in src.runs:
        if isinstance(run, EvalRun):
            _load(run.train, store, records)  # the header describes what was trained
        record = _load(run, store, records)
        if record is None:
            missing += 1
            continue
        number = src.read(record)
        if number is None:
            value.status, value.reason = "no value", "the finished run has no such number (see its record)"
            continue
        value.by_seed[seed_of(run)] = number
    if missing:
        value.status = "pending"
        value.reason = f"{len(src.runs) - missing}/{len(src.runs)} runs finished"
    return value


def _resolve_derived(d: Derived, values: dict) -> Value:
    a, b = values.get(d.a), values.get(d.b)
    if a is None or b is None:
        return Value(status="not run", reason="compares a cell that does not exist")
    for side in (a, b):
        if side.status == "not run":
            return Value(status="not run", reason=side.reason)
    out = Value(expected=max(a.expected, b.expected), keys=a.keys + b.keys)
    if a.status != "ok" or b.status != "ok":
        out.status, out.reason = "pending", "waits for the cells it compares"
    out.by_seed = {seed: diff for seed, diff in stats.paired_differences(a.paired, b.paired) if seed is not None}
    return out


def resolve(grid: Grid, store: Store) -> Resolved:
    values: dict = {}
    records: dict = {}
    for key, cell in grid.cells.items():
        ours = cell.ours
        if isinstance(ours, Source):
            values[key] = _resolve_source(ours, store, records)
        elif isinstance(ours, Const):
            values[key] = Value(const=ours.value, expected=1, reason=ours.note or None)
        elif isinstance(ours, NotRun):
            values[key] = Value(status="not run", reason=ours.reason)
        elif ours is None:
            values[key] = Value(status="not run", reason="not part of this profile")
    for key, cell in grid.cells.items():
        if isinstance(cell.ours, Derived):
            values[key] = _resolve_derived(cell.ours, values)
    for run in grid.extra_runs:
        if isinstance(run, (TrainRun, EvalRun)):
            _load(run, store, records)
            if isinstance(run, EvalRun):
                _load(run.train, store, records)
    return Resolved(grid, values, records)


# -- claims ----------------------------------------------------------------------------------------
INTERVAL_NOTE = ("Each claim is a difference A − B of two cells, paired by training seed: n pairs, the mean paired "
                 "difference and its 95 % t-interval [lo, hi] (Student t on the paired differences, n − 1 degrees "
                 "of freedom). Verdict: holds when n ≥ 3 and the interval excludes 0 on the paper's side; reversed "
                 "when it excludes 0 on the other side; not resolved otherwise; with n < 3 the direction is "
                 "reported, not tested; n/a at this profile when both cells are the same training. A claim that "
                 "two cells are close holds when the interval lies within the stated margin; a claim in % is a "
                 "ratio computed per seed. Size: where the paper's difference lies relative to our interval.")


def _claim_values(claim: Claim, resolved: Resolved) -> tuple[list[Value], str | None]:
    """The claim's cells, or why it cannot be evaluated (not run, n/a, pending)."""
    cells = [resolved.value(*claim.a), resolved.value(*claim.b)]
    if claim.c is not None:
        cells.append(resolved.value(*claim.c))
    for v in cells:
        if v.status == "not run":
            return cells, "not run"
    for v in cells:
        if v.alias:
            return cells, f"n/a at this profile ({v.alias})"
    a, b = cells[0], cells[1]
    if a.keys and a.keys == b.keys:
        return cells, "n/a at this profile (both cells are the same training)"
    if any(v.status == "pending" for v in cells) and not all(v.values for v in cells):
        return cells, "pending"
    return cells, None


def evaluate_claim(claim: Claim, resolved: Resolved) -> stats.Comparison:
    cells, why = _claim_values(claim, resolved)
    if why is not None:
        return stats.Comparison(0, None, None, None, why, "-")
    a, b = cells[0], cells[1]
    if claim.c is not None:  # the share of the gap b -> c that a closes, per seed, in %
        closed = dict(stats.paired_differences(a.paired, b.paired))
        gap = dict(stats.paired_differences(cells[2].paired, b.paired))
        ratios = [100.0 * closed[s] / gap[s] for s in sorted(set(closed) & set(gap), key=str) if gap[s] != 0]
        if not ratios:
            return stats.Comparison(0, None, None, None, "pending", "-")
        result = stats.judge(ratios, claim.paper, direction=1.0)
    else:
        result = stats.compare(a.paired, b.paired, claim.paper, margin=claim.margin)
    if any(v.status == "pending" for v in cells):
        result.verdict += " (partial: runs pending)"
    return result


def claim_row(text: str, r: stats.Comparison, paper: float | None, paper_note: str = "", unit: str = "",
              margin: float | None = None, fmt: str = "{:.2f}") -> dict:
    """One line of the Claims section (``fmt``: our numbers; the paper's as it gives them)."""
    ours = "-"
    if r.mean is not None:
        ours = num(r.mean, fmt, True) + unit
        if r.lo is not None:
            ours += f" [{num(r.lo, fmt, True)}, {num(r.hi, fmt, True)}]"
    shown = "-" if paper is None else num(round(paper, 2), "{:g}", True) + unit
    if paper_note:
        shown += f" ({paper_note})"
    if margin is not None:
        shown += f" (close: within ±{margin:g})"
    return {"claim": text, "n": r.n if r.n else "-", "ours: mean [95 % interval]": ours, "paper": shown,
            "verdict": r.verdict, "size": r.size}


# -- formatting --------------------------------------------------------------------------------------
def num(x: float | None, fmt: str = "{:.2f}", signed: bool = False) -> str:
    """A number for markdown: ``fmt``, a leading + when ``signed``, and the minus sign U+2212."""
    if x is None:
        return "-"
    if math.isnan(x):  # e.g. COCO AP of a detector that predicted nothing
        return "undefined"
    text = fmt.format(x)
    if text.lstrip("-").strip("0.") == "":  # rounds to zero: no sign
        text = text.lstrip("-")
    elif signed and not text.startswith("-"):
        text = "+" + text
    return text.replace("-", MINUS)


def finer(fmt: str) -> str:
    """One more decimal than ``fmt`` (differences of rounded cells need it)."""
    digits = fmt[fmt.index(".") + 1:fmt.index("f")] if "." in fmt and "f}" in fmt else None
    return "{:." + str(int(digits) + 1) + "f}" if digits and digits.isdigit() else "{:.2f}"


def ours_text(v: Value, fmt: str, signed: bool = False) -> str:
    if v.status == "not run":
        return "not run"
    if not v.values:
        return f"pending ({v.reason})" if v.status == "pending" else (v.status if v.status != "ok" else "-")
    text = num(v.mean, fmt, signed)
    if v.std is not None:
        text += " ± " + num(v.std, fmt)
    if v.const is None:  # measured: say how many seeds
        text += f", n={v.n}"
    if v.status == "pending":
        text += f", pending: {v.reason}"
    return text


def _dates(records: list[dict]) -> str:
    days = sorted({str(r.get("finished_at", ""))[:10] for r in records if r.get("finished_at")})
    if not days:
        return "no dates"
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def _commits(records: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        commit = r.get("git_commit") or "unknown"
        counts[commit] = counts.get(commit, 0) + 1
    return ", ".join(f"{c} ({n})" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _distinct(values) -> str:
    shown = []
    for v in values:
        if v not in shown:
            shown.append(v)
    return " / ".join(str(v) for v in shown)


def trained_settings(records: list[dict]) -> str:
    """What the train records say they ran (not the profile's defaults)."""
    configs = [r.get("config", {}) for r in records]
    if not configs:
        return "no finished pre-training run"
    subsets = [f"{c['train_subset']}-image subset" if c.get("train_subset") else "full training split"
               for c in configs]
    seeds = sorted({c.get("seed") for c in configs if c.get("seed") is not None})
    parts = [_distinct(c.get("dataset") for c in configs), _distinct(c.get("arch") for c in configs),
             _distinct(subsets), f"{_distinct(c.get('epochs') for c in configs)} epochs",
             f"batch {_distinct(c.get('batch_size') for c in configs)}",
             f"lr {_distinct(c.get('lr') for c in configs)}", "seeds " + ", ".join(map(str, seeds))]
    return ", ".join(parts)


def header(ctx: Context, grid: Grid, resolved: Resolved) -> list[str]:
    p = ctx.profile
    runs = grid.runs()
    records = [resolved.records[r.key] for r in runs if r.key in resolved.records]
    finished = len(records)
    trains = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") != "train"]
    lines = [f"# {grid.title}", "",
             f"- Profile: **{p.name}** ({p.description}); overrides: {', '.join(p.overrides) if p.overrides else 'none'}",
             f"- Pre-training as recorded: {trained_settings(trains)}",
             f"- Runs: {finished} of {len(runs)} finished" + (" (re-run the same command to finish or collect them)"
                                                              if finished < len(runs) else "")]
    if records:
        lines.append(f"- Records: trained at git {_commits(trains) or '-'}; evaluated at git "
                     f"{_commits(evals) or '-'} (commit: number of records); finished {_dates(records)}")
    has_paper = any(c.paper is not None or c.paper_text for c in grid.cells.values()) or any(
        c.paper is not None for c in grid.claims)
    if not grid.paper_source:
        lines.append(f"- Paper numbers: none: beyond the paper ({PAPER} reports no such experiment)")
    elif has_paper:
        lines.append(f"- Paper numbers: {grid.paper_source} of {PAPER} (transcribed in "
                     f"{grid.paper_file or f'reproduce/specs/{grid.name}.py'})")
    else:
        lines.append(f"- Paper numbers: none ({grid.paper_source} of {PAPER} gives none; its statements are the "
                     "claims below)")
    lines += [f"- {note}" for note in grid.notes]
    return lines


def _round(x, digits: int = 4):
    return None if x is None else round(float(x), digits)


def to_frames(resolved: Resolved, ctx: Context) -> tuple[list[str], pd.DataFrame, pd.DataFrame, list[str]]:
    """Markdown lines of the table, the long CSV frame, the claims frame, and notes below the table."""
    grid = resolved.grid
    reasons: list[str] = []
    claim_rows = [claim_row(claim.text, evaluate_claim(claim, resolved), claim.paper,
                            unit=" %" if claim.c is not None else "", margin=claim.margin,
                            fmt=finer(grid.cells[claim.a].fmt if claim.a in grid.cells else "{:.1f}"))
                  for claim in grid.claims]
    if grid.trend is not None:
        claim_rows += [claim_row(*line) for line in grid.trend(resolved)]

    def reason_ref(reason: str) -> str:
        if reason not in reasons:
            reasons.append(reason)
        return f"[{reasons.index(reason) + 1}]"

    def not_run(col) -> bool:
        cells = [resolved.value(row.key, col.key) for row in grid.rows if (row.key, col.key) in grid.cells]
        return bool(cells) and all(v.status == "not run" for v in cells)

    dropped = [col for col in grid.cols if not_run(col)]
    if len(dropped) == len(grid.cols):
        dropped = []  # nothing runs here: the table is the paper's, with the reasons
    table_rows, csv_rows, paper_rows = [], [], []
    for row in grid.rows:
        out = {"": row.title, **{title: row.attrs.get(title, "") for title in grid.attr_titles}}
        paper_out = {"": row.title}
        for col in grid.cols:
            cell = grid.cells.get((row.key, col.key))
            if cell is None:
                out[col.title] = ""
                paper_out[col.title] = ""
                continue
            v = resolved.value(row.key, col.key)
            signed = isinstance(cell.ours, Derived)
            text = ours_text(v, cell.fmt, signed)
            if v.status == "not run":
                text += " " + reason_ref(v.reason or "not part of this profile")
            paper = cell.paper_text or (num(cell.paper, cell.fmt, signed) if cell.paper is not None else None)
            if col in dropped:
                paper_out[col.title] = paper or "-"
            else:
                out[col.title] = text + (f" (paper {paper})" if paper is not None else "")
            csv_rows.append({
                "table": grid.name, "profile": ctx.profile.name, "row": row.key, "row_title": row.title,
                **{f"attr:{k}": v_ for k, v_ in row.attrs.items()}, "col": col.key, "col_title": col.title,
                "ours_mean": _round(v.mean), "ours_std": _round(v.std), "n_seeds": v.n, "n_expected": v.expected,
                "values": ";".join(f"{x:.4f}" for x in v.values),
                "seeds": ";".join(str(s) for s in sorted(v.by_seed)) if v.const is None else "",
                "paper": _round(cell.paper), "paper_text": cell.paper_text,
                "diff_vs_paper": _round(v.mean - cell.paper) if v.mean is not None and cell.paper is not None else None,
                "status": v.status, "note": v.reason, "runs": ";".join(v.keys)})
        for col in dropped:
            out.pop(col.title, None)
        table_rows.append(out)
        paper_rows.append(paper_out)
    lines = pd.DataFrame(table_rows).to_markdown(index=False, disable_numparse=True).splitlines()
    notes = [f"[{i + 1}] not run: {r}" for i, r in enumerate(reasons)]
    if dropped:
        refs = sorted({reason_ref(resolved.value(row.key, col.key).reason or "not part of this profile")
                       for col in dropped for row in grid.rows if (row.key, col.key) in grid.cells})
        titles = [c.title for c in dropped]
        if any(grid.cells[(row.key, col.key)].paper is not None for col in dropped for row in grid.rows
               if (row.key, col.key) in grid.cells):
            notes += ["", f"Columns not run at this profile ({', '.join(refs)}), left out of the table above; the "
                      "paper's numbers for them:", "",
                      *pd.DataFrame([{k: r[k] for k in ["", *titles]} for r in paper_rows])
                      .to_markdown(index=False, disable_numparse=True).splitlines()]
        else:
            notes += ["", f"Columns not run at this profile ({', '.join(refs)}), left out of the table above: "
                      f"{', '.join(titles)} (the paper gives no numbers for them)."]
    frame = pd.DataFrame(csv_rows)
    return lines, frame, pd.DataFrame(claim_rows), notes


LEGEND = "Cells: ours, mean ± std over n training seeds, and the paper's number in parentheses."
LEGEND_BEYOND = "Cells: ours, mean ± std over n training seeds."
DELTA_LEGEND = (" Δ cells are the difference of two cells of this table that their row or column title names (see "
                "the notes), computed per training seed, then averaged.")


def render_table(ctx: Context, grid: Grid, resolved: Resolved | None = None) -> dict[str, Path]:
    resolved = resolved or resolve(grid, ctx.store)
    table, frame, claims, notes = to_frames(resolved, ctx)
    legend = (LEGEND if grid.paper_source else LEGEND_BEYOND) + (
        DELTA_LEGEND if any(isinstance(c.ours, Derived) for c in grid.cells.values()) else "")
    md = header(ctx, grid, resolved) + ["", legend, "", *table, ""]
    if notes:
        md += [*notes, ""]
    if len(claims):
        md += ["## Claims", "", INTERVAL_NOTE, "",
               *claims.to_markdown(index=False, disable_numparse=True).splitlines(), ""]
    out_dir = ctx.store.results_dir
    paths = {"md": out_dir / f"{grid.name}.md", "csv": out_dir / f"{grid.name}.csv"}
    _write_if_changed(paths["md"], "\n".join(md) + "\n")
    _write_if_changed(paths["csv"], frame.to_csv(index=False))
    return paths


def _write_if_changed(path: Path, text: str) -> None:
    """Leave a file alone when only its "Generated" stamp would change (a re-render keeps git clean)."""
    def unstamped(content: str) -> list[str]:
        return [line for line in content.splitlines() if not line.startswith("- Generated: ")]

    if path.exists() and unstamped(path.read_text()) == unstamped(text):
        return
    atomic_write_text(path, text)
