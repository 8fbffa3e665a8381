"""The result folder is safe and fresh; the stage cache survives corruption.

- No name in a config can make a run write outside ``--out`` (traversal, absolute paths,
  separators, links).
- A run refuses a folder holding another run or other files unless told to overwrite; then what
  the new run does not produce is removed (no stale recommendations or models for ``serve``).
- A cache entry whose files were truncated or changed is detected, recomputed and replaced.
- The report is written after the run's models: a report failure leaves a complete run.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from debiasrec.errors import ConfigError
from debiasrec.experiment.cache import CacheWarning, StageCache, stage_key, verify_manifest
from debiasrec.experiment.results import ResultFolder, safe_path
from debiasrec.experiment.runner import ExperimentConfig, run_experiment


def _cfg(data, models=None, methods=None) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "data": {
                "source": str(data.interactions),
                "users": str(data.users),
                "items": str(data.items),
                "sensitive": ["gender"],
            },
            "models": models or [{"kind": "pop"}, {"kind": "itemknn", "params": {"k": 5}}],
            "methods": methods or [],
            "eval": {"ks": [5], "n_boot": 10},
        }
    )


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ traversal
@pytest.mark.parametrize(
    "bad", ["../../x", "/tmp/x", "a/b", "..", ".hidden", "a\\b", "", "x" * 300, "a b"]
)
def test_names_that_would_become_paths_are_rejected(tiny_parquet, bad: str) -> None:
    for models, methods in (
        ([{"kind": "pop", "name": bad}], None),
        (None, [{"name": bad, "model": "pop", "post": [{"kind": "exposure", "strength": 0.2}]}]),
        (
            None,
            [{"name": "m", "model": "pop",
              "post": [{"kind": "exposure", "strength": 0.2, "label": bad},
                       {"kind": "calibrated", "strength": 0.2}]}],
        ),
    ):  # fmt: skip
        with pytest.raises(ValueError, match="letters, digits"):
            _cfg(tiny_parquet, models=models, methods=methods)


@pytest.mark.parametrize("part", ["..", "../x", "/etc/x", "a/b", "", ".x", "x\0y"])
def test_safe_path_refuses_anything_but_one_component(tmp_path: Path, part: str) -> None:
    with pytest.raises(ConfigError):
        safe_path(tmp_path, part)
    with pytest.raises(ConfigError):
        safe_path(tmp_path, "recs", part)


def test_safe_path_refuses_a_link_leading_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "models")
    with pytest.raises(ConfigError, match="outside the result folder"):
        safe_path(root, "models", "bpr")
    assert safe_path(root, "recs", "bpr.parquet") == root / "recs" / "bpr.parquet"


def test_a_run_writes_only_inside_out(tiny_parquet, tmp_path: Path) -> None:
    before = set(os.listdir(tmp_path))
    run_experiment(_cfg(tiny_parquet), tmp_path / "deep" / "out")
    assert set(os.listdir(tmp_path)) - before == {"deep"}
    assert not any(p.name.startswith(".staging-") for p in (tmp_path / "deep" / "out").iterdir())


# ------------------------------------------------------------------------------ freshness
def test_another_config_is_refused_then_overwritten_without_stale_files(
    tiny_parquet, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_experiment(_cfg(tiny_parquet), out)
    first = _tree(out)
    assert {"recs/itemknn.parquet", "models/itemknn/config.json"} <= first
    # The same config again: allowed (and cached).
    again = run_experiment(_cfg(tiny_parquet), out)
    assert again.stages.totals()["fit"]["computed"] == 0
    # Another config: refused before anything runs, nothing changed.
    only_pop = _cfg(tiny_parquet, models=[{"kind": "pop"}])
    with pytest.raises(ConfigError, match="another config.*--overwrite"):
        run_experiment(only_pop, out)
    assert _tree(out) == first
    # With overwrite: itemknn's recommendations and model are gone, the cache is kept.
    run_experiment(only_pop, out, overwrite=True)
    now = _tree(out)
    assert not any("itemknn" in p for p in now if not p.startswith("cache/"))
    assert any(p.startswith("cache/") for p in now)
    res = pd.read_parquet(out / "results.parquet")
    assert set(res.method) == {"pop"}


def test_a_folder_with_other_files_is_refused(tiny_parquet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty.*notes.txt"):
        run_experiment(_cfg(tiny_parquet), out)
    assert (out / "notes.txt").read_text() == "mine"
    run_experiment(_cfg(tiny_parquet), out, overwrite=True)
    assert not (out / "notes.txt").exists() and (out / "results.parquet").is_file()


def test_a_failed_run_leaves_the_previous_outputs(
    tiny_parquet, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "out"
    run_experiment(_cfg(tiny_parquet), out)
    before = {p: (out / p).read_bytes() for p in _tree(out) if not p.startswith("cache/")}

    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble while writing")

    monkeypatch.setattr("debiasrec.experiment.runner.save_models", broken)
    with pytest.raises(RuntimeError, match="disk trouble"):
        run_experiment(_cfg(tiny_parquet), out)
    after = {p: (out / p).read_bytes() for p in _tree(out) if not p.startswith("cache/")}
    assert after == before
    assert not any(p.name.startswith(".staging-") for p in out.iterdir())


def test_serve_cannot_pick_a_model_of_an_older_config(tiny_parquet, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from debiasrec.serve.config import ServeConfig
    from debiasrec.serve.pipeline import ServingPipeline

    out = tmp_path / "out"
    run_experiment(_cfg(tiny_parquet), out)
    run_experiment(_cfg(tiny_parquet, models=[{"kind": "pop"}]), out, overwrite=True)
    with pytest.raises(ConfigError, match="no saved model 'itemknn'"):
        ServingPipeline(out, ServeConfig(model="itemknn"))


def test_cli_refuses_and_overwrites(tiny_parquet, tmp_path: Path, cli) -> None:
    from debiasrec.config import dump_toml

    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    dump_toml(_cfg(tiny_parquet), a)
    dump_toml(_cfg(tiny_parquet, models=[{"kind": "pop"}]), b)
    out = tmp_path / "out"
    assert cli("run", a, "--out", out, "--quiet").code == 0
    res = cli("run", b, "--out", out, "--quiet")
    assert res.code == 2 and "another config" in res.err and "Traceback" not in res.err
    assert cli("run", b, "--out", out, "--quiet", "--overwrite").code == 0
    assert not (out / "models" / "itemknn").exists()


def test_a_failing_report_leaves_the_run_complete(tiny_parquet, tmp_path, cli, monkeypatch):
    from debiasrec.config import dump_toml

    def broken(folder):
        raise RuntimeError("report bug")

    monkeypatch.setattr("debiasrec.report.html.write_report", broken)
    path = tmp_path / "a.toml"
    dump_toml(_cfg(tiny_parquet), path)
    out = tmp_path / "out"
    res = cli("run", path, "--out", out, "--quiet")
    assert res.code == 1 and "the run is complete and saved" in res.err
    assert (out / "results.parquet").is_file()
    assert (out / "models" / "itemknn" / "state.safetensors").is_file()  # serve can use it


# ------------------------------------------------------------------------------ cache
def test_truncated_cache_entry_is_recomputed_with_a_warning(tiny_parquet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_experiment(_cfg(tiny_parquet), out).results
    entry = next((out / "cache" / "eval").iterdir())
    target = entry / "results.parquet"
    target.write_bytes(target.read_bytes()[:100])  # truncated, still marked complete
    assert verify_manifest(entry) is not None
    with pytest.warns(CacheWarning, match="corrupt"):
        second = run_experiment(_cfg(tiny_parquet), out)
    statuses = [r.status for r in second.stages.records if r.stage == "eval"]
    assert "recomputed (corrupt entry)" in statuses and "cached" in statuses
    pd.testing.assert_frame_equal(first, second.results)  # same numbers, recomputed
    assert verify_manifest(entry) is None  # replaced by an intact entry
    summary = json.loads((out / "summary.json").read_text())
    assert any(s["status"].startswith("recomputed") for s in summary["stages"])


@pytest.mark.parametrize("damage", ["edit", "extra", "remove", "manifest"])
def test_any_damage_to_an_entry_is_detected(tmp_path: Path, damage: str) -> None:
    cache = StageCache(tmp_path)
    key = stage_key("x", {"n": 1})

    def save(v: int, folder: Path) -> bool:
        (folder / "a.txt").write_text(str(v))
        (folder / "b.txt").write_text("more")
        return True

    def load(folder: Path) -> int:
        return int((folder / "a.txt").read_text())

    assert cache.get_or_compute("x", "lab", key, lambda: 7, save, load) == 7
    entry = cache.folder("x", key)
    assert entry is not None and verify_manifest(entry) is None
    if damage == "edit":
        (entry / "a.txt").write_text("9")  # same size, other content
    elif damage == "extra":
        (entry / "c.txt").write_text("?")
    elif damage == "remove":
        (entry / "b.txt").unlink()
    else:
        (entry / "_manifest.json").write_text("{")
    calls = []
    with pytest.warns(CacheWarning):
        value = cache.get_or_compute("x", "lab", key, lambda: calls.append(1) or 7, save, load)
    assert value == 7 and calls == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # intact now: no warning
        assert cache.get_or_compute("x", "lab", key, lambda: 0, save, load) == 7


def test_a_loader_failing_on_an_entry_counts_as_corrupt(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    key = stage_key("x", {})
    cache.get_or_compute("x", "l", key, lambda: 1, lambda v, f: (f / "v").write_text("1") > 0, int)
    with pytest.warns(CacheWarning, match="could not be read"):
        assert cache.get_or_compute("x", "l", key, lambda: 2, lambda v, f: True, int) == 2


def test_folder_check_without_running(tmp_path: Path) -> None:
    folder = ResultFolder(tmp_path / "f")
    folder.check(ExperimentConfig())  # absent: fine
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "cache").mkdir()
    folder.check(ExperimentConfig())  # only a cache: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        ResultFolder(tmp_path / "file").check(ExperimentConfig())
