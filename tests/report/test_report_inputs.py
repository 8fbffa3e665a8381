"""``debiasrec report`` on damaged result folders: exit 2 naming the file, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from debiasrec.cli import main
from debiasrec.errors import DataError
from debiasrec.report.data import load_report_data


def _report(folder: Path) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["report", str(folder)])
    return code, err.getvalue()


@pytest.fixture
def folder(report_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared result folder, to damage."""
    dest = tmp_path / "run"
    shutil.copytree(report_run, dest, ignore=shutil.ignore_patterns("cache", "models"))
    return dest


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (lambda f: _truncate(f / "results.parquet"), ["results.parquet", "not a readable Parquet"]),
        (
            lambda f: (f / "results.parquet").write_bytes(b"PAR1 not really"),
            ["results.parquet", "not a readable Parquet"],
        ),
        (
            lambda f: (f / "results.parquet").write_text("method,metric\nx,y\n"),
            ["results.parquet", "not a readable Parquet"],
        ),
        (
            lambda f: (f / "results.parquet").write_bytes(b""),
            ["results.parquet", "not a readable Parquet"],
        ),
        (
            lambda f: pd.DataFrame({"a": [1]}).to_parquet(f / "results.parquet"),
            ["results.parquet", "lacks column(s)", "'method'"],
        ),
        (
            lambda f: (
                pd.read_parquet(f / "results.parquet").iloc[:0].to_parquet(f / "results.parquet")
            ),
            ["results.parquet", "has no rows"],
        ),
        (
            lambda f: (
                pd.read_parquet(f / "results.parquet")
                .astype({"value": str})
                .to_parquet(f / "results.parquet")
            ),
            ["results.parquet", "'value' must hold numbers"],
        ),
        (lambda f: _truncate(f / "aggregate.parquet"), ["aggregate.parquet", "not a readable"]),
        (lambda f: _truncate(f / "recs" / "bpr.parquet"), ["bpr.parquet", "not a readable"]),
        (
            lambda f: (f / "summary.json").write_text("{not json"),
            ["summary.json", "not valid JSON"],
        ),
        (lambda f: (f / "summary.json").write_bytes(b"\xff\xfe{}"), ["summary.json", "JSON"]),
        (
            lambda f: (f / "summary.json").write_text("[1, 2]"),
            ["summary.json", "not a JSON object"],
        ),
    ],
    ids=[
        "truncated-results",
        "fake-magic",
        "csv-named-parquet",
        "empty-file",
        "foreign-columns",
        "no-rows",
        "text-values",
        "truncated-aggregate",
        "truncated-recs",
        "bad-json",
        "non-utf8-json",
        "json-list",
    ],
)
def test_report_on_a_damaged_folder(damage, needles, folder: Path) -> None:
    damage(folder)
    code, err = _report(folder)
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 1
    for needle in needles:
        assert needle in err, (needle, err)
    with pytest.raises(DataError):  # the Python API gives the same error
        load_report_data(folder)


def test_report_tolerates_a_non_utf8_config(folder: Path) -> None:
    """config.toml is only shown: undecodable bytes are replaced, the report is written."""
    (folder / "config.toml").write_bytes(b'name = "caf\xe9"\n')
    code, err = _report(folder)
    assert code == 0, err
    assert "caf\ufffd" in (folder / "report.html").read_text(encoding="utf-8")


def test_report_without_the_n_column(folder: Path) -> None:
    """Folders from before ``n`` was a result column still render."""
    res = pd.read_parquet(folder / "results.parquet").drop(columns="n")
    res.to_parquet(folder / "results.parquet")
    code, err = _report(folder)
    assert code == 0, err


def test_report_that_cannot_be_written(folder: Path) -> None:
    (folder / "report.html").unlink()
    (folder / "report.html").mkdir()  # writing the page fails (chmod does not stop root)
    code, err = _report(folder)
    assert code == 2 and "cannot write the report" in err and "report.html" in err
    assert "Traceback" not in err
