"""Are two result folders bit-identical? (the same config run by two versions of the code)

Compares every table of the folders (results, aggregate, tests, frontier, calibration,
explanations, every ``recs/*.parquet``) exactly (``pandas.testing.assert_frame_equal`` with
``check_exact``); prints one line per table and exits 1 if any differs.

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src python -m debiasrec.cli run --threads 1 --quiet \\
        benchmarks/demo_deterministic.toml --out /tmp/det-before
    python -m debiasrec.cli run --threads 1 --quiet benchmarks/demo_deterministic.toml \\
        --out /tmp/det-after
    python benchmarks/compare_results.py /tmp/det-before /tmp/det-after [--write NOTE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

TABLES = [
    "results.parquet",
    "aggregate.parquet",
    "tests.parquet",
    "frontier.parquet",
    "calibration.parquet",
    "explanations.parquet",
]


def compare(a: Path, b: Path) -> list[tuple[str, str]]:
    rows = []
    names = TABLES + sorted(
        {f"recs/{p.name}" for p in (a / "recs").glob("*.parquet")}
        | {f"recs/{p.name}" for p in (b / "recs").glob("*.parquet")}
    )
    for name in names:
        pa, pb = a / name, b / name
        if not pa.exists() or not pb.exists():
            rows.append((name, f"only in {'the first' if pa.exists() else 'the second'} folder"))
            continue
        x, y = pd.read_parquet(pa), pd.read_parquet(pb)
        try:
            pd.testing.assert_frame_equal(x, y, check_exact=True)
            rows.append((name, f"identical ({x.shape[0]} x {x.shape[1]})"))
        except AssertionError as exc:
            rows.append((name, "DIFFERENT: " + " ".join(str(exc).split())[:200]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--write", metavar="NOTE", help="write the section into RESULTS.md")
    args = ap.parse_args()
    rows = compare(args.first, args.second)
    for name, verdict in rows:
        print(f"{name}: {verdict}")
    bad = [r for r in rows if not r[1].startswith("identical")]
    if args.write is not None:
        sys.path.insert(0, str(Path(__file__).parent))
        from _results import write_section

        body = [args.write, "", "| table | verdict |", "| --- | --- |"]
        body += [f"| `{n}` | {v} |" for n, v in rows]
        body += ["", f"**{len(rows) - len(bad)} of {len(rows)} tables bit-identical.**"]
        write_section(
            "Bit-identity of the demo across the experiment-layer redesign",
            f"python benchmarks/compare_results.py {args.first} {args.second} --write NOTE",
            "\n".join(body),
        )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
