"""Write a benchmark's section into benchmarks/RESULTS.md (between BEGIN/END markers)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def machine() -> str:
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{_dt.date.today().isoformat()}"
    )


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = (
        f"<!-- BEGIN {name} -->\n## {name}\n\nCommand: `{command}`  \n"
        f"Machine: {machine()}\n\n{body.rstrip()}\n<!-- END {name} -->"
    )
    pat = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pat.sub(block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
