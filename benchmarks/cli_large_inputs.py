"""Time and peak memory of ``debiasrec data describe`` and ``debiasrec audit`` on large inputs.

Generates (seeded) a 10M-row interactions CSV with a users table (gender, age) and an items
table, a 10M-row held-out test file and top-10 recommendations for every user, then runs each
command in a fresh child process and reads its wall time and peak RSS (``ru_maxrss`` from
``os.wait4`` of that child). ``--code NAME=SRC`` runs the CLI with ``PYTHONPATH=SRC`` so the
same inputs can be measured with the code before and after a change, interleaved
(before, after, before, after, ...) so that a change in machine load hits both alike.

    python benchmarks/cli_large_inputs.py generate DIR [--rows 10000000]
    python benchmarks/cli_large_inputs.py measure DIR --code before=/tmp/before/src \
        --code after=src [--repeat 2] [--write]

Timings are valid only on a quiet machine: the 1-minute load average is recorded before and
after each measurement (``/proc/loadavg``) and the section says "not final" when it exceeds 1.5.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def generate(
    folder: Path, rows: int = 10_000_000, users: int = 200_000, items: int = 20_000, seed: int = 0
) -> None:
    """Write interactions/users/items/test/recs CSV files into ``folder`` (seeded)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    folder.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(seed)
    # Zipf-like item popularity, users with a long-tailed activity.
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    pop /= pop.sum()
    act = gen.pareto(1.5, users) + 1.0
    act /= act.sum()

    def interactions(n: int) -> pa.Table:
        u = gen.choice(users, size=n, p=act).astype(np.int64)
        i = gen.choice(items, size=n, p=pop).astype(np.int64)
        return pa.table(
            {
                "user_id": u + 1,
                "item_id": i + 1,
                "rating": gen.integers(1, 6, n).astype(np.float64),
                "timestamp": gen.integers(946_684_800, 1_700_000_000, n),
            }
        )

    opts = pacsv.WriteOptions(include_header=True)
    pacsv.write_csv(interactions(rows), folder / "interactions.csv", opts)
    test = interactions(rows).select(["user_id", "item_id"])
    pacsv.write_csv(test, folder / "test.csv", opts)
    uid = np.arange(1, users + 1)
    pd.DataFrame(
        {
            "user_id": uid,
            "gender": np.where(gen.random(users) < 0.3, "F", "M"),
            "age": gen.integers(15, 70, users),
        }
    ).to_csv(folder / "users.csv", index=False)
    pd.DataFrame(
        {"item_id": np.arange(1, items + 1), "title": [f"Item {j}" for j in range(1, items + 1)]}
    ).to_csv(folder / "items.csv", index=False)
    k = 10
    recs = pa.table(
        {
            "user_id": np.repeat(uid, k),
            "item_id": (np.argsort(gen.random((users, k * 3)), axis=1)[:, :k] + 1).ravel(),
            "rank": np.tile(np.arange(1, k + 1), users),
        }
    )
    pacsv.write_csv(recs, folder / "recs.csv", opts)


def commands(folder: Path, out: Path) -> dict[str, list[str]]:
    return {
        "data describe": [
            "data", "describe", str(folder / "interactions.csv"),
            "--users", str(folder / "users.csv"), "--sensitive", "gender,age",
        ],
        "audit": [
            "audit", "--recs", str(folder / "recs.csv"), "--test", str(folder / "test.csv"),
            "--users", str(folder / "users.csv"), "--attr", "gender", "--k", "10",
            "--n-boot", "200", "--out", str(out),
        ],
    }  # fmt: skip


def audit_steps(folder: Path) -> list[tuple[str, float, float]]:
    """(step, seconds, RSS MiB at its end) of ``run_audit`` in this process (the code on
    ``sys.path``), from its progress callback."""
    import resource
    import warnings

    from debiasrec.experiment.audit import AuditConfig, run_audit

    def rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return float("nan")

    marks: list[tuple[str, float, float]] = []
    cfg = AuditConfig(
        recs=str(folder / "recs.csv"), test=str(folder / "test.csv"),
        users=str(folder / "users.csv"), attrs=["gender"], k=10, n_boot=200,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_audit(
            cfg,
            folder / "audit-steps",
            on_step=lambda n: marks.append((n, time.perf_counter(), rss())),
        )
    marks.append(("end", time.perf_counter(), rss()))
    out = [
        (name, t1 - t0, mem)  # RSS when the step ended
        for (name, t0, _), (_, t1, mem) in zip(marks[:-1], marks[1:], strict=True)
    ]
    out.append(
        ("peak RSS", float("nan"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    )
    return out


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_child(args: list[str], src: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of ``python -m debiasrec.cli ARGS``."""
    env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "debiasrec.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-2000:])
    return wall, usage.ru_maxrss / 1024, proc.returncode


def measure(folder: Path, codes: dict[str, str], repeat: int) -> list[dict]:
    rows = []
    for cmd_name, args in commands(folder, folder / "audit-out").items():
        for r in range(repeat):
            for label, src in codes.items():
                before = loadavg()
                wall, rss, rc = run_child(args, src)
                rows.append(
                    {
                        "command": cmd_name,
                        "code": label,
                        "run": r + 1,
                        "wall_s": wall,
                        "peak_rss_mib": rss,
                        "exit": rc,
                        "load_before": before,
                        "load_after": loadavg(),
                    }
                )
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("folder", type=Path)
    g.add_argument("--rows", type=float, default=1e7)
    g.add_argument("--users", type=int, default=200_000)
    g.add_argument("--items", type=int, default=20_000)
    g.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure")
    m.add_argument("folder", type=Path)
    m.add_argument("--code", action="append", required=True, help="LABEL=PYTHONPATH")
    m.add_argument("--repeat", type=int, default=2)
    m.add_argument("--write", action="store_true", help="write the section into RESULTS.md")
    m.add_argument("--note", default="", help="text added to the section (e.g. the commits)")
    st = sub.add_parser("steps", help="seconds per step of audit, in this process")
    st.add_argument("folder", type=Path)
    a = ap.parse_args()
    if a.cmd == "steps":
        print(f"load before: {loadavg():.2f}")
        for name, sec, mem in audit_steps(a.folder):
            print(f"| {name} | {sec:.1f} | {mem:,.0f} |")
        print(f"load after: {loadavg():.2f}")
        return
    if a.cmd == "generate":
        generate(a.folder, int(a.rows), a.users, a.items, a.seed)
        return
    codes = dict(c.split("=", 1) for c in a.code)
    codes = {k: str(Path(v).resolve()) for k, v in codes.items()}
    rows = measure(a.folder, codes, a.repeat)
    frame = pd.DataFrame(rows)
    best = frame.groupby(["command", "code"], sort=False).agg(
        wall_s=("wall_s", "min"),
        peak_rss_mib=("peak_rss_mib", "max"),
        exit=("exit", "max"),
        load=("load_before", "max"),
    )
    print(best.to_string())
    if not a.write:
        return
    sys.path.insert(0, str(HERE))
    from _results import write_section

    with open(a.folder / "test.csv", "rb") as fh:
        n_rows = sum(1 for _ in fh) - 1
    quiet = float(frame[["load_before", "load_after"]].max().max()) <= 1.5
    lines = [
        f"Input: `generate` with the default seed: {n_rows:,}-row interactions CSV "
        "(user_id, item_id, rating, timestamp), the same size of held-out test CSV, "
        "200,000 users (gender, age), 20,000 items, top-10 recommendations per user "
        "(2,000,000 rows). Each command runs in a fresh process; wall time is the fastest of "
        f"{a.repeat} interleaved runs, peak RSS the largest (`ru_maxrss` of the child).",
        "",
        "| command | code | wall s | peak RSS MiB | exit | 1-min load |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (cmd_name, label), r in best.iterrows():
        lines.append(
            f"| `{cmd_name}` | {label} | {r.wall_s:.1f} | {r.peak_rss_mib:,.0f} | {int(r.exit)} "
            f"| {r.load:.2f} |"
        )
    lines += [
        "",
        "Codes: " + ", ".join(f"{k} = `PYTHONPATH={v}`" for k, v in codes.items()) + ".",
        "/proc/loadavg at the end: `" + Path("/proc/loadavg").read_text().strip() + "`.",
    ]
    if a.note:
        lines += ["", a.note]
    if not quiet:
        lines.append(
            "\n**Not final**: the 1-minute load exceeded 1.5 during the runs (shared machine)."
        )
    args = list(sys.argv[1:])
    if "--note" in args:  # the note is in the section; the command names it
        args[args.index("--note") + 1] = "NOTE"
    cmdline = "python benchmarks/cli_large_inputs.py " + " ".join(args)
    if a.note:
        cmdline += "` (NOTE: the text after the table)`"
    write_section(
        "CLI on large inputs: data describe and audit (10M rows)", cmdline, "\n".join(lines)
    )


if __name__ == "__main__":
    main()
