"""Load test of ``debiasrec serve`` on loopback: throughput and p50/p99 latency of /recommend.

Starts the real server (``python -m debiasrec.cli serve``, one uvicorn worker, torch threads 1)
over an ML-100K ItemKNN result folder, warms it up, then drives it with an async httpx client
at bounded concurrency (one request in flight per slot, random known users). Client and server
share the machine's cores, so the numbers are a lower bound for a dedicated server.

    python benchmarks/serve_load.py [--requests 3000] [--concurrency 16] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402
from serve_common import ml100k_folder  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, store: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "debiasrec.cli",
        "serve",
        str(folder),
        "--model",
        "itemknn",
        "--port",
        str(port),
        "--store",
        str(store),
        "--log-level",
        "warning",
        "--threads",
        "1",
        "--config",
        str(store.parent / "serve.toml"),
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def drive(base: str, make_request, n: int, concurrency: int) -> tuple[np.ndarray, int, float]:
    """Run ``n`` requests with ``concurrency`` slots; latencies (s), errors, wall time."""
    lat = np.zeros(n)
    errors = 0
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def slot() -> None:
            nonlocal errors
            for i in counter:
                method, url, kw = make_request(i)
                t = time.perf_counter()
                r = await client.request(method, url, **kw)
                lat[i] = time.perf_counter() - t
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(slot() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return lat, errors, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--folder", type=Path, default=Path(tempfile.gettempdir()) / "debiasrec-serve-bench"
    )
    ap.add_argument("--write", action="store_true", help="write the section into RESULTS.md")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = ml100k_folder(args.folder)
    train = pd.read_parquet(folder / "split" / "train.parquet")
    users = np.array(sorted({str(u) for u in train["user_id"]}))
    items = np.array(sorted({str(i) for i in train["item_id"]}))
    rng = np.random.default_rng(0)
    store = Path(tempfile.mkdtemp()) / "feedback.sqlite"
    # fixed re-ranking strengths (online loop off) so every scenario measures real re-ranking
    # the rate limiter runs (its cost is measured) but with a limit the client never reaches
    (store.parent / "serve.toml").write_text(
        "[strengths]\nexposure = 0.5\ngroup_fair = 1.0\n\n[online]\nenabled = false\n\n"
        "[rate_limit]\nper_second = 1e9\nburst = 1000000000\n"
    )
    port = free_port()
    proc = start_server(folder, store, port)
    base = f"http://127.0.0.1:{port}"
    n, c = args.requests, args.concurrency
    if n < 1:
        raise SystemExit("--requests must be at least 1")
    # enough users for the warm-up rounds (300 and 200 requests) as well as the measured ones
    pick = rng.integers(0, len(users), size=max(n, 300))

    def rec(post: str):
        return lambda i: (
            "GET",
            "/recommend",
            {"params": {"user_id": users[pick[i]], "k": 10, "post": post}},
        )

    def cold(i):
        return ("GET", "/recommend", {"params": {"user_id": f"new-{i}", "k": 10}})

    def feedback(i):
        u = users[pick[i]]
        ev = [
            {
                "user_id": u,
                "item_id": items[(i * 10 + j) % len(items)],
                "type": "impression",
                "position": j + 1,
            }
            for j in range(10)
        ]
        return ("POST", "/feedback", {"json": {"events": ev}})

    scenarios = [
        ("/recommend, raw model (post=none)", rec("none")),
        ("/recommend, exposure re-ranking (strength 0.5)", rec("exposure")),
        ("/recommend, group-fair re-ranking (strength 1)", rec("group_fair")),
        ("/recommend, cold start (popularity)", cold),
        ("/feedback, 10 impressions per request (fsync each)", feedback),
    ]
    rows = []
    load_before = os.getloadavg()[0]
    try:
        asyncio.run(drive(base, rec("none"), 300, c))  # warm-up
        for name, make in scenarios:
            asyncio.run(drive(base, make, 200, c))  # per-scenario warm-up
            lat, err, wall = asyncio.run(drive(base, make, n, c))
            ms = lat * 1000
            rows.append((name, n, c, n / wall, np.percentile(ms, 50), np.percentile(ms, 99), err))
            print(
                f"{name}: {n / wall:.0f} req/s, p50 {np.percentile(ms, 50):.1f} ms, "
                f"p99 {np.percentile(ms, 99):.1f} ms, errors {err}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    body = (
        "ML-100K (943 users, 1682 items), ItemKNN, k=10, one uvicorn worker, torch threads 1, "
        f"async httpx client with {c} concurrent requests on loopback; client and server share "
        "the 2 cores, so these are lower bounds for a dedicated server (the load averages below show what else ran). The online loop is off here (fixed strengths) so that each re-ranking scenario measures real re-ranking. "
        "Feedback uses the SQLite store with synchronous=FULL (one fsync per request), the "
        "private fairness monitor (default settings) and counters folded from the store. "
        "The rate limiter is on with a limit the client never reaches. "
        f"1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run.\n\n"
        "| scenario | requests | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | errors |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        + "\n".join(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]} |"
            for r in rows
        )
    )
    print(body)
    if args.write:
        write_section(
            "serve load test (ML-100K), hardened server",
            f"python benchmarks/serve_load.py --requests {n} --concurrency {c} --write",
            body,
        )


if __name__ == "__main__":
    main()
