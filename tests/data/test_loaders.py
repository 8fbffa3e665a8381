"""Loaders (MovieLens, RecBole atomic, CSV/Parquet), the dispatcher, and fetch with checksums."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiasrec.data import fetch as fetch_mod
from debiasrec.data.fetch import ML100K_ATOMIC_SHA256, cache_dir, fetch, recbole_ml100k_dir
from debiasrec.data.loaders import (
    RawData,
    from_pandas,
    load,
    load_atomic,
    load_ml1m,
    load_ml100k,
    load_table,
)
from debiasrec.data.purify import purify
from debiasrec.data.schema import ML1M_AGE_BINS
from debiasrec.errors import DataError

RECBOLE = recbole_ml100k_dir()
needs_recbole = pytest.mark.skipif(
    RECBOLE is None,
    reason="recbole==1.2.1 is not installed (pip install 'debiasrec[data]'); it ships ML-100K",
)


# ---------------------------------------------------------------------------- real ML-100K


@pytest.fixture(scope="module")
def real_ml100k() -> RawData:
    if RECBOLE is None:
        pytest.skip("recbole==1.2.1 is not installed; it ships ML-100K")
    return load_ml100k(RECBOLE)


@needs_recbole
def test_real_ml100k_counts_and_columns(real_ml100k: RawData) -> None:
    raw = real_ml100k
    assert raw.name == "ml-100k"
    assert len(raw.interactions) == 100_000
    assert len(raw.users) == 943
    assert len(raw.items) == 1682
    assert list(raw.interactions.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(raw.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert raw.users["age"].dtype == np.int64
    toy = raw.items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story"
    assert toy["year"] == 1995
    assert toy["genres"] == ("Animation", "Children's", "Comedy")
    assert raw.items.set_index("item_id").loc[267, "genres"] == ("unknown",)
    assert raw.schema.sensitive_names == ["gender", "age", "occupation"]
    assert raw.schema.attr("age").bins == ML1M_AGE_BINS
    assert raw.schema.attr("gender").kind == "binary"
    assert raw.schema.item_categories == ("genres",)
    ds, report = purify(raw)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert report.output_rows == 100_000
    assert sum(report.removed.values()) == 0


@needs_recbole
def test_load_ml100k_default_uses_recbole_then_cache(_isolated_cache: Path) -> None:
    raw = load_ml100k()  # empty cache -> the recbole copy, read in place
    assert raw.source == str(RECBOLE)
    assert len(raw.interactions) == 100_000
    folder = fetch("ml-100k")
    assert folder == _isolated_cache / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ML100K_ATOMIC_SHA256)
    raw2 = load("ml-100k")  # cache present -> the cache
    assert raw2.source == str(folder)
    assert len(raw2.users) == 943


# ---------------------------------------------------------------------------- GroupLens layout


def _check_tiny_grouplens(raw: RawData) -> None:
    assert raw.name == "ml-100k"
    assert raw.interactions["rating"].tolist() == [5, 3, 4, 1]
    assert raw.interactions["timestamp"].tolist() == [881250949, 881250950, 881250951, 881250952]
    u = raw.users.set_index("user_id")
    assert u.loc[3, "zip_code"] == "T8H1N"
    assert u["age"].tolist() == [24, 53, 17]
    assert u["age"].dtype == np.int64
    it = raw.items.set_index("item_id")
    assert it.loc[10, "title"] == "Toy Story"
    assert it.loc[10, "year"] == 1995
    assert it.loc[10, "genres"] == ("Animation", "Comedy")
    assert it.loc[20, "title"] == "Café Society"  # latin-1 decoded
    assert it.loc[30, "title"] == "unknown"
    assert pd.isna(it.loc[30, "year"])
    assert it.loc[30, "genres"] == ("unknown",)


def test_grouplens_folder(grouplens_dir: Path) -> None:
    _check_tiny_grouplens(load_ml100k(grouplens_dir))


def test_grouplens_zip(grouplens_zip: Path) -> None:
    _check_tiny_grouplens(load_ml100k(grouplens_zip))
    _check_tiny_grouplens(load(str(grouplens_zip)))


def test_grouplens_parent_folder_is_accepted(grouplens_dir: Path) -> None:
    _check_tiny_grouplens(load(grouplens_dir.parent))


def test_grouplens_purified_groups(grouplens_dir: Path) -> None:
    ds, _ = purify(load_ml100k(grouplens_dir))
    groups = ds.user_groups("age")
    assert [str(g) for g in groups] == ["18-24", "50-55", "<18"]


def test_zip_without_u_data(tmp_path: Path) -> None:
    zpath = tmp_path / "broken.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n")
    with pytest.raises(DataError, match=r"broken\.zip has no u\.data"):
        load_ml100k(zpath)


def test_grouplens_missing_file(tmp_path: Path, make_grouplens) -> None:
    folder = make_grouplens(tmp_path / "g", **{"u.user": None})
    with pytest.raises(DataError, match=r"not found: .*u\.user"):
        load_ml100k(folder)


def test_grouplens_empty_file(tmp_path: Path, make_grouplens) -> None:
    folder = make_grouplens(tmp_path / "g", **{"u.data": ""})
    with pytest.raises(DataError, match=r"u\.data is empty"):
        load_ml100k(folder)


def test_grouplens_too_many_fields(tmp_path: Path, make_grouplens) -> None:
    bad = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\textra\n"
    folder = make_grouplens(tmp_path / "g", **{"u.data": bad})
    with pytest.raises(DataError, match=r"u\.data, line 3: expected 4 fields, found 5"):
        load_ml100k(folder)


def test_grouplens_too_few_fields(tmp_path: Path, make_grouplens) -> None:
    bad = "1|24|M|technician|85711\n2|53|F|other\n"
    folder = make_grouplens(tmp_path / "g", **{"u.user": bad})
    with pytest.raises(DataError, match=r"u\.user, line 2: expected 5 fields, found 4"):
        load_ml100k(folder)


def test_grouplens_dirty_rating_is_kept_for_purify(tmp_path: Path, make_grouplens) -> None:
    data = "1\t10\t5\t881250949\n1\t20\tfive\t881250950\n2\t10\t4\t881250951\n"
    raw = load_ml100k(make_grouplens(tmp_path / "g", **{"u.data": data}))
    assert raw.interactions["rating"].tolist() == ["5", "five", "4"]
    ds, report = purify(raw)
    assert report.removed["non_numeric_rating"] == 1
    assert ds.n_interactions == 2


def test_grouplens_na_like_text_is_a_value(tmp_path: Path, make_grouplens) -> None:
    users = "1|24|M|none|NA\n2|53|F|other|\n"
    raw = load_ml100k(make_grouplens(tmp_path / "g", **{"u.user": users}))
    assert raw.users["occupation"].tolist() == ["none", "other"]
    assert raw.users["zip_code"].iloc[0] == "NA"
    assert pd.isna(raw.users["zip_code"].iloc[1])  # only an empty field is missing


# ---------------------------------------------------------------------------- ML-1M


def test_ml1m_folder(ml1m_dir: Path) -> None:
    raw = load_ml1m(ml1m_dir)
    assert raw.name == "ml-1m"
    assert len(raw.interactions) == 4
    u = raw.users.set_index("user_id")
    assert u["age"].tolist() == [1, 56, 25]
    assert u["occupation"].tolist() == ["K-12 student", "self-employed", "scientist"]
    it = raw.items.set_index("item_id")
    assert it.loc[10, "genres"] == ("Animation", "Children's", "Comedy")
    assert it.loc[30, "title"] == "Señorita Extraviada"
    assert it.loc[30, "year"] == 2001
    ds, _ = purify(raw)
    assert [str(g) for g in ds.user_groups("age")] == ["<18", "56+", "25-34"]
    assert [str(g) for g in ds.user_groups("gender")] == ["F", "M", "M"]


def test_ml1m_dispatch_and_bad_line(tmp_path: Path, ml1m_dir: Path, make_ml1m) -> None:
    assert load(ml1m_dir).name == "ml-1m"
    folder = make_ml1m(tmp_path / "bad", **{"ratings.dat": "1::10::5::978300760\n1::20::3\n"})
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: expected 4 fields, found 3"):
        load_ml1m(folder)


# ---------------------------------------------------------------------------- RecBole atomic


def test_atomic_folder(atomic_dir: Path) -> None:
    raw = load_atomic(atomic_dir, sensitive=["gender", "age"])
    assert raw.name == "tiny"
    assert raw.interactions["user_id"].tolist() == ["u1", "u1", "u2"]
    assert raw.interactions["item_id"].tolist() == [7, 8, 7]  # integer tokens -> int
    assert raw.interactions["rating"].tolist() == [4, 2, 5]
    it = raw.items.set_index("item_id")
    assert list(raw.items.columns) == ["item_id", "title", "year", "genres", "score"]
    assert it.loc[7, "title"] == "Toy Story"
    assert it.loc[7, "genres"] == ("Animation", "Children's", "Comedy")
    assert it.loc[7, "score"] == (0.5, 1.5)
    assert it.loc[7, "year"] == 1995
    assert pd.isna(it.loc[8, "year"])
    assert raw.schema.attr("gender").kind == "binary"
    assert raw.schema.attr("age").kind == "ordinal"
    assert raw.schema.item_text == ("title",)
    assert load(atomic_dir).name == "tiny"


def test_atomic_bad_header(tmp_path: Path, make_atomic) -> None:
    folder = make_atomic(tmp_path / "t", inter="user_id\titem_id:token\nu1\t7\n")
    with pytest.raises(DataError, match=r"tiny\.inter, line 1: header field 'user_id'"):
        load_atomic(folder)


def test_atomic_bad_field_count(tmp_path: Path, make_atomic) -> None:
    bad = "user_id:token\titem_id:token\nu1\t7\nu2\t8\t9\n"
    folder = make_atomic(tmp_path / "t", inter=bad)
    with pytest.raises(DataError, match=r"tiny\.inter, line 3: expected 2 fields, found 3"):
        load_atomic(folder)


def test_atomic_bad_encoding(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "enc.inter").write_bytes("user_id:token\titem_id:token\nJosé\t7\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"enc\.inter cannot be decoded as utf-8 \(byte \d+\)"):
        load_atomic(folder)


def test_atomic_missing_id_column(tmp_path: Path, make_atomic) -> None:
    folder = make_atomic(tmp_path / "t", inter="uid:token\titem_id:token\nu1\t7\n")
    with pytest.raises(DataError, match=r"no column 'user_id'.*found columns \['uid', 'item_id'\]"):
        load_atomic(folder)


def test_ml100k_from_atomic_needs_users(tmp_path: Path, make_atomic) -> None:
    folder = make_atomic(tmp_path / "ml-100k", name="ml-100k", user=None)
    with pytest.raises(DataError, match=r"has no users file"):
        load_ml100k(folder)


# ---------------------------------------------------------------------------- CSV / Parquet


def _write_semicolon_csvs(tmp_path: Path) -> tuple[Path, Path, Path]:
    inter = tmp_path / "ratings.csv"
    inter.write_text("user_id;item_id;rating;timestamp\na;x;4.5;100\na;y;3;200\nb;x;5;300\n")
    users = tmp_path / "users.csv"
    users.write_text("user_id;gender;age;occupation\na;F;23;doctor\nb;M;40;lawyer\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id;title;genres\nx;Heat;Action|Crime\ny;Up;\n")
    return inter, users, items


def test_csv_semicolon_sniffed(tmp_path: Path) -> None:
    inter, users, items = _write_semicolon_csvs(tmp_path)
    raw = load_table(inter, users, items, sensitive=["gender", "age", "occupation"])
    assert raw.name == "ratings"
    assert raw.interactions["rating"].tolist() == [4.5, 3.0, 5.0]
    assert raw.items.set_index("item_id").loc["x", "genres"] == ("Action", "Crime")
    assert raw.items.set_index("item_id").loc["y", "genres"] == ()
    kinds = {a.name: a.kind for a in raw.schema.sensitive}
    assert kinds == {"gender": "binary", "age": "ordinal", "occupation": "binary"}
    ds, report = purify(raw)
    assert ds.n_interactions == 3
    assert report.removed["duplicate"] == 0


def test_csv_three_valued_attribute_is_categorical(tmp_path: Path) -> None:
    inter = tmp_path / "i.csv"
    inter.write_text("user_id,item_id\n1,1\n2,1\n3,1\n")
    users = tmp_path / "u.csv"
    users.write_text("user_id,occupation,sex\n1,a,F\n2,b,M\n3,c,M\n")
    raw = load_table(inter, users, sensitive=["occupation", "sex"])
    assert [a.kind for a in raw.schema.sensitive] == ["categorical", "binary"]


def test_parquet_and_column_mapping(tmp_path: Path) -> None:
    p = tmp_path / "inter.parquet"
    pd.DataFrame({"uid": [1, 1, 2], "iid": [5, 6, 5], "stars": [1.0, 2.0, 3.0]}).to_parquet(p)
    raw = load_table(p, columns={"uid": "user_id", "iid": "item_id", "stars": "rating"})
    assert list(raw.interactions.columns) == ["user_id", "item_id", "rating"]
    ds, _ = purify(raw)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    assert ds.ratings.tolist() == [1.0, 2.0, 3.0]


def test_movielens_latest_aliases(tmp_path: Path) -> None:
    p = tmp_path / "ratings.csv"
    p.write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    raw = load(str(p))
    assert list(raw.interactions.columns) == ["user_id", "item_id", "rating", "timestamp"]


def test_from_pandas() -> None:
    raw = from_pandas(
        pd.DataFrame({"user_id": [1, 2], "item_id": [3, 3]}),
        pd.DataFrame({"user_id": [1, 2], "gender": ["F", "M"]}),
        sensitive=["gender"],
        name="mem",
    )
    assert raw.name == "mem" and raw.schema.sensitive_names == ["gender"]
    with pytest.raises(DataError, match="must be a pandas DataFrame, got list"):
        from_pandas([1, 2])  # type: ignore[arg-type]


def test_table_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"interactions file not found: .*nope\.csv"):
        load_table(tmp_path / "nope.csv")


def test_table_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(DataError, match=r"interactions file .*empty\.csv is empty"):
        load_table(p)
    p.write_text("user_id,item_id\n")
    with pytest.raises(DataError, match=r"empty\.csv has a header but no rows"):
        load_table(p)


def test_table_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "i.csv"
    p.write_text("user_id,movie,rating\n1,2,3\n")
    with pytest.raises(
        DataError,
        match=r"i\.csv has no column 'item_id'.*found columns \['user_id', 'movie', 'rating'\]",
    ):
        load_table(p)


def test_users_table_missing_column(tmp_path: Path) -> None:
    i = tmp_path / "i.csv"
    i.write_text("user_id,item_id\n1,2\n")
    u = tmp_path / "u.csv"
    u.write_text("id,gender\n1,F\n")
    with pytest.raises(DataError, match=r"users file .*u\.csv has no column 'user_id'"):
        load_table(i, u)


def test_table_bad_field_count(tmp_path: Path) -> None:
    p = tmp_path / "i.csv"
    p.write_text("user_id,item_id,rating\n1,2,3\n1,3,4,9\n")
    with pytest.raises(DataError, match=r"i\.csv: Expected 3 fields in line 3, saw 4"):
        load_table(p)


def test_table_bad_encoding(tmp_path: Path) -> None:
    p = tmp_path / "i.csv"
    p.write_bytes("user_id,item_id,title\n1,2,Café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"i\.csv cannot be decoded as utf-8; pass encoding="):
        load_table(p)
    raw = load_table(p, encoding="latin-1")
    assert raw.interactions["title"].tolist() == ["Café"]


def test_table_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "i.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match=r"cannot tell the format of .*i\.xlsx"):
        load_table(p)


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "i.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"cannot read Parquet file .*i\.parquet"):
        load_table(p)


def test_unknown_sensitive_name_in_loader(tmp_path: Path) -> None:
    inter, users, _ = _write_semicolon_csvs(tmp_path)
    with pytest.raises(
        DataError,
        match=r"unknown sensitive attribute 'sex'; available user columns: "
        r"\['gender', 'age', 'occupation'\]",
    ):
        load_table(inter, users, sensitive=["sex"])
    with pytest.raises(DataError, match=r"need a users table"):
        load_table(inter, sensitive=["gender"])


def test_load_unknown_source() -> None:
    with pytest.raises(DataError, match=r"'ml-5k' is neither .* \(known: 'ml-100k', 'ml-1m'\)"):
        load("ml-5k")


def test_load_folder_without_layout(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"holds no known layout"):
        load(tmp_path)


# ---------------------------------------------------------------------------- fetch


def _grouplens_zip_bytes(make_grouplens, tmp_path: Path) -> bytes:
    src = make_grouplens(tmp_path / "zsrc" / "ml-100k")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"ml-100k/{f.name}")
    return buf.getvalue()


def _serve(monkeypatch: pytest.MonkeyPatch, payload: bytes | Exception) -> list[str]:
    """Replace urlopen: return ``payload`` (or raise it); record requested URLs."""
    urls: list[str] = []

    def fake_urlopen(url: str, timeout: float | None = None):
        urls.append(url)
        if isinstance(payload, Exception):
            raise payload
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return urls


def test_cache_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEBIASREC_DATA", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("DEBIASREC_DATA")
    assert cache_dir() == Path.home() / ".cache" / "debiasrec"


@needs_recbole
def test_fetch_from_recbole_then_cache_checksum(
    monkeypatch: pytest.MonkeyPatch, _isolated_cache: Path
) -> None:
    folder = fetch("ml-100k")
    for fname, digest in ML100K_ATOMIC_SHA256.items():
        assert hashlib.sha256((folder / fname).read_bytes()).hexdigest() == digest
    monkeypatch.setattr(fetch_mod, "recbole_ml100k_dir", lambda verify=False: None)
    _serve(monkeypatch, AssertionError("the cache must be used, not the network"))
    assert fetch("ml-100k") == folder
    with open(folder / "ml-100k.user", "ab") as f:
        f.write(b"999\t1\tM\tother\t00000\n")
    expected = ML100K_ATOMIC_SHA256["ml-100k.user"]
    actual = hashlib.sha256((folder / "ml-100k.user").read_bytes()).hexdigest()
    with pytest.raises(
        DataError,
        match=rf"checksum mismatch for .*ml-100k\.user: expected sha256 {expected}, got {actual}",
    ):
        fetch("ml-100k")


def test_fetch_download_checksum_mismatch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_grouplens, _isolated_cache: Path
) -> None:
    monkeypatch.setattr(fetch_mod, "recbole_ml100k_dir", lambda verify=False: None)
    payload = _grouplens_zip_bytes(make_grouplens, tmp_path)
    urls = _serve(monkeypatch, payload)
    actual = hashlib.md5(payload).hexdigest()
    with pytest.raises(
        DataError,
        match=rf"ml-100k\.zip: expected md5 0e33842e24a9c977be4e0107933c0723, got {actual}",
    ):
        fetch("ml-100k")
    assert urls == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert not (_isolated_cache / "ml-100k").exists()
    assert list(_isolated_cache.iterdir()) == []  # the temporary download is removed


def test_fetch_download_verified_and_manifest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_grouplens, _isolated_cache: Path
) -> None:
    monkeypatch.setattr(fetch_mod, "recbole_ml100k_dir", lambda verify=False: None)
    payload = _grouplens_zip_bytes(make_grouplens, tmp_path)
    monkeypatch.setitem(fetch_mod.DATASETS["ml-100k"], "md5", hashlib.md5(payload).hexdigest())
    _serve(monkeypatch, payload)
    folder = fetch("ml-100k")
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "u.data",
        "u.genre",
        "u.item",
        "u.user",
    ]
    _check_tiny_grouplens(load_ml100k())  # default path: the cache
    _serve(monkeypatch, AssertionError("cached: no network"))
    assert fetch("ml-100k") == folder
    (folder / "u.data").write_text("1\t10\t1\t1\n")
    with pytest.raises(DataError, match=r"checksum mismatch for .*u\.data: expected sha256"):
        fetch("ml-100k")


def test_fetch_download_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod, "recbole_ml100k_dir", lambda verify=False: None)
    _serve(monkeypatch, urllib.error.URLError("no route to host"))
    with pytest.raises(
        DataError,
        match=r"could not download https://files\.grouplens\.org/datasets/movielens/ml-100k\.zip"
        r".*no route to host.*pass the folder",
    ):
        fetch("ml-100k")


def test_fetch_offline_without_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod, "recbole_ml100k_dir", lambda verify=False: None)
    _serve(monkeypatch, AssertionError("allow_download=False must not touch the network"))
    with pytest.raises(DataError, match=r"ml-100k is not in the cache .* downloads are off"):
        fetch("ml-100k", allow_download=False)


def test_fetch_ml1m_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, urllib.error.URLError("offline"))
    with pytest.raises(DataError, match=r"ml-1m\.zip .*load_ml1m\('path/to/ml-1m'\)"):
        fetch("ml-1m")
    with pytest.raises(DataError, match=r"could not download .*ml-1m\.zip"):
        load("ml-1m")
    with pytest.raises(DataError, match=r"ml-1m is not in the cache .* downloads are off"):
        fetch("ml-1m", allow_download=False)


def test_fetch_unknown_name() -> None:
    with pytest.raises(
        DataError, match=r"unknown dataset 'ml-20m'; fetch knows \['ml-100k', 'ml-1m'\]"
    ):
        fetch("ml-20m")
