"""``debiasrec run`` with debiasing methods and a shared ``--cache`` folder."""

from __future__ import annotations

import json

METHODS = (
    '[[models]]\nmodel = "pop"\n\n'
    '[[models]]\nmodel = "bpr"\nparams = { dim = 8, train = { epochs = 2 } }\n\n'
    '[[methods]]\nname = "bpr-cal"\nmodel = "bpr"\n'
    'post = [{ method = "calibrated", strength = 0.5 }]\n'
)


def test_run_with_methods_reuses_a_shared_cache(make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "m.toml", models=METHODS)
    cache = tmp_path / "cache"
    res = cli("run", cfg, "--out", tmp_path / "a", "--cache", cache)
    assert res.code == 0, res.err
    assert "bpr-cal" in res.out and "report:  " in res.out
    assert "fit 2 computed / 0 cached" in res.err and "post 1 computed / 0 cached" in res.err
    res = cli("run", cfg, "--out", tmp_path / "b", "--cache", cache)
    assert res.code == 0, res.err
    assert "fit 0 computed / 2 cached" in res.err and "post 0 computed / 1 cached" in res.err
    assert not (tmp_path / "b" / "cache").exists()
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["cache"] == str(cache.resolve())
    assert (tmp_path / "b" / "report.md").is_file()
    a = (tmp_path / "a" / "results.parquet").read_bytes()
    b = (tmp_path / "b" / "results.parquet").read_bytes()
    assert a == b
