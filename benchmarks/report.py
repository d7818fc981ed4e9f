"""Results as JSON, a Markdown table and PNG plots (matplotlib)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from benchmarks.systems import SYSTEMS

HEADLINE = ("hot", 64)


def _find(
    records: list[dict[str, Any]], scenario: str, system: str, c: int
) -> dict[str, Any] | None:
    for r in records:
        if (r["scenario"], r["system"], r["concurrency"]) == (scenario, system, c):
            return r
    return None


def _best(records: list[dict[str, Any]], scenario: str, system: str) -> dict[str, Any] | None:
    mine = [r for r in records if (r["scenario"], r["system"]) == (scenario, system)]
    return max(mine, key=lambda r: r["ops_per_s"]) if mine else None


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | float | None) -> float | None:
    if a is None or b is None:
        return None
    denominator = b if isinstance(b, float) else b["ops_per_s"]
    return a["ops_per_s"] / denominator if denominator else None


def ratios(records: list[dict[str, Any]], ceiling: dict[str, Any]) -> dict[str, Any]:
    """commercekit's ratio to each baseline: the headline targets, then every cell."""
    scenario, c = HEADLINE
    ck = _find(records, scenario, "commercekit", c)
    durable = _find(records, scenario, "commercekit-durable", c)
    cte_best = _best(records, scenario, "pg-cte")
    rowlock = _find(records, scenario, "pg-rowlock", c)
    original = _find(records, scenario, "original", c)
    top = float(ceiling["ops_per_s"]) if ceiling.get("available") else None
    five = _find(records, scenario, "commercekit-5loc", c)
    most = _find(records, scenario, "commercekit-5loc-most", c)
    cart = _find(records, "cart5", "commercekit", c)
    cart_five = _find(records, "cart5", "commercekit-5loc", c)
    kit = _find(records, scenario, "commercekit-kit3", c)
    targets = [
        ("hot@64 commercekit / redis-benchmark EVALSHA -c 64", _ratio(ck, top), 0.5),
        ("hot@64 commercekit-5loc / commercekit (one location)", _ratio(five, ck), 0.7),
        ("hot@64 commercekit-5loc-most / commercekit (one location)", _ratio(most, ck), 0.7),
        ("cart5@64 commercekit-5loc / commercekit (one location)", _ratio(cart_five, cart), 0.7),
        ("hot@64 commercekit-kit3 / commercekit (plain SKUs)", _ratio(kit, ck), 0.7),
        ("hot@64 commercekit / pg-rowlock@64", _ratio(ck, rowlock), 15.0),
        ("hot@64 commercekit / pg-cte at its best concurrency", _ratio(ck, cte_best), 2.0),
        ("hot@64 commercekit-durable / original@64", _ratio(durable, original), 1.5),
        ("hot@64 commercekit-durable / pg-rowlock@64", _ratio(durable, rowlock), 5.0),
    ]
    per_cell = []
    for r in records:
        if r["system"] not in ("commercekit", "commercekit-durable"):
            continue
        row: dict[str, Any] = {k: r[k] for k in ("scenario", "system", "concurrency")}
        for base in ("pg-rowlock", "pg-cte", "redis-naive", "original"):
            row[base] = _ratio(r, _find(records, r["scenario"], base, r["concurrency"]))
        per_cell.append(row)
    return {
        "targets": [
            {"what": w, "ratio": v, "target": t, "met": v is not None and v >= t}
            for w, v, t in targets
        ],
        "pg_cte_best_concurrency": cte_best["concurrency"] if cte_best else None,
        "per_cell": per_cell,
    }


def batching_cost(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50/p99 of the pipelined store next to one EVALSHA per call, cell by cell."""
    rows = []
    for r in records:
        if r["system"] != "commercekit":
            continue
        plain = _find(records, r["scenario"], "commercekit-nopipe", r["concurrency"])
        if plain is None:
            continue
        rows.append({
            "scenario": r["scenario"], "concurrency": r["concurrency"],
            "p50_ms": r["p50_ms"], "p50_ms_unpipelined": plain["p50_ms"],
            "p99_ms": r["p99_ms"], "p99_ms_unpipelined": plain["p99_ms"],
            "ops_per_s": r["ops_per_s"], "ops_per_s_unpipelined": plain["ops_per_s"],
        })  # fmt: skip
    return rows


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md."""
    records = report["records"]
    out: list[str] = []
    meta = report["meta"]
    out.append(
        f"Run of {meta['finished']} on {meta['machine']}; {meta['duration']} s per cell "
        f"after {meta['warmup']} s warm-up, clients in {meta['workers']} worker process(es), "
        f"PostgreSQL durable={meta['postgres_durable']}.\n"
    )
    ceiling = report["redis_benchmark"]
    if ceiling.get("available"):
        out.append(
            f"`redis-benchmark -c {ceiling['clients']}` with EVALSHA of the same reserve script: "
            f"**{_fmt(ceiling['ops_per_s'], 0)} reservations/s** (p50 {ceiling['p50_ms']} ms, "
            f"p99 {ceiling['p99_ms']} ms; {ceiling['holds_made']:,} holds made by "
            f"{ceiling['requests']:,} calls, the rest met a repeated random id).\n"
        )
    out.append("### Targets (64 clients)\n")
    out.append("| ratio | measured | target | met |\n|---|---:|---:|:-:|")
    for t in report["ratios"]["targets"]:
        if t["ratio"] is None:
            continue  # a system of the ratio was not part of this run
        met = "yes" if t["met"] else "**no**"
        out.append(f"| {t['what']} | {_fmt(t['ratio'])}x | {t['target']}x | {met} |")
    out.append("")
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        out.append(f"### {scenario}: {report['scenarios'][scenario]}\n")
        out.append(
            "| system | clients | reservations/s | p50 ms | p95 ms | p99 ms | oversold "
            "| conserved | errors |\n|---|---:|---:|---:|---:|---:|---:|:-:|---:|"
        )
        for r in records:
            if r["scenario"] != scenario:
                continue
            out.append(
                f"| {r['system']} | {r['concurrency']} | {_fmt(r['ops_per_s'], 0)} | "
                f"{_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | "
                f"{r['oversold']} | {'yes' if r['conserved'] else '**no**'} | {r['errors']} |"
            )
        out.append("")
    cost = report["batching_cost"]
    if cost:
        out.append("### The cost of pipelining (commercekit vs one EVALSHA per call)\n")
        out.append(
            "| scenario | clients | p50 ms | p50 ms unpipelined | p99 ms | p99 ms unpipelined "
            "| reservations/s | unpipelined |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        )
        for c in cost:
            out.append(
                f"| {c['scenario']} | {c['concurrency']} | {_fmt(c['p50_ms'])} | "
                f"{_fmt(c['p50_ms_unpipelined'])} | {_fmt(c['p99_ms'])} | "
                f"{_fmt(c['p99_ms_unpipelined'])} | {_fmt(c['ops_per_s'], 0)} | "
                f"{_fmt(c['ops_per_s_unpipelined'], 0)} |"
            )
        out.append("")
    out.append("### commercekit's ratio to each baseline, same scenario and concurrency\n")
    out.append(
        "| scenario | system | clients | vs pg-rowlock | vs pg-cte | vs redis-naive | vs original |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for row in report["ratios"]["per_cell"]:
        out.append(
            f"| {row['scenario']} | {row['system']} | {row['concurrency']} | "
            + " | ".join(_fmt(row[b]) + "x" if row[b] else "-" for b in
                         ("pg-rowlock", "pg-cte", "redis-naive", "original"))
            + " |"
        )  # fmt: skip
    out.append("")
    return "\n".join(out)


def plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """One PNG per scenario: reservations/s and p99 latency by concurrency."""
    import matplotlib  # noqa: PLC0415 - only needed for the plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    records = report["records"]
    made = []
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for system in SYSTEMS:
            mine = sorted(
                (r for r in records if (r["scenario"], r["system"]) == (scenario, system)),
                key=lambda r: r["concurrency"],
            )
            if not mine:
                continue
            xs = [r["concurrency"] for r in mine]
            style = "-" if system.startswith("commercekit") else "--"
            left.plot(xs, [r["ops_per_s"] for r in mine], style, marker="o", label=system)
            right.plot(xs, [r["p99_ms"] for r in mine], style, marker="o", label=system)
        ceiling = report["redis_benchmark"]
        if scenario == "hot" and ceiling.get("available"):
            left.axhline(
                ceiling["ops_per_s"], color="grey", linestyle=":", label="redis-benchmark -c 64"
            )
        for ax, title in ((left, "reservations/s"), (right, "p99 latency (ms)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrent clients")
            ax.set_title(f"{scenario}: {title}")
            ax.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"{scenario}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def write(report: dict[str, Any], out: Path, name: str, docs: Path | None) -> list[Path]:
    """Write ``<name>.json``, ``<name>.md`` and the PNGs to `out` (PNGs also to `docs`)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.json", out / f"{name}.md"]
    written[0].write_text(json.dumps(report, indent=2, default=str) + "\n")
    written[1].write_text(markdown(report))
    for png in plots(report, out):
        written.append(png)
        if docs is not None:
            docs.mkdir(parents=True, exist_ok=True)
            shutil.copy(png, docs / png.name)
    return written


DOCS_INTRO = Path(__file__).with_name("docs_intro.md")


def write_docs(report: dict[str, Any], path: Path, notes: str = "") -> None:
    """Write docs/benchmarks.md: the method, the latest tables and the plots."""
    images = "".join(
        f"![{s}](benchmarks/{s}.png)\n\n"
        for s in dict.fromkeys(r["scenario"] for r in report["records"])
    )
    path.write_text(DOCS_INTRO.read_text() + markdown(report) + "\n## Plots\n\n" + images + notes)
