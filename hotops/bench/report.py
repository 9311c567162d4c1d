#!/usr/bin/env python3
"""Turn pytest-benchmark JSON files into a markdown table of ratios and PNG bar charts.

    python -m hotops.bench.report RESULT.json [MORE.json ...] --out DIR [--name report]
                           [--baseline NAME ...] [--column KEY ...] [--no-png]

writes ``DIR/<name>.md`` (one section per file, one table per benchmark group) and, per
file and op, ``DIR/<file stem>-<op>.png`` (median time per implementation, one panel per
group, ratios annotated).

Generic over ops: rows are ``extra_info["impl"]`` (falling back to the test's parameter
id), groups are pytest-benchmark's ``group``, and a row is a baseline when
``extra_info["baseline"]`` is true or its impl is named with ``--baseline``. Each table has
one "B / impl" column per baseline B of the group: B's median over the row's median, so
"torch / hotops = 1.9x" reads "hotops takes 1.9x less time than torch". Optional
``extra_info["bytes"]`` (minimum memory traffic of the job) adds an effective GB/s column.
Any other ``extra_info`` value can be shown as a column of its own (after the ratios): the
keys a benchmark names in ``extra_info["columns"]`` (e.g. ``["max_abs_diff_vs_matlab"]``)
appear in its group's table, and ``--column KEY`` adds KEY to every group that has it.

Importable without side effects (``hotops bench`` calls ``write_report``): see
``write_report``, ``load`` and ``render_markdown``. Needs matplotlib only for the PNGs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Row", "Group", "Result", "load", "render_markdown", "plot", "write_report", "main"]

_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


@dataclass
class Row:
    impl: str
    median: float  # seconds
    min: float
    q1: float
    q3: float
    rounds: int
    iterations: int
    baseline: bool
    extra: dict

    @property
    def gbps(self) -> float | None:
        nbytes = self.extra.get("bytes")
        return nbytes / self.median / 1e9 if nbytes and self.median > 0 else None


@dataclass
class Group:
    name: str
    op: str
    rows: list[Row] = field(default_factory=list)

    @property
    def baselines(self) -> list[Row]:
        return [r for r in self.rows if r.baseline]

    def ordered(self) -> list[Row]:
        """Implementations under test first, then the baselines (each in run order)."""
        return [r for r in self.rows if not r.baseline] + self.baselines

    def context(self) -> str:
        """'machine · threads · device' from the rows' extra_info (all values if they differ)."""
        parts = []
        for key, label in (("machine", "machine"), ("threads", "threads"),
                           ("numba_threading_layer", "numba layer"), ("device", "device")):
            values = list(dict.fromkeys(str(r.extra[key]) for r in self.rows if key in r.extra))
            if values:
                parts.append(f"{label}: {', '.join(values)}")
        return " · ".join(parts)


@dataclass
class Result:
    path: Path
    groups: dict[str, Group]
    machine_info: dict
    commit_info: dict
    datetime: str

    @property
    def ops(self) -> list[str]:
        return list(dict.fromkeys(g.op for g in self.groups.values()))


def _op_of(bench: dict) -> str:
    op = (bench.get("extra_info") or {}).get("op")
    if op:
        return str(op)
    module = bench.get("fullname", "").split("::", 1)[0]
    stem = Path(module).stem
    return stem.removeprefix("test_") or "bench"


def _impl_of(bench: dict) -> str:
    impl = (bench.get("extra_info") or {}).get("impl")
    return str(impl if impl is not None else (bench.get("param") or bench.get("name")))


def load(path, baselines=()) -> Result:
    """Read one pytest-benchmark JSON file; ``baselines``: impl names to mark as baselines."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    groups: dict[str, Group] = {}
    for bench in data.get("benchmarks", []):
        stats = bench.get("stats") or {}
        if not stats or stats.get("median") is None:
            continue
        extra = dict(bench.get("extra_info") or {})
        impl = _impl_of(bench)
        name = bench.get("group") or _op_of(bench)
        group = groups.setdefault(name, Group(name=name, op=_op_of(bench)))
        group.rows.append(Row(
            impl=impl,
            median=float(stats["median"]),
            min=float(stats["min"]),
            q1=float(stats.get("q1", stats["median"])),
            q3=float(stats.get("q3", stats["median"])),
            rounds=int(stats.get("rounds", 0)),
            iterations=int(stats.get("iterations", 1)),
            baseline=bool(extra.get("baseline")) or impl in baselines,
            extra=extra,
        ))
    return Result(path=path, groups=groups, machine_info=data.get("machine_info") or {},
                  commit_info=data.get("commit_info") or {}, datetime=data.get("datetime", ""))


def _unit(seconds: float) -> tuple[str, float]:
    for name, scale in _UNITS:
        if seconds >= scale:
            return name, scale
    return _UNITS[-1]


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def ratio_text(baseline: Row, row: Row) -> str:
    return f"{baseline.impl} / {row.impl} = {baseline.median / row.median:.2f}x"


def _file_header(res: Result, title: str | None = None) -> list[str]:
    mi = res.machine_info
    ho = mi.get("hotops") or {}
    lines = [f"## {title or res.path.name}", ""]
    bits = []
    if res.datetime:
        bits.append(f"run {res.datetime[:19].replace('T', ' ')} UTC")
    if ho.get("machine"):
        bits.append(f"{ho['machine'].get('summary', '')}, {ho['machine'].get('platform', '')}")
    elif mi.get("cpu"):
        cpu = mi["cpu"]
        bits.append(f"{cpu.get('brand_raw', '?')} ({cpu.get('count', '?')} cores)")
    if ho.get("threads"):
        bits.append(f"{ho['threads']} threads (numba {ho.get('numba_threads')} via "
                    f"{ho.get('numba_threading_layer')}, torch {ho.get('torch_threads')})")
    if ho.get("gpu"):
        bits.append(f"GPU: {ho['gpu']}")
    if res.commit_info.get("id") not in (None, "", "unknown"):
        dirty = " (dirty)" if res.commit_info.get("dirty") else ""
        bits.append(f"commit {str(res.commit_info['id'])[:10]}{dirty}")
    if bits:
        lines += ["; ".join(bits) + ".", ""]
    vers = ho.get("versions")
    if vers:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v) + ".", ""]
    return lines


def _fmt_extra(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def extra_columns_of(group: Group, extra_columns=()) -> list[str]:
    """The extra_info keys shown as columns: those the rows name in ``extra_info["columns"]``,
    then ``extra_columns`` where some row of the group has the key."""
    keys: list[str] = []
    for r in group.rows:
        named = r.extra.get("columns") or []
        keys += [str(k) for k in ([named] if isinstance(named, str) else named)]
    keys += [k for k in extra_columns if any(k in r.extra for r in group.rows)]
    return list(dict.fromkeys(keys))


def render_group(group: Group, extra_columns=()) -> list[str]:
    rows = group.ordered()
    base = group.baselines
    extras = extra_columns_of(group, extra_columns)
    unit, scale = _unit(min(r.median for r in rows))
    has_bw = any(r.gbps is not None for r in rows)
    head = ["impl", f"median ({unit})", f"min ({unit})", "rounds"]
    if has_bw:
        head.append("GB/s (eff.)")
    head += [f"{b.impl} / impl" for b in base]
    head += extras
    lines = [f"### {group.name}", ""]
    ctx = group.context()
    if ctx:
        lines += [ctx, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        name = f"{r.impl} (baseline)" if r.baseline else f"**{r.impl}**"
        cells = [name, _fmt(r.median / scale), _fmt(r.min / scale),
                 f"{r.rounds}" + (f"×{r.iterations}" if r.iterations > 1 else "")]
        if has_bw:
            cells.append(f"{r.gbps:.1f}" if r.gbps is not None else "")
        for b in base:
            cells.append("—" if b is r else f"{b.median / r.median:.2f}x")
        cells += [_fmt_extra(r.extra.get(k)) for k in extras]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in rows:
        if not r.baseline and base:
            lines.append(f"- **{r.impl}**: " + ", ".join(ratio_text(b, r) for b in base))
    if not base:
        lines.append("- (no baseline marked in this group: set extra_info['baseline'] or pass --baseline)")
    lines.append("")
    return lines


def png_name(res: Result, op: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", op)
    return f"{res.path.stem}-{safe}.png"


def render_markdown(results: list[Result], pngs: dict | None = None, extra_columns=()) -> str:
    """The whole report; ``pngs`` maps (file path, op) to a PNG path relative to the .md;
    ``extra_columns``: extra_info keys to show as columns wherever a group has them."""
    lines = ["# Benchmark report", "",
             "Times are medians over rounds (each round one call, or ×iterations calls for very "
             "fast ones). \"B / impl\" is baseline B's median time over the row's: above 1x the "
             "row is faster than B. GB/s (eff.) is the minimum memory traffic of the job over "
             "the median time.", ""]
    names = [res.path.name for res in results]
    for res in results:
        # two inputs with the same file name: tell them apart by their path
        lines += _file_header(res, str(res.path) if names.count(res.path.name) > 1 else None)
        if not res.groups:
            lines += ["(no benchmark results in this file)", ""]
        for op in res.ops:
            for group in res.groups.values():
                if group.op == op:
                    lines += render_group(group, extra_columns)
            if pngs and (res.path, op) in pngs:
                lines += [f"![{op}: median times]({pngs[(res.path, op)]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def plot(res: Result, op: str, path) -> Path:
    """One PNG: a panel per group of ``op``, horizontal bars of median times (IQR whiskers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in res.groups.values() if g.op == op]
    heights = [0.45 * len(g.rows) + 0.75 for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(7.5, sum(heights) + 0.3), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, group in zip(axes[:, 0], groups):
        rows = group.ordered()
        unit, scale = _unit(min(r.median for r in rows))
        y = list(range(len(rows)))[::-1]
        med = [r.median / scale for r in rows]
        err = [[max(0.0, (r.median - r.q1) / scale) for r in rows],
               [max(0.0, (r.q3 - r.median) / scale) for r in rows]]
        colors = ["#9e9e9e" if r.baseline else "#1f77b4" for r in rows]
        ax.barh(y, med, xerr=err, color=colors, height=0.6, capsize=2,
                error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        ax.set_yticks(y, [r.impl + (" (base)" if r.baseline else "") for r in rows], fontsize=8)
        ax.set_xlabel(f"median time ({unit}), whiskers: IQR; shorter is faster", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(group.name, fontsize=9, loc="left")
        right = max(m + e for m, e in zip(med, err[1]))
        for yi, r, m in zip(y, rows, med):
            text = f"{_fmt(m)} {unit}"
            if not r.baseline and group.baselines:
                text += "   " + ", ".join(f"{b.impl}/{r.impl} {b.median / r.median:.2f}x"
                                          for b in group.baselines)
            ax.text(right * 0.02, yi, text, va="center", ha="left", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "edgecolor": "none"})
        ax.set_xlim(0, right * 1.05)
        ax.spines[["top", "right"]].set_visible(False)
    ctx = groups[0].context() if groups else ""
    fig.suptitle(f"{op} — {ctx}" if ctx else op, fontsize=7, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(json_paths, out_dir, *, name: str = "report", baselines=(), png: bool = True,
                 extra_columns=()) -> dict:
    """Write ``out_dir/<name>.md`` and the PNGs; returns ``{"markdown": Path, "pngs": [Path]}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [load(p, baselines) for p in json_paths]
    pngs: dict = {}
    written: list[Path] = []
    if png:
        taken: set[str] = set()
        for res in results:
            for op in res.ops:
                fname = png_name(res, op)
                stem, n = fname[:-4], 2
                while fname in taken:  # two inputs with the same stem
                    fname, n = f"{stem}-{n}.png", n + 1
                taken.add(fname)
                written.append(plot(res, op, out_dir / fname))
                pngs[(res.path, op)] = fname
    md = out_dir / f"{name}.md"
    md.write_text(render_markdown(results, pngs, extra_columns), encoding="utf-8")
    return {"markdown": md, "pngs": written}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="pytest-benchmark JSON file(s) (--benchmark-json)")
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    parser.add_argument("--name", default="report", help="markdown file name, without .md (default: report)")
    parser.add_argument("--baseline", action="append", default=[], metavar="IMPL",
                        help="also treat this impl as a baseline in every group (repeatable)")
    parser.add_argument("--column", action="append", default=[], metavar="KEY",
                        help="also show extra_info[KEY] as a column in groups that have it (repeatable)")
    parser.add_argument("--no-png", action="store_true", help="skip the PNG charts")
    args = parser.parse_args(argv)
    missing = [p for p in args.json if not os.path.isfile(p)]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    out = write_report(args.json, args.out, name=args.name, baselines=tuple(args.baseline),
                       png=not args.no_png, extra_columns=tuple(args.column))
    print(f"wrote {out['markdown']}")
    for p in out["pngs"]:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
