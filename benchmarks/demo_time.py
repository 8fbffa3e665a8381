"""Wall time and peak memory of ``debiasrec demo`` (full and ``--quick``), and what the stage cache
saves: a re-run of an unchanged config, and a re-run with one post-processor changed.

Each command runs in a fresh Python process (``debiasrec.cli.main`` in-process there, so its peak
resident memory is that process's ``ru_maxrss``). Results go to benchmarks/RESULTS.md.

    python benchmarks/demo_time.py [--skip-full] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_section

_CHILD = """
import json, resource, sys, time
from debiasrec.cli import main
t = time.perf_counter()
code = main(sys.argv[2:])
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
peak_mb = usage.ru_maxrss / 1024
cpu_s = usage.ru_utime + usage.ru_stime
json.dump({"code": code, "wall_s": wall, "cpu_s": cpu_s, "peak_mb": peak_mb},
          open(sys.argv[1], "w"))
"""

QUICK = Path(__file__).resolve().parents[1] / "src" / "debiasrec" / "configs" / "demo-quick.toml"


def run(args: list[str], work: Path) -> dict:
    """Run ``debiasrec ARGS`` in a fresh process; wall time, peak RSS, stage totals, load."""
    stats = work / "stats.json"
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(stats), *args], capture_output=True, text=True
    )
    outer = time.perf_counter() - t
    if proc.returncode != 0 or not stats.is_file() or json.loads(stats.read_text())["code"]:
        raise SystemExit(f"debiasrec {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(stats.read_text())
    out = Path(args[args.index("--out") + 1])
    summary = json.loads((out / "summary.json").read_text())
    res.update(
        process_s=outer,
        stages=summary.get("stage_totals", {}),
        load=(load0, os.getloadavg()[0]),
        stdout=proc.stdout,
    )
    return res


def _stages(t: dict) -> str:
    return "; ".join(f"{s} {v['computed']}/{v['cached']}" for s, v in t.items())


def _row(label: str, r: dict) -> str:
    return (
        f"| {label} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['peak_mb']:.0f} | "
        f"{_stages(r['stages'])} | "
        f"{r['load'][0]:.1f} / {r['load'][1]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-full", action="store_true", help="only the --quick demo")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="demo-time-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    head = (
        "| run | wall s | CPU s (user+sys) | peak RSS MB | stages computed/cached "
        "| load avg (1 min) before / after |\n|---|---|---|---|---|---|"
    )

    def publish(extra: str = "") -> None:
        body = (
            f"CPU count {os.cpu_count()}; torch default threads; each run in a fresh process.\n"
            "The load average columns show how busy the machine was: above 2 on this 2-core "
            "machine means other processes were sharing the cores while this was measured, so "
            "wall times are upper bounds; the CPU time (user + system, all threads) is the work "
            "itself, less dependent on the load (on 2 idle cores the wall time is at least CPU "
            "s / 2 and at most CPU s). Stages: computed/cached per stage (split, pre, fit, "
            "eval, post).\n\n" + head + "\n" + "\n".join(rows) + "\n" + extra
        )
        write_section(
            "debiasrec demo: wall time, memory and the stage cache",
            "python benchmarks/demo_time.py",
            body,
        )

    quick_out = work / "quick"
    r = run(["demo", "--quick", "--out", str(quick_out)], work)
    rows.append(_row("`demo --quick` (fresh)", r))
    publish()
    r = run(["demo", "--quick", "--out", str(quick_out)], work)
    rows.append(_row("`demo --quick` again (unchanged config)", r))
    publish()
    changed = work / "quick-changed.toml"
    changed.write_text(
        QUICK.read_text().replace("miscalibration <= 0.5x", "miscalibration <= 0.6x"),
        encoding="utf-8",
    )
    r = run(
        [
            "run",
            str(changed),
            "--out",
            str(work / "quick-changed"),
            "--cache",
            str(quick_out / "cache"),
        ],
        work,
    )
    rows.append(_row("`run` quick config with one post target changed (same cache)", r))
    publish()
    if not args.skip_full:
        full_out = work / "full"
        r = run(["demo", "--out", str(full_out)], work)
        rows.append(_row("`demo` (fresh)", r))
        publish()
        r = run(["demo", "--out", str(full_out)], work)
        rows.append(_row("`demo` again (unchanged config)", r))
        publish(f"\nFull demo result folder: `{full_out}`.")
    print("\n".join([head, *rows]))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"benchmark finished in {time.perf_counter() - t0:.0f}s")
