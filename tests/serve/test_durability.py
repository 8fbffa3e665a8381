"""Every acknowledged feedback event survives a SIGKILL of the server (real process, real HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(folder: Path, store: Path, port: int, log: Path) -> subprocess.Popen:
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
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not come up:\n{log.read_text()}")


def test_acknowledged_events_survive_sigkill(result_dir, tmp_path) -> None:
    store = tmp_path / "durable.sqlite"
    log = tmp_path / "server.log"
    port = _free_port()
    proc = _start(result_dir, store, port, log)
    url = f"http://127.0.0.1:{port}/feedback"
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        n = 0
        with httpx.Client(timeout=5.0) as c:
            while not stop.is_set():
                ids = [f"w{w}-{n}-{j}" for j in range(3)]
                n += 1
                events = [
                    {
                        "user_id": "u1",
                        "item_id": "100",
                        "type": "impression",
                        "position": 1,
                        "event_id": e,
                    }
                    for e in ids
                ]
                try:
                    r = c.post(url, json={"events": events})
                except httpx.HTTPError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.extend(ids)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 300:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # while requests are still in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 300, log.read_text()

    proc = _start(result_dir, store, port, log)  # recovers the WAL on start
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["events"] >= len(acked)
        fair = httpx.get(f"http://127.0.0.1:{port}/fairness").json()
        assert fair["events"] == health["events"]  # the monitor was rebuilt from the store
        con = sqlite3.connect(store)
        stored = {r[0] for r in con.execute("SELECT event_id FROM events")}
        con.close()
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
