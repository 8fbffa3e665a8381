"""The ``debiasrec`` command line through its real entry point (``debiasrec.cli.main``).

Everything runs on a 60-user synthetic dataset written as CSV files; one test reads the real
ML-100K (from the files shipped in the installed ``recbole`` package).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiasrec.data.purify import load_dataset
from debiasrec.experiment.evaluate import RESULT_COLUMNS
from debiasrec.experiment.runner import ExperimentConfig, load_config, prepare_data

TIMEOUT = 60


def _one_clear_error(err: str) -> None:
    """Exit-2 contract: a message starting with ``error:``, no traceback."""
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 1, err


# ------------------------------------------------------------------------------ entry points


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("debiasrec")  # the script beside this interpreter
    if not exe.is_file():
        exe = Path(shutil.which("debiasrec") or "debiasrec")
    assert exe.is_file(), "the console script is installed with the package"
    proc = subprocess.run(
        [str(exe), "--help"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "audit", "data", "report", "demo"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout


def test_version_and_usage_errors(cli) -> None:
    res = cli("--version")
    assert res.code == 0 and re.search(r"debiasrec, version \d", res.out)
    res = cli("no-such-command")
    assert res.code == 2 and "No such command" in res.err
    res = cli("run")  # missing CONFIG
    assert res.code == 2 and "CONFIG" in res.err


# ------------------------------------------------------------------------------ run


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, make_config, cli):
    """One ``debiasrec run`` of pop + BPR shared by the result-folder tests."""
    base = tmp_path_factory.mktemp("run")
    cfg = make_config(base / "tiny.toml")
    out = base / "out"
    res = cli("run", cfg, "--out", out, "--threads", 1)
    return cfg, out, res


def test_run_exit_code_and_table(run_folder) -> None:
    _, out, res = run_folder
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    # The terminal table has one column per method; progress goes to stderr.
    assert re.search(r"^method\s+pop\s+bpr\s*$", res.out, re.M), res.out
    assert "ndcg@10 gender=F" in res.out
    assert f"{out}/results.parquet" in res.out
    assert "bpr seed 0: fit" in res.err


def test_run_writes_the_result_folder_layout(run_folder) -> None:
    _, out, _ = run_folder
    names = {
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and p.relative_to(out).parts[0] != "cache"  # the stage cache
    }
    assert names == {
        "config.toml",
        "summary.json",
        "results.parquet",
        "aggregate.parquet",
        "tests.parquet",
        "frontier.parquet",
        "levelling.parquet",
        "explanations.parquet",
        "calibration.parquet",
        "report.html",
        "report.md",
        "recs/pop.parquet",
        "recs/bpr.parquet",
        "models/pop/config.json",
        "models/pop/state.safetensors",
        "models/bpr/config.json",
        "models/bpr/state.safetensors",
        "split/train.parquet",
        "split/valid.parquet",
        "split/test.parquet",
        "split/users.parquet",
        "split/items.parquet",
        "split/dataset.json",
    }


def test_run_config_is_the_resolved_config(run_folder) -> None:
    cfg_path, out, _ = run_folder
    from debiasrec.experiment.results import resolve_config
    from debiasrec.metrics import default_metrics

    saved = load_config(out / "config.toml")
    assert saved == resolve_config(load_config(cfg_path))
    assert saved.eval.metrics == default_metrics()  # what an unspecified list computed
    # Defaults are written out, so the file says everything that was run.
    text = (out / "config.toml").read_text()
    for key in ("[split]", "ratios", "n_boot = 20", "metrics", "[data.purify]"):
        assert key in text


def test_run_summary(run_folder, tiny) -> None:
    _, out, _ = run_folder
    s = json.loads((out / "summary.json").read_text())
    assert s["name"] == "tiny"
    assert {"debiasrec", "python", "numpy", "pandas", "torch"} <= set(s["versions"])
    assert "git_commit" in s  # a hash from a checkout, None from a wheel
    assert s["seeds"] == [0] and s["split_seed"] == 2020
    ds, _ = load_dataset(
        str(tiny.interactions),
        users=str(tiny.users),
        items=str(tiny.items),
        sensitive=["gender", "age"],
    )
    assert s["dataset"]["fingerprint"] == ds.fingerprint()
    assert s["dataset"]["n_users"] == 60 and s["dataset"]["n_interactions"] == len(tiny.frame)
    assert s["dataset"]["sensitive"] == ["gender", "age"]
    assert sum(s["split_sizes"].values()) == len(tiny.frame)
    t = s["timings_s"]
    assert {"data", "total", "pop/seed0/fit", "pop/seed0/eval", "bpr/seed0/fit"} <= set(t)
    assert all(v >= 0 for v in t.values()) and t["total"] >= t["bpr/seed0/fit"]
    assert s["purification"]["input_rows"] == len(tiny.frame)
    assert "bpr/seed0" in s["training"]


def test_run_results_are_tidy(run_folder) -> None:
    _, out, _ = run_folder
    res = pd.read_parquet(out / "results.parquet")
    assert list(res.columns) == RESULT_COLUMNS
    assert set(res["method"]) == {"pop", "bpr"} and set(res["seed"]) == {0}
    ages = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]
    groups = set(res["group"])
    assert {"all", "gender=F", "gender=M", "gender", "age"} | {f"age={a}" for a in ages} <= groups
    assert all(re.fullmatch(r"[a-z_]+(@\d+)?", m) for m in res["metric"])
    for m in ("ndcg@5", "ndcg@10", "recall@10", "hit@5", "mrr@10", "coverage@10", "gini@10"):
        assert m in set(res["metric"])
    test_users = pd.read_parquet(out / "split" / "test.parquet")["user_id"].nunique()
    for method, sub in res.groupby("method"):
        v = sub.set_index(["metric", "group"])["value"]
        n = sub.set_index(["metric", "group"])["n"]
        assert n[("ndcg@10", "all")] == test_users
        assert n[("ndcg@10", "gender=F")] + n[("ndcg@10", "gender=M")] == test_users
        gap = abs(v[("ndcg@10", "gender=F")] - v[("ndcg@10", "gender=M")])
        assert v[("gap_ndcg@10", "gender")] == pytest.approx(gap), method
        age_means = [v[("recall@5", f"age={a}")] for a in ages]
        assert v[("gap_recall@5", "age")] == pytest.approx(
            np.nanmax(age_means) - np.nanmin(age_means)
        )
        row = sub[(sub.metric == "ndcg@10") & (sub.group == "all")].iloc[0]
        assert row.ci_low <= row.value <= row.ci_high


def test_run_recs_use_original_ids_and_mask_training_items(run_folder, tiny) -> None:
    _, out, _ = run_folder
    train = pd.read_parquet(out / "split" / "train.parquet")
    valid = pd.read_parquet(out / "split" / "valid.parquet")
    test = pd.read_parquet(out / "split" / "test.parquet")
    seen = set(
        zip(pd.concat([train, valid]).user_id, pd.concat([train, valid]).item_id, strict=True)
    )
    for method in ("pop", "bpr"):
        recs = pd.read_parquet(out / "recs" / f"{method}.parquet")
        # The contract's columns; "seed" tells the lists of several seeds apart.
        assert {"user_id", "item_id", "rank", "score"} <= set(recs.columns)
        assert set(recs.columns) - {"user_id", "item_id", "rank", "score"} <= {"seed"}
        assert set(recs["user_id"]) == set(test["user_id"])
        assert set(recs["user_id"]) <= set(tiny.users_frame["user_id"])  # "u12", not codes
        assert set(recs["item_id"]) <= set(range(100, 140))
        for _, lst in recs.groupby("user_id"):
            assert lst["rank"].tolist() == list(range(1, 11))  # K = max(eval.ks)
            assert np.all(np.diff(lst["score"].to_numpy()) <= 0)
        assert not seen & set(zip(recs.user_id, recs.item_id, strict=True)), method


def test_run_split_files_partition_the_data(run_folder, tiny) -> None:
    _, out, _ = run_folder
    parts = [pd.read_parquet(out / "split" / f"{p}.parquet") for p in ("train", "valid", "test")]
    for part in parts:
        assert {"user_id", "item_id"} <= set(part.columns)
        assert part["user_id"].str.startswith("u").all()
    both = pd.concat(parts, ignore_index=True)
    assert len(both) == len(tiny.frame)
    assert not both.duplicated(["user_id", "item_id"]).any()
    key = lambda f: sorted(zip(f.user_id, f.item_id, strict=True))  # noqa: E731
    assert key(both) == key(tiny.frame)


def test_run_report_names_the_methods(run_folder) -> None:
    _, out, _ = run_folder
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>")
    assert "<td>pop</td>" in html and "<td>bpr</td>" in html
    assert "tiny" in html and "gap_ndcg@10" in html


def test_report_command_rewrites_the_report(run_folder, cli, tmp_path) -> None:
    _, out, _ = run_folder
    page = out / "report.html"
    original = page.read_text()
    page.write_text("stale")
    res = cli("report", out)
    assert res.code == 0, res.err
    assert res.out.strip() == str(page)
    assert page.read_text() == original

    res = cli("report", tmp_path)  # a folder, but not a result folder
    assert res.code == 2
    _one_clear_error(res.err)
    assert "results.parquet" in res.err
    res = cli("report", tmp_path / "missing")
    assert res.code == 2
    _one_clear_error(res.err)


def test_run_with_relative_paths_saves_absolute_ones(tiny, cli, tmp_path, monkeypatch) -> None:
    """The saved config re-runs from any folder: relative input paths are made absolute."""
    monkeypatch.chdir(tiny.folder)
    cfg = tmp_path / "rel.toml"
    cfg.write_text(
        'seeds = [3]\n[data]\nsource = "interactions.csv"\nusers = "users.csv"\n'
        '[eval]\nks = [5]\nn_boot = 0\n[[models]]\nmodel = "pop"\n'
    )
    res = cli("run", cfg, "--out", tmp_path / "out", "--quiet")
    assert res.code == 0, res.err
    assert res.err == ""  # --quiet
    # With ks = [5] the terminal table shows @5 (not empty @10 columns).
    assert re.search(r"^ndcg@5\s+\d", res.out, re.M), res.out
    monkeypatch.chdir(tmp_path)
    saved = load_config(tmp_path / "out" / "config.toml")
    assert saved.data.source == str(tiny.interactions)
    assert saved.data.users == str(tiny.users)
    assert saved.seeds == [3]
    ds, _, _ = prepare_data(saved)  # loads from the new working directory
    assert ds.n_users == 60
    res = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert set(res["seed"]) == {3}
    # CSV user columns are sensitive only when listed (data.sensitive): overall rows only.
    assert set(res["group"]) == {"all", "item_pop=head", "item_pop=mid", "item_pop=tail"}


# ------------------------------------------------------------------------------ bad configs


@pytest.mark.parametrize(
    ("parts", "needles"),
    [
        ({"top": "evall = 3"}, ["evall", "unknown key"]),
        ({"eval_extra": "kss = [5]"}, ["eval.kss", "unknown key"]),
        (
            {"models": '[[models]]\nmodel = "nosuchmodel"\n'},
            ["nosuchmodel", "available", "bpr", "pop"],
        ),
        (
            {"models": '[[models]]\nmodel = "bpr"\nparams = { dimm = 8 }\n'},
            ["params.dimm", "unknown key"],
        ),
        ({"models": '[[models]]\nmodel = "bpr"\nparams = { dim = -1 }\n'}, ["params.dim"]),
        (
            {"models": '[[models]]\nmodel = "bpr"\nparams = { train = { epoch = 1 } }\n'},
            ["params.train.epoch"],
        ),
        ({"models": '[[models]]\nmodel = "pop"\n[[models]]\nmodel = "pop"\n'}, ["unique", "pop"]),
        ({"eval_extra": 'metrics = ["ndgc"]'}, ["ndgc", "available"]),
        ({"top": "recs_k = 50"}, ["recs_k", "max(eval.ks)"]),
    ],
    ids=[
        "top-key",
        "nested-key",
        "model-name",
        "param-name",
        "param-value",
        "trainer-param",
        "duplicate-model",
        "metric-name",
        "recs-k",
    ],
)
def test_run_rejects_bad_config(parts, needles, make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "bad.toml", **parts)
    res = cli("run", cfg, "--out", tmp_path / "out")
    assert res.code == 2, res.err
    _one_clear_error(res.err)
    for needle in needles:
        assert needle in res.err, (needle, res.err)
    assert not (tmp_path / "out").exists()


def test_run_toml_syntax_error(tmp_path, cli) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text('name = "x"\n[eval\nks = [5]\n')
    res = cli("run", cfg, "--out", tmp_path / "out")
    assert res.code == 2
    _one_clear_error(res.err)
    assert "TOML syntax error" in res.err and "line 2" in res.err and str(cfg) in res.err


def test_run_missing_config_file(tmp_path, cli) -> None:
    res = cli("run", tmp_path / "nope.toml", "--out", tmp_path / "out")
    assert res.code == 2
    _one_clear_error(res.err)
    assert "nope.toml" in res.err and "does not exist" in res.err


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        ('sensitive = ["gender", "age"]', 'sensitive = ["gender", "race"]'),
        ("n_boot = 20", 'n_boot = 20\nattrs = ["race"]'),
        ("n_boot = 20", 'n_boot = 20\nintersections = ["gender&race"]'),
    ],
    ids=["data.sensitive", "eval.attrs", "eval.intersections"],
)
def test_run_unknown_sensitive_attribute(find, replace, make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "bad.toml")
    cfg.write_text(cfg.read_text().replace(find, replace))
    res = cli("run", cfg, "--out", tmp_path / "out")
    assert res.code == 2, res.err
    assert "Traceback" not in res.err
    assert "error: unknown sensitive attribute 'race'" in res.err
    listed = res.err.split("'race'", 1)[1]
    assert "gender" in listed and "age" in listed
    assert "seed 0: fit" not in res.err  # caught before any model is trained
    assert not (tmp_path / "out").exists()


def test_run_threads_must_be_positive(make_config, cli, tmp_path) -> None:
    res = cli("run", make_config(tmp_path / "c.toml"), "--out", tmp_path / "o", "--threads", 0)
    assert res.code == 2 and "--threads" in res.err and "Traceback" not in res.err


def test_demo_configs_are_valid() -> None:
    from debiasrec.cli import DEMO_CONFIG, QUICK_CONFIG

    for path in (DEMO_CONFIG, QUICK_CONFIG):
        cfg = load_config(path)
        assert isinstance(cfg, ExperimentConfig) and cfg.data.source == "ml-100k"
        assert len(cfg.models) >= 3


# ------------------------------------------------------------------------------ data


def test_data_describe_tiny_csvs(tiny, cli) -> None:
    res = cli(
        "data",
        "describe",
        "--interactions",
        tiny.interactions,
        "--users",
        tiny.users,
        "--items",
        tiny.items,
        "--sensitive",
        "gender",
    )
    assert res.code == 0, res.err
    assert re.search(r"users\s+60\b", res.out)
    assert re.search(rf"interactions\s+{len(tiny.frame)}\b", res.out)
    sizes = tiny.users_frame["gender"].value_counts()
    assert re.search(rf"^\s+F\s+{sizes['F']}\s", res.out, re.M), res.out
    assert re.search(rf"^\s+M\s+{sizes['M']}\s", res.out, re.M), res.out
    assert "purification" in res.out


def test_data_describe_json(tiny, cli) -> None:
    res = cli("data", "describe", tiny.interactions, "--users", tiny.users, "--json")
    assert res.code == 0, res.err
    d = json.loads(res.out)
    assert d["n_users"] == 60 and d["n_items"] == 40 and d["n_interactions"] == len(tiny.frame)


def test_data_describe_ml100k(cli, tmp_path, monkeypatch) -> None:
    """The one test on real data: ML-100K from the files inside the installed recbole wheel."""
    monkeypatch.setenv("DEBIASREC_DATA", str(tmp_path / "cache"))
    res = cli("data", "describe", "ml-100k")
    assert res.code == 0, res.err
    assert re.search(r"users\s+943\b", res.out)
    assert re.search(r"items\s+1,682\b", res.out)
    assert re.search(r"interactions\s+100,000\b", res.out)


def test_data_import_counts_removed_rows(tiny, cli, tmp_path) -> None:
    dirty = tmp_path / "dirty.csv"
    planted = pd.concat(
        [
            tiny.frame,
            tiny.frame.iloc[[0, 5]],  # two exact duplicate rows
            pd.DataFrame(
                {
                    "user_id": ["nobody"],
                    "item_id": [101],
                    "rating": [3.0],
                    "timestamp": [1_000_000_000],
                }
            ),  # a user not in the users table
        ],
        ignore_index=True,
    )
    planted.to_csv(dirty, index=False)
    out = tmp_path / "imported"
    res = cli(
        "data",
        "import",
        "--interactions",
        dirty,
        "--users",
        tiny.users,
        "--items",
        tiny.items,
        "--out",
        out,
    )
    assert res.code == 0, res.err
    report = json.loads((out / "purification.json").read_text())
    assert report["input_rows"] == len(tiny.frame) + 3
    assert report["output_rows"] == len(tiny.frame)
    assert report["removed"]["duplicate"] == 2
    assert report["removed"]["unknown_user"] == 1
    assert sum(report["removed"].values()) == 3
    inter = pd.read_parquet(out / "interactions.parquet")
    assert len(inter) == len(tiny.frame) and "nobody" not in set(inter["user_id"])
    assert set(inter["user_id"]) <= set(tiny.users_frame["user_id"])
    users = pd.read_parquet(out / "users.parquet")
    assert {"user_id", "gender", "age"} <= set(users.columns) and len(users) == 60
    items = pd.read_parquet(out / "items.parquet")
    assert len(items) == 40 and {"item_id", "title", "genres"} <= set(items.columns)
    # The imported Parquet files load again (genres written as lists).
    res = cli(
        "data",
        "describe",
        out / "interactions.parquet",
        "--users",
        out / "users.parquet",
        "--items",
        out / "items.parquet",
        "--json",
    )
    assert res.code == 0, res.err
    assert json.loads(res.out)["n_interactions"] == len(tiny.frame)


@pytest.mark.parametrize("command", ["describe", "import"])
def test_data_missing_file(command, tiny, cli, tmp_path) -> None:
    args = ["data", command, "--interactions", tmp_path / "nope.csv"]
    if command == "import":
        args += ["--out", tmp_path / "out"]
    res = cli(*args)
    assert res.code == 2
    _one_clear_error(res.err)
    assert "nope.csv" in res.err
    res = cli(
        "data",
        "describe",
        "--interactions",
        tiny.interactions,
        "--users",
        tmp_path / "nope_users.csv",
    )
    assert res.code == 2
    _one_clear_error(res.err)
    assert "nope_users.csv" in res.err


def test_data_malformed_csv(cli, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,rating\n1,2,3\n1,3,4,5,6\n2,2,1\n")
    res = cli("data", "describe", "--interactions", bad)
    assert res.code == 2
    assert "Traceback" not in res.err and res.err.startswith("error: ")
    assert "bad.csv" in res.err and "line 3" in res.err

    nocols = tmp_path / "nocols.csv"
    nocols.write_text("a,b\n1,2\n")
    res = cli("data", "describe", "--interactions", nocols)
    assert res.code == 2
    _one_clear_error(res.err)
    assert "'user_id'" in res.err


def test_data_needs_exactly_one_source(tiny, cli) -> None:
    res = cli("data", "describe")
    assert res.code == 2
    _one_clear_error(res.err)
    res = cli("data", "describe", tiny.interactions, "--interactions", tiny.interactions)
    assert res.code == 2
    _one_clear_error(res.err)
    assert "not both" in res.err


def test_data_unknown_sensitive_attribute(tiny, cli) -> None:
    res = cli("data", "describe", tiny.interactions, "--users", tiny.users, "--sensitive", "race")
    assert res.code == 2
    _one_clear_error(res.err)
    assert "'race'" in res.err and "gender" in res.err
