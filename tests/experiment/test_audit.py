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
from debiasrec.experiment.audit import AuditConfig, check_recs, recs_to_topk, run_audit
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
        # ranks: whole numbers from 1, once per user (negative/fractional ones reversed lists)
        ("user_id,item_id,rank\na,i1,-1\na,i5,-2\n", ["line 2", "rank -1", "whole numbers"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,0\n", ["line 3", "rank 0", "from 1"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,1.5\n", ["line 3", "rank 1.5", "'score'"]),
        ("user_id,item_id,rank\na,i1,0.25\na,i5,0.5\n", ["line 2", "rank 0.25"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,1\n", ["line 3", "user 'a' rank 1 a second"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,\n", ["line 3", "missing rank"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,nan\n", ["line 3", "rank"]),
        ("user_id,item_id,rank\na,i1,1\na,i5,inf\n", ["line 3", "rank inf"]),
        ("user_id,item_id,score\na,i1,0.5\na,i5,abc\n", ["line 3", "non-numeric score"]),
        # header only, and rows that can never be matched
        ("user_id,item_id,rank\n", ["header but no rows"]),
        ("user_id,item_id,score\n", ["header but no rows"]),
        ("user_id,item_id,rank\n,i1,1\n", ["line 2", "no user_id"]),
        ("user_id,item_id,rank\na,,1\n", ["line 2", "no item_id"]),
        ("user_id,item_id,rank\ne,i1,1\ne,i2,2\n", ["none of the 4 users", "same user ids"]),
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
        "negative-rank",
        "zero-rank",
        "fractional-rank",
        "fractional-ranks-below-1",
        "duplicate-rank",
        "blank-rank",
        "nan-rank",
        "inf-rank",
        "text-score",
        "header-only-rank",
        "header-only-score",
        "blank-user",
        "blank-item",
        "no-test-user",
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


def test_audit_rejects_header_only_parquet_recs(cli, case, tmp_path) -> None:
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"user_id": pd.Series([], dtype=str), "item_id": pd.Series([], dtype=str),
                  "rank": pd.Series([], dtype="int64")}).to_parquet(path)  # fmt: skip
    res = _audit(cli, case, recs=path)
    assert res.code == 2 and "header but no rows" in res.err and "Traceback" not in res.err


def test_rank_gaps_are_kept_in_order_with_a_warning(case) -> None:
    recs = pd.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["i5", "i1", "i6"],
                         "rank": [1, 5, 2]})  # fmt: skip
    with pytest.warns(UserWarning, match="1 users have ranks with gaps"):
        checked = check_recs(recs, "recs")
    from debiasrec.data.dataset import Dataset

    ds = Dataset.from_frames(pd.DataFrame({"user_id": ["a"], "item_id": ["i1"]}),
                             items=pd.DataFrame({"item_id": ["i1", "i5", "i6"]}))  # fmt: skip
    top = recs_to_topk(checked, ds, np.array([0]), 3, checked=True)
    assert ds.item_vocab[top[0]].tolist() == ["i5", "i6", "i1"]


def test_negative_ranks_never_reverse_a_list(case) -> None:
    """The reported bug: ranks -1..-5 ordered ascending put the last item first."""
    recs = _ranked(LISTS)
    with pytest.raises(DataError, match="whole numbers from 1"):
        check_recs(recs.assign(rank=-recs["rank"]))
    with pytest.raises(DataError, match="whole numbers from 1"):
        check_recs(recs.assign(rank=recs["rank"] / 10))


# ------------------------------------------------------------------------------ leakage


def _planted(tmp_path: Path, n_users: int = 600, seed: int = 0) -> dict[str, Path]:
    """Held-out planted data: train/test split of the synthetic generator (gender-specific
    genre preferences); returns the file paths and the frames."""
    from debiasrec.data.synthetic import SyntheticConfig, generate

    ds, _ = generate(SyntheticConfig(n_users=n_users, n_items=200, mean_interactions=20),
                     rng=seed)  # fmt: skip
    inter = ds.interactions_frame()
    users = ds.users_frame()
    held = inter.groupby("user_id").sample(frac=0.2, random_state=seed)
    train = inter.drop(held.index)
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "test", "users")}
    train.to_csv(paths["train"], index=False)
    held.to_csv(paths["test"], index=False)
    users.to_csv(paths["users"], index=False)
    return {**paths, "train_frame": train, "users_frame": users, "n_items": 200}


def _leak(cli, data, recs: pd.DataFrame, tmp_path: Path, name: str) -> pd.Series:
    path = tmp_path / f"{name}.csv"
    recs.to_csv(path, index=False)
    out = tmp_path / f"out_{name}"
    res = cli("audit", "--recs", path, "--test", data["test"], "--users", data["users"],
              "--train", data["train"], "--attr", "gender", "--k", 10, "--n-boot", 50,
              "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    assert "leakage: AUC" in res.out
    res_frame = pd.read_parquet(out / "results.parquet")
    return (
        res_frame.set_index(["metric", "group"])
        .loc[[("leakage_auc@10", "gender"), ("leakage_bacc@10", "gender")]]
        .reset_index()
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("pool", [10, 30], ids=["top10", "10-of-top30"])
def test_audit_leakage_of_gender_specific_popularity_lists(pool, cli, tmp_path) -> None:
    """Each gender gets its own popularity list (its 10 most popular training items, or 10
    drawn per user from its 30 most popular, which overlap across genders): the lists reveal
    gender (AUC near 1)."""
    data = _planted(tmp_path)
    train, users = data["train_frame"], data["users_frame"]
    gender = users.set_index("user_id")["gender"]
    train = train.assign(gender=train["user_id"].map(gender))
    top = {
        g: sub["item_id"].value_counts().index[:pool].tolist() for g, sub in train.groupby("gender")
    }
    assert top["F"] != top["M"]  # planted: the groups prefer different genres
    rng = np.random.default_rng(0)
    rows = [
        (u, i, r)
        for u, g in gender.items()
        for r, i in enumerate(rng.choice(top[g], 10, replace=False), 1)
    ]
    leak = _leak(cli, data, pd.DataFrame(rows, columns=["user_id", "item_id", "rank"]), tmp_path,
                 "by_gender")  # fmt: skip
    auc = leak.set_index("metric").loc["leakage_auc@10"]
    assert auc["value"] > 0.95 and auc["n"] == len(users)
    assert leak.set_index("metric").loc["leakage_bacc@10", "value"] > 0.9


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_audit_leakage_of_random_lists_is_chance(cli, tmp_path) -> None:
    """Lists drawn at random, independent of gender: AUC within chance of 0.5.

    Under the null the AUC of n_F x n_M scored users has sd sqrt((n_F + n_M + 1) / (12 n_F n_M))
    (Hanley & McNeil 1982); the probe's out-of-fold AUC is allowed 4 sd.
    """
    data = _planted(tmp_path)
    users = data["users_frame"]
    rng = np.random.default_rng(1)
    rows = [(u, i, r) for u in users["user_id"]
            for r, i in enumerate(rng.choice(data["n_items"], 10, replace=False), 1)]  # fmt: skip
    leak = _leak(cli, data, pd.DataFrame(rows, columns=["user_id", "item_id", "rank"]), tmp_path,
                 "random")  # fmt: skip
    n_f = int((users["gender"] == "F").sum())
    n_m = len(users) - n_f
    sd = math.sqrt((n_f + n_m + 1) / (12 * n_f * n_m))
    auc = leak.set_index("metric").loc["leakage_auc@10", "value"]
    assert abs(auc - 0.5) < 4 * sd, (auc, sd)


def test_audit_leakage_rows_in_the_result_folder(cli, case, tmp_path) -> None:
    """Too few users per group for the 3-fold probe: no leakage rows, and a warning says why."""
    with pytest.warns(UserWarning, match="leakage of 'gender' is not measured"):
        res = _audit(cli, case)
    assert res.code == 0
    assert not _values(case["out"]).index.get_level_values(0).str.startswith("leakage").any()


def test_audit_config_checks_attrs_and_seed(case) -> None:
    from debiasrec.config import validate
    from debiasrec.errors import ConfigError

    base = {"recs": "r", "test": "t", "users": "u"}
    with pytest.raises(ConfigError, match="attrs.*'gender' is given more than once"):
        validate(AuditConfig, {**base, "attrs": ["gender", "gender"]})
    with pytest.raises(ConfigError, match="at least one sensitive attribute"):
        validate(AuditConfig, {**base, "attrs": []})
    for seed in (-1, 2**63):
        with pytest.raises(ConfigError, match="seed"):
            validate(AuditConfig, {**base, "attrs": ["gender"], "seed": seed})
    assert validate(AuditConfig, {**base, "attrs": ["gender"], "seed": 2**63 - 1}).seed == 2**63 - 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_audit_train_file_with_ratings_and_timestamps(cli, case, tmp_path) -> None:
    """Columns the test file lacks (rating, timestamp) must not drop the test rows, and a pair
    in both files stays held out even when its training copy is older."""
    train = tmp_path / "train.csv"
    train.write_text(
        "user_id,item_id,rating,timestamp\na,i5,4,100\nb,i5,5,200\nc,i5,3,300\nd,i6,2,400\n"
        "a,i1,5,1\n"  # a's held-out item, also in train (earlier)
    )
    res = _audit(cli, case, "--train", train)
    assert res.code == 0, res.err
    v = _values(case["out"])
    assert v[("ndcg@5", "gender=M")] == pytest.approx(1.0)  # as without --train
    summary = json.loads((case["out"] / "summary.json").read_text())
    assert summary["audit"]["test_users"] == 4
    assert summary["purification"]["removed"]["duplicate"] == 1  # a-i1 counted once, as test
    test = pd.read_parquet(case["out"] / "split" / "test.parquet")
    assert ("a", "i1") in set(zip(test.user_id, test.item_id, strict=True))
