"""Small data for the runner and audit tests (written into tmp folders) and a CLI runner."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from debiasrec.cli import main
from debiasrec.data.synthetic import SyntheticConfig, generate


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliResult]:
    """``cli("audit", ...)`` -> exit code, stdout, stderr of ``debiasrec.cli.main``."""

    def invoke(*args: object) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return CliResult(code, out.getvalue(), err.getvalue())

    return invoke


@dataclass
class TinyParquet:
    interactions: Path
    users: Path
    items: Path


@pytest.fixture(scope="session")
def tiny_parquet(tmp_path_factory: pytest.TempPathFactory) -> TinyParquet:
    """60 users x 40 items (synthetic, gender + age) as Parquet files."""
    folder = tmp_path_factory.mktemp("tiny_parquet")
    ds, _ = generate(SyntheticConfig(n_users=60, n_items=40, mean_interactions=12), rng=0)
    items = ds.items_frame()
    items["genres"] = items["genres"].map(list)
    paths = TinyParquet(
        folder / "inter.parquet", folder / "users.parquet", folder / "items.parquet"
    )
    ds.interactions_frame().to_parquet(paths.interactions, index=False)
    ds.users_frame().to_parquet(paths.users, index=False)
    items.to_parquet(paths.items, index=False)
    return paths
