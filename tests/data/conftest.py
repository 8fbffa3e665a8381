"""Tiny MovieLens/RecBole fixtures written into tmp_path (the real files are never copied)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from debiasrec.data.loaders import ML100K_GENRES


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every data test gets its own empty fetch cache (never the user's ~/.cache)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DEBIASREC_DATA", str(cache))
    return cache


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in ML100K_GENRES)


U_DATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n3\t30\t1\t881250952\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|writer|T8H1N\n"
U_ITEM = (
    f"10|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/x|{_flags('Animation', 'Comedy')}\n"
    f"20|Café Society (1996)|01-Jan-1996||http://us.imdb.com/y|{_flags('Drama')}\n"
    f"30|unknown||||{_flags('unknown')}\n"
)
U_GENRE = "".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n"


def write_grouplens(folder: Path, **override: str | bytes | None) -> Path:
    """Write u.data/u.user/u.item/u.genre (latin-1); override a file's text, or None to omit it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"u.data": U_DATA, "u.user": U_USER, "u.item": U_ITEM, "u.genre": U_GENRE}
    files.update(override)
    for name, text in files.items():
        if text is None:
            continue
        data = text if isinstance(text, bytes) else text.encode("latin-1")
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def grouplens_dir(tmp_path: Path) -> Path:
    return write_grouplens(tmp_path / "ml-100k")


@pytest.fixture
def grouplens_zip(tmp_path: Path) -> Path:
    src = write_grouplens(tmp_path / "src" / "ml-100k")
    zpath = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ml-100k/", "")
        for f in sorted(src.iterdir()):
            zf.write(f, f"ml-100k/{f.name}")
    return zpath


ML1M_RATINGS = (
    "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n3::30::2::978300275\n"
)
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
ML1M_MOVIES = (
    "10::Toy Story (1995)::Animation|Children's|Comedy\n"
    "20::Jumanji (1995)::Adventure|Children's|Fantasy\n"
    "30::Señorita Extraviada (2001)::Documentary\n"
)


def write_ml1m(folder: Path, **override: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ratings.dat": ML1M_RATINGS, "users.dat": ML1M_USERS, "movies.dat": ML1M_MOVIES}
    files.update(override)
    for name, text in files.items():
        if text is not None:
            (folder / name).write_bytes(text.encode("latin-1"))
    return folder


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    return write_ml1m(tmp_path / "ml-1m")


ATOMIC_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\t7\t4\t881250949\nu1\t8\t2\t881250950\nu2\t7\t5\t881250951\n"
)
ATOMIC_USER = "user_id:token\tage:token\tgender:token\nu1\t30\tF\nu2\t41\tM\n"
ATOMIC_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tscore:float_seq\n"
    "7\tToy Story\t1995\tAnimation Children's Comedy\t0.5 1.5\n"
    "8\tunkonwn\tunkonwn\tunknown\t2\n"
)


def write_atomic(folder: Path, name: str = "tiny", **override: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {".inter": ATOMIC_INTER, ".user": ATOMIC_USER, ".item": ATOMIC_ITEM}
    files.update({k if k.startswith(".") else f".{k}": v for k, v in override.items()})
    for ext, text in files.items():
        if text is not None:
            (folder / f"{name}{ext}").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def atomic_dir(tmp_path: Path) -> Path:
    return write_atomic(tmp_path / "tiny")


@pytest.fixture
def make_grouplens():
    """``make_grouplens(folder, **{"u.data": text_or_None})`` writes a (possibly broken) copy."""
    return write_grouplens


@pytest.fixture
def make_ml1m():
    return write_ml1m


@pytest.fixture
def make_atomic():
    return write_atomic
