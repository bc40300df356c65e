"""Resolve a grid against the store and write ``results/<profile>/<name>.{md,csv}``.

Every cell shows our number (mean ± std over seeds, with the number of seeds), the paper's number
and the difference; cells that are still running say ``pending``, cells the profile cannot fill say
``not run`` with a numbered reason. The claims section compares each difference the paper claims
with ours and says when ours is smaller than the seed spread (then the table cannot tell).
"""
from __future__ import annotations

import datetime as _dt
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ifnd.io import atomic_write_text

from reproduce.runs import EvalRun, NotRun, TrainRun
from reproduce.specs.base import Const, Context, Derived, Grid, Source
from reproduce.store import Store, git_commit


@dataclass
class Value:
    values: list = field(default_factory=list)   # one number per finished seed
    expected: int = 0
    status: str = "ok"                           # ok | pending | not run | no value
    reason: str | None = None
    keys: list = field(default_factory=list)
    paired: list | None = None                   # Derived: per-seed differences when paired

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass
class Resolved:
    grid: Grid
    values: dict
    records: dict                                 # run key -> store record (finished runs)

    def value(self, row: str, col: str) -> Value:
        return self.values.get((row, col), Value(status="not run", reason="no such cell"))

    def record(self, run) -> dict | None:
        return self.records.get(run.key) if isinstance(run, (TrainRun, EvalRun)) else None


def _resolve_source(src: Source, store: Store, records: dict) -> Value:
    value = Value(expected=len(src.runs), keys=[r.key for r in src.runs])
    missing = 0
    for run in src.runs:
        record = records.get(run.key)
        if record is None:
            record = store.get(run.key)
            if record is not None:
                records[run.key] = record
        if record is None:
            missing += 1
            continue
        number = src.read(record)
        if number is None:
            value.status, value.reason = "no value", "the finished run has no such number (see its record)"
            continue
        value.values.append(number)
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
    out = Value(expected=max(a.expected, b.expected))
    if a.status != "ok" or b.status != "ok":
        out.status, out.reason = "pending", "waits for the cells it compares"
        if not (a.values and b.values):
            return out
    if a.n == b.n and a.n > 1 and a.status == b.status == "ok":
        out.values = [x - y for x, y in zip(a.values, b.values)]
        out.paired = out.values
        out.keys = a.keys + b.keys
    elif a.values and b.values:
        out.values = [a.mean - b.mean]
        out.keys = a.keys + b.keys
        spread = [s for s in (a.std, b.std) if s is not None]
        out.reason = out.reason or (f"difference of means; spread ±{math.sqrt(sum(s * s for s in spread)):.2f}"
                                    if spread else None)
    return out


def resolve(grid: Grid, store: Store) -> Resolved:
    values: dict = {}
    records: dict = {}
    for key, cell in grid.cells.items():
        ours = cell.ours
        if isinstance(ours, Source):
            values[key] = _resolve_source(ours, store, records)
        elif isinstance(ours, Const):
            values[key] = Value([ours.value] if ours.value is not None else [], 1, "ok", ours.note or None)
        elif isinstance(ours, NotRun):
            values[key] = Value(status="not run", reason=ours.reason)
        elif ours is None:
            values[key] = Value(status="not run", reason="not part of this profile")
    for key, cell in grid.cells.items():
        if isinstance(cell.ours, Derived):
            values[key] = _resolve_derived(cell.ours, values)
    for run in grid.extra_runs:
        if isinstance(run, (TrainRun, EvalRun)) and run.key not in records:
            record = store.get(run.key)
            if record is not None:
                records[run.key] = record
    return Resolved(grid, values, records)


# -- claims ----------------------------------------------------------------------------------------
def claim_verdict(a: Value, b: Value, paper: float | None) -> tuple[float | None, float | None, str]:
    """(our difference, its seed spread, verdict) of ``a - b``."""
    if a.status == "not run" or b.status == "not run":
        return None, None, "not run"
    if not a.values or not b.values:
        return None, None, "pending"
    if a.n == b.n and a.n > 1:
        diffs = [x - y for x, y in zip(a.values, b.values)]
        diff, spread = statistics.fmean(diffs), statistics.stdev(diffs)
    else:
        diff = a.mean - b.mean
        stds = [s for s in (a.std, b.std) if s is not None]
        spread = math.sqrt(sum(s * s for s in stds)) if len(stds) == 2 else None
    partial = " (partial: runs pending)" if "pending" in (a.status, b.status) else ""
    expected = 1.0 if paper is None or paper == 0 else paper  # no paper number: the claim says "a above b"
    direction = "holds" if diff * expected > 0 else ("no difference" if diff == 0 else "reversed")
    if spread is None:
        return diff, None, f"{direction} (1 seed: spread unknown){partial}"
    if abs(diff) <= spread:
        return diff, spread, f"within seed spread: not resolved at this profile{partial}"
    return diff, spread, direction + partial


# -- formatting --------------------------------------------------------------------------------------
def _fmt(x: float | None, fmt: str, signed: bool = False) -> str:
    if x is None:
        return "-"
    text = fmt.format(x)
    if signed and x >= 0 and not text.startswith("+"):
        text = "+" + text
    return text.replace("-", "−") if signed else text


def ours_text(v: Value, fmt: str, signed: bool = False) -> str:
    if v.status == "not run":
        return "not run"
    if not v.values:
        return f"pending ({v.reason})" if v.status == "pending" else (v.status if v.status != "ok" else "-")
    text = _fmt(v.mean, fmt, signed)
    if v.std is not None:
        text += " ± " + fmt.format(v.std).lstrip("+-")
    if v.keys or v.paired is not None:  # measured (not a constant): say how many seeds
        text += f" (n={v.n})"
    if v.status == "pending":
        text += f", pending: {v.reason}"
    return text


def header(ctx: Context, grid: Grid, resolved: Resolved) -> list[str]:
    p = ctx.profile
    runs = grid.runs()
    finished = sum(1 for r in runs if ctx.store.has(r.key))
    lines = [f"# {grid.title}", "",
             f"- Profile: **{p.name}** ({p.description})",
             f"- Settings: {p.summary()}" + (f"; seeds for this table: {p.seeds_for(grid.name)}"
                                             if p.seeds_for(grid.name) != p.seeds else ""),
             f"- Overrides: {', '.join(p.overrides) if p.overrides else 'none'}",
             f"- Generated: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
             f"git {git_commit()}",
             f"- Runs: {finished} of {len(runs)} finished" + (" (re-run the same command to finish or collect them)"
                                                              if finished < len(runs) else ""),
             f"- Paper numbers: {grid.paper_source} of {_paper()} (transcribed in {grid.paper_file or f'reproduce/specs/{grid.name}.py'})"]
    lines += [f"- {note}" for note in grid.notes]
    return lines


def _paper() -> str:
    from reproduce.specs.base import PAPER

    return PAPER


def to_frames(resolved: Resolved, ctx: Context) -> tuple[list[str], pd.DataFrame, pd.DataFrame, list[str]]:
    """Markdown lines of the table, the long CSV frame, the claims frame, and footnotes."""
    grid = resolved.grid
    reasons: list[str] = []
    flagged: set = set()
    claim_rows = []
    for claim in grid.claims:
        a, b = resolved.value(*claim.a), resolved.value(*claim.b)
        diff, spread, verdict = claim_verdict(a, b, claim.paper)
        if verdict.startswith("within seed spread"):
            flagged.update({claim.a, claim.b})
        claim_rows.append({"claim": claim.text, "paper Δ": _fmt(claim.paper, "{:.1f}", True),
                           "our Δ": _fmt(diff, "{:.2f}", True),
                           "seed spread": "-" if spread is None else f"±{spread:.2f}", "verdict": verdict})
    if grid.trend is not None:
        for line in grid.trend(resolved):
            claim_rows.append(line)

    def reason_ref(reason: str) -> str:
        if reason not in reasons:
            reasons.append(reason)
        return f"[{reasons.index(reason) + 1}]"

    table_rows, csv_rows = [], []
    for row in grid.rows:
        out = {grid_title: row.attrs.get(grid_title, "") for grid_title in grid.attr_titles}
        out = {"": row.title, **out}
        for col in grid.cols:
            cell = grid.cells.get((row.key, col.key))
            if cell is None:
                out[col.title] = ""
                continue
            v = resolved.value(row.key, col.key)
            signed = isinstance(cell.ours, Derived)
            text = ours_text(v, cell.fmt, signed)
            if v.status == "not run":
                text += " " + reason_ref(v.reason or "not part of this profile")
            if (row.key, col.key) in flagged:
                text += " ‡"
            paper = cell.paper_text or (_fmt(cell.paper, cell.fmt, signed) if cell.paper is not None else None)
            if paper is not None:
                text += f" / paper {paper}"
                if v.mean is not None and cell.paper is not None:
                    text += f" (Δ {_fmt(v.mean - cell.paper, cell.fmt, True)})"
            out[col.title] = text
            csv_rows.append({
                "table": grid.name, "profile": ctx.profile.name, "row": row.key, "row_title": row.title,
                **{f"attr:{k}": v_ for k, v_ in row.attrs.items()}, "col": col.key, "col_title": col.title,
                "ours_mean": v.mean, "ours_std": v.std, "n_seeds": v.n, "n_expected": v.expected,
                "values": ";".join(f"{x:.4f}" for x in v.values), "paper": cell.paper,
                "paper_text": cell.paper_text, "diff_vs_paper": (v.mean - cell.paper) if (
                    v.mean is not None and cell.paper is not None) else None,
                "status": v.status, "note": v.reason, "runs": ";".join(v.keys),
                "claim_within_spread": (row.key, col.key) in flagged})
        table_rows.append(out)
    lines = pd.DataFrame(table_rows).to_markdown(index=False).splitlines()
    footnotes = [f"[{i + 1}] not run: {r}" for i, r in enumerate(reasons)]
    if flagged:
        footnotes.append("‡ a difference the paper claims between this cell and another is smaller than our seed "
                         "spread: this profile cannot tell them apart (see Claims).")
    return lines, pd.DataFrame(csv_rows), pd.DataFrame(claim_rows), footnotes


def render_table(ctx: Context, grid: Grid, resolved: Resolved | None = None) -> dict[str, Path]:
    resolved = resolved or resolve(grid, ctx.store)
    table, frame, claims, footnotes = to_frames(resolved, ctx)
    md = header(ctx, grid, resolved) + ["", *table, ""]
    if footnotes:
        md += [*footnotes, ""]
    if len(claims):
        md += ["## Claims", "", "Each claim of the paper as a difference of two cells (ours: mean over paired seeds; "
               "seed spread: std of the paired differences).", "", *claims.to_markdown(index=False).splitlines(), ""]
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
