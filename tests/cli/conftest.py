"""Tiny data files and a CLI runner for the command-line tests (all written into tmp folders)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from debiasrec.cli import main
from debiasrec.data.synthetic import SyntheticConfig, generate


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def invoke(args: list[str]) -> CliResult:
    """Run the real entry point, capturing what it prints (usable outside function fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliResult]:
    """``cli("run", cfg, "--out", d)`` -> exit code, stdout, stderr of ``debiasrec.cli.main``."""
    return lambda *args: invoke(list(args))


@dataclass
class TinyData:
    folder: Path
    interactions: Path
    users: Path
    items: Path
    frame: pd.DataFrame  # the interactions as written
    users_frame: pd.DataFrame


def write_tiny(folder: Path) -> TinyData:
    """60 users x 40 items from the synthetic generator, with ids that are not codes:
    users ``u0..u59`` (text), items ``100..139`` (integers)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds, _ = generate(SyntheticConfig(n_users=60, n_items=40, mean_interactions=12), rng=0)
    inter = ds.interactions_frame()
    users = ds.users_frame()
    items = ds.items_frame()
    inter["user_id"] = "u" + inter["user_id"].astype(str)
    users["user_id"] = "u" + users["user_id"].astype(str)
    inter["item_id"] = inter["item_id"] + 100
    items["item_id"] = items["item_id"] + 100
    items["genres"] = items["genres"].map("|".join)
    paths = [folder / "interactions.csv", folder / "users.csv", folder / "items.csv"]
    for frame, path in zip((inter, users, items), paths, strict=True):
        frame.to_csv(path, index=False)
    return TinyData(folder, *paths, frame=inter, users_frame=users)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    return write_tiny(tmp_path_factory.mktemp("tiny"))


def _config_text(
    data: TinyData,
    *,
    top: str = "",
    data_extra: str = "",
    eval_extra: str = "",
    models: str | None = None,
) -> str:
    """A short experiment over ``data``: pop + BPR (3 epochs), ks 5 and 10, 20 bootstraps.

    ``top``, ``data_extra`` and ``eval_extra`` are TOML lines added at the top level, in
    ``[data]`` and in ``[eval]``; ``models`` replaces the ``[[models]]`` tables.
    """
    if models is None:
        models = (
            '[[models]]\nmodel = "pop"\n\n'
            '[[models]]\nmodel = "bpr"\nparams = { dim = 8, train = { epochs = 3 } }\n'
        )
    return (
        f'name = "tiny"\nseeds = [0]\n{top}\n\n'
        f"[data]\nsource = '{data.interactions}'\nusers = '{data.users}'\n"
        f'items = \'{data.items}\'\nsensitive = ["gender", "age"]\n{data_extra}\n\n'
        f"[eval]\nks = [5, 10]\nn_boot = 20\n{eval_extra}\n\n{models}"
    )


@pytest.fixture(scope="module")
def make_config(tiny: TinyData) -> Callable[..., Path]:
    """``make_config(path, **parts)`` writes :func:`_config_text` over ``tiny`` to ``path``."""

    def write(path: Path, **parts: str) -> Path:
        path.write_text(_config_text(tiny, **parts), encoding="utf-8")
        return path

    return write
