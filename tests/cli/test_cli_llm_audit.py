"""`debiasrec llm-audit`: a real (small) run on ML-100K and its bad-input errors."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("transformers")


def test_llm_audit_writes_a_result_folder(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEBIASREC_CACHE", str(tmp_path / "cache"))
    params = '{"dim": 16, "hidden": 32, "train": {"epochs": 2, "eval_every": 1}}'
    r = cli("llm-audit", "--params", params, "--users", "12", "--attrs", "gender",
            "--n-perm", "50", "--threads", "1", "--out", tmp_path / "a")  # fmt: skip
    assert r.code == 0, r.err
    res = pd.read_parquet(tmp_path / "a" / "results.parquet")
    assert {"jaccard@10", "snsr_jaccard@10", "excess_snsr_jaccard@10", "p_snsr_jaccard@10",
            "cf_ndcg@10", "prag@10", "serp@10"} <= set(res.metric)  # fmt: skip
    assert {"gender=M", "gender=F", "colour=blue", "typo=0", "history=other"} <= set(res.group)
    assert (tmp_path / "a" / "config.toml").is_file()
    assert "gender" in r.out and "placebo:colour" in r.out
    lists = pd.read_parquet(tmp_path / "a" / "audit_lists.parquet")
    assert lists.user.nunique() == 12
    # The written config re-runs as is.
    r2 = cli("llm-audit", "--config", tmp_path / "a" / "config.toml", "--out", tmp_path / "b")
    assert r2.code == 0, r2.err
    pd.testing.assert_frame_equal(res, pd.read_parquet(tmp_path / "b" / "results.parquet"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "bpr"], "does not read user text"),
        (["--params", "{nope"], "--params is not valid JSON"),
        (["--params", '{"dimm": 3}'], "dimm"),
        (["--model", "nosuch"], "unknown model"),
    ],
)
def test_llm_audit_bad_input_exits_2(cli, tmp_path, args, message) -> None:
    r = cli("llm-audit", *args, "--users", "5", "--out", tmp_path / "x")
    assert r.code == 2, (r.code, r.err)
    assert message in r.err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llm_audit_endpoint_down_is_one_line_not_a_traceback(cli, tmp_path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    r = cli("llm-audit", "--endpoint", url, "--model", "m", "--max-retries", "1",
            "--api-cache", tmp_path / "api", "--users", "5", "--out", tmp_path / "x")  # fmt: skip
    assert r.code == 1, (r.code, r.err)
    assert "cannot connect" in r.err and url in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--endpoint needs --model NAME"),
        (["--model", "m", "--params", '{"finetune_users": 4}'], "cannot be done through an"),
        (["--model", "m", "--timeout", "0"], "--timeout"),
    ],
)
def test_llm_audit_endpoint_bad_options_exit_2(cli, tmp_path, args, message) -> None:
    r = cli("llm-audit", "--endpoint", "http://127.0.0.1:9/v1", *args, "--out", tmp_path / "x")
    assert r.code == 2, (r.code, r.err)
    assert message in r.err and "Traceback" not in r.err
