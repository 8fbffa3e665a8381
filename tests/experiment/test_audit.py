"""``debiasrec audit``: metrics of recommendations made by any system, on hand-built cases.

The case: users a, b (F) and c, d (M), one held-out item each (a-i1, b-i2, c-i3, d-i4); the
catalog is i1..i9. The lists hit for the M users at rank 1 and never for the F users, so at K=5
ndcg/recall/hit/mrr are 1 for gender=M, 0 for gender=F, 0.5 overall and the gap is 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiasrec.config import load_toml
from debiasrec.errors import DataError
from debiasrec.experiment.audit import AuditConfig, recs_to_topk, run_audit
from debiasrec.experiment.evaluate import RESULT_COLUMNS

LISTS = {  # user -> top-5 list, best first
    "a": ["i5", "i6", "i7", "i8", "i3"],  # c's item, not a's
    "b": ["i5", "i6", "i7", "i8", "i9"],  # i9: in the catalog, nobody interacted with it
    "c": ["i3", "i5", "i6", "i7", "i8"],
    "d": ["i4", "i5", "i6", "i7", "i8"],
}


def _ranked(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, i, r) for u, items in lists.items() for r, i in enumerate(items, 1)]
    # Shuffled: the order of the rows must not matter, only rank.
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture
def case(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "users.csv").write_text("user_id,gender\na,F\nb,F\nc,M\nd,M\ne,F\n")
    (tmp_path / "test.csv").write_text("user_id,item_id\na,i1\nb,i2\nc,i3\nd,i4\n")
    titles = "".join(f"i{n},Item {n}\n" for n in range(1, 10))
    (tmp_path / "items.csv").write_text("item_id,title\n" + titles)
    _ranked(LISTS).to_csv(tmp_path / "recs.csv", index=False)
    return {
        "users": tmp_path / "users.csv",
        "test": tmp_path / "test.csv",
        "items": tmp_path / "items.csv",
        "recs": tmp_path / "recs.csv",
        "out": tmp_path / "out",
    }


def _audit(cli, case, *extra: object, recs: Path | None = None):
    return cli(
        "audit",
        "--recs",
        recs or case["recs"],
        "--test",
        case["test"],
        "--users",
        case["users"],
        "--attr",
        "gender",
        "--k",
        5,
        "--n-boot",
        50,
        "--out",
        case["out"],
        *extra,
    )


def _values(out: Path) -> pd.Series:
    res = pd.read_parquet(out / "results.parquet")
    return res.set_index(["metric", "group"])["value"]


def test_audit_known_answer(cli, case) -> None:
    res = _audit(cli, case)
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    v = _values(case["out"])
    for m in ("ndcg@5", "recall@5", "hit@5", "mrr@5"):
        assert v[(m, "gender=M")] == pytest.approx(1.0), m
        assert v[(m, "gender=F")] == pytest.approx(0.0), m
        assert v[(m, "all")] == pytest.approx(0.5), m
        assert v[(f"gap_{m}", "gender")] == pytest.approx(1.0), m
    assert v[("precision@5", "gender=M")] == pytest.approx(0.2)
    # Without --items the catalog is every item in the inputs: i1..i9 here.
    assert v[("coverage@5", "all")] == pytest.approx(7 / 9)
    # The terminal table shows @K, not @10.
    assert "ndcg@5 gender=F" in res.out and "gap ndcg@5 gender" in res.out


def test_audit_writes_the_result_folder(cli, case) -> None:
    assert _audit(cli, case).code == 0
    out = case["out"]
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert names == {
        "config.toml",
        "summary.json",
        "results.parquet",
        "report.html",
        "report.md",
        "recs/imported.parquet",
        "split/train.parquet",
        "split/valid.parquet",
        "split/test.parquet",
        "split/users.parquet",
        "split/items.parquet",
        "split/dataset.json",
    }
    res = pd.read_parquet(out / "results.parquet")
    assert list(res.columns) == RESULT_COLUMNS
    assert set(res["method"]) == {"imported"} and set(res["seed"]) == {0}
    assert {"all", "gender=F", "gender=M", "gender"} <= set(res["group"])

    recs = pd.read_parquet(out / "recs" / "imported.parquet")
    got = {u: g.sort_values("rank")["item_id"].tolist() for u, g in recs.groupby("user_id")}
    assert got == LISTS  # original ids, in rank order
    assert recs.groupby("user_id")["rank"].agg(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()

    cfg = load_toml(out / "config.toml", AuditConfig)
    assert cfg.attrs == ["gender"] and cfg.k == 5 and cfg.n_boot == 50
    assert Path(cfg.recs) == case["recs"]  # absolute: re-runnable from anywhere

    summary = json.loads((out / "summary.json").read_text())
    assert summary["name"] == "audit" and summary["seeds"] == [0]
    assert "git_commit" in summary and "fingerprint" in summary["dataset"]
    assert summary["audit"] == {
        "test_users": 4,
        "users_without_recs": 0,
        "recs_users_not_evaluated": 0,
        "popularity_from": "test (no --train given)",
    }
    test = pd.read_parquet(out / "split" / "test.parquet")
    assert sorted(zip(test.user_id, test.item_id, strict=True)) == [
        ("a", "i1"),
        ("b", "i2"),
        ("c", "i3"),
        ("d", "i4"),
    ]
    assert len(pd.read_parquet(out / "split" / "train.parquet")) == 0  # no --train
    assert "imported" in (out / "report.html").read_text()


def test_audit_by_score(cli, case, tmp_path) -> None:
    """Lists by score (higher = better): a's held-out item is 2nd -> ndcg = 1/log2(3)."""
    scores = {
        "a": {"i5": 0.9, "i1": 0.8, "i6": 0.5, "i7": 0.4, "i8": 0.3, "i9": 0.1},
        "b": {"i5": 3.0, "i6": 2.0, "i7": 1.0, "i8": 0.0, "i9": -1.0, "i2": -2.0},  # 6th: a miss
        "c": {"i3": 1.0, "i5": 0.5},
        "d": {"i4": 7.0, "i5": 6.0, "i6": 5.0},
    }
    rows = [(u, i, s) for u, d in scores.items() for i, s in d.items()]
    path = tmp_path / "scored.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "score"]).iloc[::-1].to_csv(path, index=False)
    res = _audit(cli, case, recs=path)
    assert res.code == 0, res.err
    v = _values(case["out"])
    assert v[("ndcg@5", "gender=F")] == pytest.approx((1 / math.log2(3)) / 2)
    assert v[("ndcg@5", "gender=M")] == pytest.approx(1.0)
    assert v[("gap_ndcg@5", "gender")] == pytest.approx(1 - (1 / math.log2(3)) / 2)
    assert v[("mrr@5", "gender=F")] == pytest.approx(0.25)
    assert v[("recall@5", "gender=F")] == pytest.approx(0.5)
    recs = pd.read_parquet(case["out"] / "recs" / "imported.parquet")
    assert recs.groupby("user_id").size().to_dict() == {"a": 5, "b": 5, "c": 2, "d": 3}


@pytest.mark.filterwarnings("ignore:item group.*have no training interactions")
def test_audit_parquet_recs_items_table_and_train(cli, case, tmp_path) -> None:
    """--items fixes the catalog; --train gives popularity; Parquet recs are read too."""
    recs = tmp_path / "recs.parquet"
    _ranked(LISTS).to_parquet(recs, index=False)
    train = tmp_path / "train.csv"
    train.write_text("user_id,item_id\na,i5\nb,i5\nc,i5\nd,i6\n")
    res = _audit(cli, case, "--items", case["items"], "--train", train, recs=recs)
    assert res.code == 0, res.err
    v = _values(case["out"])
    assert v[("ndcg@5", "gender=M")] == pytest.approx(1.0)
    assert v[("coverage@5", "all")] == pytest.approx(7 / 9)  # the items table lists i1..i9
    # ARP from training counts (i5: 3, i6: 1): c [i3 i5 i6 i7 i8] -> 0.8, d -> 0.8, a/b -> 0.8
    assert v[("arp@5", "all")] == pytest.approx(0.8)
    summary = json.loads((case["out"] / "summary.json").read_text())
    assert summary["audit"]["popularity_from"] == "train"
    train_saved = pd.read_parquet(case["out"] / "split" / "train.parquet")
    assert len(train_saved) == 4


@pytest.mark.filterwarnings("ignore:1 of 4 users have an empty top-k list")
def test_audit_users_without_recs_count_as_misses(cli, case, tmp_path) -> None:
    path = tmp_path / "partial.csv"
    _ranked({u: items for u, items in LISTS.items() if u != "d"}).to_csv(path, index=False)
    with pytest.warns(UserWarning, match="1 test users have no recommendations"):
        res = _audit(cli, case, recs=path)
    assert res.code == 0, res.err
    v = _values(case["out"])
    assert v[("ndcg@5", "gender=M")] == pytest.approx(0.5)
    summary = json.loads((case["out"] / "summary.json").read_text())
    assert summary["audit"]["users_without_recs"] == 1


def test_audit_ignores_known_users_without_test_items(cli, case, tmp_path) -> None:
    """Lists for every user of the users table are normal; e has nothing held out."""
    path = tmp_path / "all_users.csv"
    _ranked({**LISTS, "e": ["i1", "i2", "i3"]}).to_csv(path, index=False)
    with pytest.warns(UserWarning, match="not evaluated"):
        res = _audit(cli, case, recs=path)
    assert res.code == 0, res.err
    assert _values(case["out"])[("ndcg@5", "gender=F")] == pytest.approx(0.0)
    summary = json.loads((case["out"] / "summary.json").read_text())
    assert summary["audit"]["recs_users_not_evaluated"] == 1


@pytest.mark.filterwarnings("ignore:item group.*have no training interactions")
def test_audit_integer_ids(cli, tmp_path) -> None:
    (tmp_path / "users.csv").write_text("user_id,gender\n1,F\n2,M\n")
    (tmp_path / "test.csv").write_text("user_id,item_id\n1,10\n2,20\n")
    (tmp_path / "recs.csv").write_text("user_id,item_id,rank\n1,30,1\n1,10,2\n2,20,1\n2,40,2\n")
    res = cli(
        "audit",
        "--recs",
        tmp_path / "recs.csv",
        "--test",
        tmp_path / "test.csv",
        "--users",
        tmp_path / "users.csv",
        "--attr",
        "gender",
        "--k",
        2,
        "--n-boot",
        0,
        "--out",
        tmp_path / "out",
    )
    assert res.code == 0, res.err
    v = _values(tmp_path / "out")
    assert v[("ndcg@2", "gender=F")] == pytest.approx(1 / math.log2(3))
    assert v[("ndcg@2", "gender=M")] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("lines", "needles"),
    [
        ("user_id,item_id,rank\na,i1,1\nzz,i1,1\n", ["'zz'", "users table"]),
        ("user_id,item_id,rank\na,i1,1\nb,i99,1\n", ["'i99'", "items table"]),
        ("user_id,item_id\na,i1\n", ["rank or score"]),
        ("user,item,rank\na,i1,1\n", ["user_id", "item_id"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,2\nb,i2,first\n", ["line 4", "rank", "'first'"]),
        ("user_id,item_id,score\na,i1,0.5\na,i5,\n", ["line 3", "score"]),
        ("user_id,item_id,rank\na,i1,1\na,i1,2\n", ["line 3", "repeats"]),
        ("", ["empty"]),
    ],
    ids=[
        "unknown-user",
        "unknown-item",
        "no-rank-or-score",
        "no-id-columns",
        "text-rank",
        "missing-score",
        "repeated-item",
        "empty-file",
    ],
)
def test_audit_rejects_bad_recs(lines, needles, cli, case, tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(lines)
    res = _audit(cli, case, "--items", case["items"], recs=path)
    assert res.code == 2, res.err
    assert "Traceback" not in res.err and res.err.startswith("error: ")
    assert "bad.csv" in res.err
    for needle in needles:
        assert needle in res.err, (needle, res.err)
    assert not case["out"].exists()


def test_audit_rejects_bad_options(cli, case) -> None:
    res = _audit(cli, case, "--attr", "race")  # the last --attr wins
    assert res.code == 2
    assert "Traceback" not in res.err and "'race'" in res.err and "gender" in res.err
    res = cli(
        "audit",
        "--recs",
        case["recs"],
        "--test",
        case["test"],
        "--users",
        case["users"],
        "--attr",
        "gender",
        "--k",
        0,
        "--out",
        case["out"],
    )
    assert res.code == 2 and "--k" in res.err and "Traceback" not in res.err
    res = cli(
        "audit",
        "--recs",
        case["recs"],
        "--test",
        case["test"],
        "--users",
        case["users"],
        "--attr",
        ",",
        "--out",
        case["out"],
    )
    assert res.code == 2 and "--attr" in res.err and "Traceback" not in res.err
    res = _audit(cli, case, recs=case["recs"].with_name("nope.csv"))
    assert res.code == 2 and "nope.csv" in res.err and "Traceback" not in res.err
    res = cli(
        "audit",
        "--recs",
        case["recs"],
        "--test",
        case["test"].with_name("none.csv"),
        "--users",
        case["users"],
        "--attr",
        "gender",
        "--out",
        case["out"],
    )
    assert res.code == 2 and "none.csv" in res.err and "Traceback" not in res.err
    assert not case["out"].exists()


# ------------------------------------------------------------------------------ Python API


def test_run_audit_in_memory(case) -> None:
    cfg = AuditConfig(
        recs=str(case["recs"]),
        test=str(case["test"]),
        users=str(case["users"]),
        attrs=["gender"],
        k=5,
        n_boot=0,
    )
    result = run_audit(cfg)
    assert not case["out"].exists()
    v = result.results.set_index(["metric", "group"])["value"]
    assert v[("gap_ndcg@5", "gender")] == pytest.approx(1.0)
    assert result.results["ci_low"].isna().all()  # n_boot = 0


def test_recs_to_topk_orders_and_pads(case) -> None:
    from debiasrec.data.dataset import Dataset

    ds = Dataset.from_frames(
        pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}),
        items=pd.DataFrame({"item_id": ["x", "y", "z"]}),
    )
    recs = pd.DataFrame(
        {"user_id": ["a", "a", "a", "b"], "item_id": ["z", "x", "y", "y"], "rank": [3, 1, 2, 1]}
    )
    top = recs_to_topk(recs, ds, np.array([0, 1]), 2)
    assert top.tolist() == [[0, 1], [1, -1]]
    with pytest.raises(DataError, match="rank"):
        recs_to_topk(recs.assign(rank=["1", "x", "2", "1"]), ds, np.array([0]), 2)
