"""Read interaction data into :class:`RawData`: MovieLens layouts, RecBole atomic files, CSV/Parquet.

Loaders only *read*: the frames they return may be dirty (missing ids, text in the rating column,
duplicate rows). :func:`debiasrec.data.purify.purify` cleans them, counts every removed row by
reason and builds the :class:`~debiasrec.data.dataset.Dataset`.

Standard column names:

* interactions: ``user_id``, ``item_id`` and optionally ``rating``, ``timestamp``;
* users: ``user_id`` plus attribute columns (e.g. ``gender``, ``age``, ``occupation``);
* items: ``item_id``, ``title``, ``year``, ``genres`` (a tuple of strings) and other columns.

Every unreadable or malformed file raises :class:`~debiasrec.errors.DataError` naming the file,
the line where applicable, and what to do.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import signal
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from debiasrec.data.schema import ML1M_AGE_BINS, Schema, SensitiveAttr
from debiasrec.errors import ConfigError, DataError

__all__ = [
    "ML100K_GENRES",
    "ML1M_OCCUPATIONS",
    "RawData",
    "attribute_names",
    "check_delimiter",
    "from_pandas",
    "infer_sensitive",
    "load",
    "load_atomic",
    "load_ml100k",
    "load_ml1m",
    "load_table",
    "ml100k_schema",
]

#: Genre flag columns of GroupLens ``u.item`` (order of ``u.genre``).
ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

#: ML-1M ``users.dat`` occupation codes (from the ML-1M README).
ML1M_OCCUPATIONS: dict[int, str] = {
    0: "other",
    1: "academic/educator",
    2: "artist",
    3: "clerical/admin",
    4: "college/grad student",
    5: "customer service",
    6: "doctor/health care",
    7: "executive/managerial",
    8: "farmer",
    9: "homemaker",
    10: "K-12 student",
    11: "lawyer",
    12: "programmer",
    13: "retired",
    14: "sales/marketing",
    15: "scientist",
    16: "self-employed",
    17: "technician/engineer",
    18: "tradesman/craftsman",
    19: "unemployed",
    20: "writer",
}

#: RecBole atomic field names mapped to our standard names.
_ATOMIC_RENAMES: dict[str, str] = {
    "movie_title": "title",
    "release_year": "year",
    "class": "genres",
    "genre": "genres",
}

#: Obvious aliases used by tables when the standard name is absent (e.g. MovieLens-latest CSVs).
_TABLE_ALIASES: dict[str, str] = {
    "userId": "user_id",
    "userid": "user_id",
    "user": "user_id",
    "movieId": "item_id",
    "movieid": "item_id",
    "itemId": "item_id",
    "itemid": "item_id",
    "item": "item_id",
}

_TITLE_YEAR = r"^(.*?)\s*\((\d{4})(?:/[IVX]+)?\)\s*$"


@dataclass(repr=False)
class RawData:
    """Frames as read from disk (possibly dirty), with standard column names and a schema.

    Attributes:
        interactions: ``user_id``, ``item_id`` and optionally ``rating``, ``timestamp``.
        users: ``user_id`` plus attribute columns, or ``None``.
        items: ``item_id`` plus ``title``, ``year``, ``genres`` (tuples) and others, or ``None``.
        schema: declares the sensitive user attributes and the item text/category columns.
        name: short dataset name (e.g. ``"ml-100k"``).
        source: where the data came from (a path or a description).
        users_source: where the users table came from (named in errors about attributes).
    """

    interactions: pd.DataFrame
    users: pd.DataFrame | None
    items: pd.DataFrame | None
    schema: Schema = field(default_factory=Schema)
    name: str = "dataset"
    source: str = ""
    users_source: str = ""

    def __repr__(self) -> str:
        return (
            f"RawData(name={self.name!r}, interactions={len(self.interactions)}, "
            f"users={None if self.users is None else len(self.users)}, "
            f"items={None if self.items is None else len(self.items)}, "
            f"sensitive={self.schema.sensitive_names}, source={self.source!r})"
        )


# ---------------------------------------------------------------------------- schemas


def ml100k_schema() -> Schema:
    """Schema of ML-100K and ML-1M: gender (binary), age (ordinal, ML-1M bins), occupation."""
    return Schema(
        sensitive=(
            SensitiveAttr(name="gender", kind="binary"),
            SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS),
            SensitiveAttr(name="occupation", kind="categorical"),
        ),
        item_text=("title",),
        item_categories=("genres",),
    )


def attribute_names(names: str | Sequence[str], setting: str = "sensitive") -> list[str]:
    """Attribute names from a list or a comma-separated string, each given once.

    Raises:
        ConfigError: a name given twice, or a name that is not a non-empty string.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = list(names)
    bad = [n for n in out if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ConfigError(f"{setting}: attribute names must be non-empty text, got {bad[0]!r}")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(
            f"{setting}: attribute {dup[0]!r} is given more than once ({', '.join(out)}); "
            "list each attribute once"
        )
    return out


def infer_sensitive(
    users: pd.DataFrame | None, names: Sequence[str] | None, *, where: str = "users table"
) -> list[SensitiveAttr]:
    """Declare sensitive attributes given by column name, inferring their kind from the values.

    A numeric column named ``age`` becomes ``ordinal`` with :data:`ML1M_AGE_BINS` (checked first,
    so a small sample with two ages is still bucketed); a column with exactly two distinct values
    becomes ``binary``; anything else ``categorical``.

    Raises:
        DataError: no users table, a name that is not a user column (the message lists them), or
            a column holding lists, dicts or bytes.
        ConfigError: a name given twice.
    """
    if not names:
        return []
    names = attribute_names(names)
    if users is None:
        raise DataError(
            f"sensitive attributes {list(names)} need a users table; pass one (users=...)"
        )
    available = [c for c in users.columns if c != "user_id"]
    out: list[SensitiveAttr] = []
    for name in names:
        if name not in users.columns or name == "user_id":
            raise DataError(
                f"unknown sensitive attribute {name!r}; available user columns: {available}"
            )
        _check_scalars(users, (name,), where)
        values = users[name].dropna()
        numeric = len(values) > 0 and bool(pd.to_numeric(values, errors="coerce").notna().all())
        if numeric and name.lower() == "age":
            out.append(SensitiveAttr(name=name, kind="ordinal", bins=ML1M_AGE_BINS))
        elif values.nunique() == 2:
            out.append(SensitiveAttr(name=name, kind="binary"))
        else:
            out.append(SensitiveAttr(name=name, kind="categorical"))
    return out


def _table_schema(
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    sensitive: Sequence[str] | None,
    users_where: str = "users table",
) -> Schema:
    cols = [] if items is None else list(items.columns)
    return Schema(
        sensitive=tuple(infer_sensitive(users, sensitive, where=users_where)),
        item_text=tuple(c for c in ("title",) if c in cols),
        item_categories=tuple(c for c in ("genres",) if c in cols),
    )


# ---------------------------------------------------------------------------- low-level reading


def _read_bytes(path: Path, what: str = "file") -> bytes:
    if not path.exists():
        raise DataError(f"{what} not found: {path}; check the path or run `debiasrec data fetch`")
    if path.is_dir():
        raise DataError(f"{path} is a folder, expected a {what}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _check_not_empty(data: bytes, where: str) -> None:
    if not data.strip():
        raise DataError(f"{where} is empty; re-download or re-export it")


def _check_field_counts(
    data: bytes, sep: bytes, nfields: int, where: str, *, header_lines: int = 0
) -> None:
    """Raise on the first non-blank line whose number of fields is not ``nfields`` (vectorised)."""
    b = np.frombuffer(data, dtype=np.uint8)
    if len(b) == 0:
        return
    nl = np.flatnonzero(b == 10)
    ends = nl if b[-1] == 10 else np.append(nl, len(b))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    first = b[np.minimum(starts, len(b) - 1)]
    blank = (lengths == 0) | ((lengths == 1) & (first == 13))
    seps = np.flatnonzero(b == sep[0])
    counts = np.bincount(np.searchsorted(ends, seps), minlength=len(ends))[: len(ends)]
    bad = ~blank & (counts != nfields - 1)
    bad[:header_lines] = False
    if bad.any():
        k = int(np.argmax(bad))
        line = data[starts[k] : ends[k]].decode("latin-1").rstrip("\r")
        shown = line if len(line) <= 80 else line[:77] + "..."
        raise DataError(
            f"{where}, line {k + 1}: expected {nfields} fields, found {int(counts[k]) + 1} "
            f"({shown!r}); fix or remove that line"
        )


def _parse_delimited(
    data: bytes,
    where: str,
    *,
    sep: str,
    names: list[str],
    encoding: str,
    dtype: Mapping[str, type] | type | None = None,
    header_lines: int = 0,
) -> pd.DataFrame:
    """Parse a header-less (or header-skipped) delimited file with a fixed number of fields."""
    _check_not_empty(data, where)
    if len(sep) > 1:  # e.g. ML-1M's "::": swap for one byte so the C parser can be used
        data = data.replace(sep.encode(), b"\x1f")
        sep = "\x1f"
    _check_field_counts(data, sep.encode(), len(names), where, header_lines=header_lines)
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=None,
            names=names,
            skiprows=header_lines,
            quoting=csv.QUOTE_NONE,
            encoding=encoding,
            dtype=dtype,
            keep_default_na=False,  # only an empty field is missing ("None", "NA" are values)
            na_values=[""],
            engine="c",
        )
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where} cannot be decoded as {encoding} (byte {exc.start}); re-save it as {encoding}"
        ) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{where}: cannot parse ({exc})") from exc
    if df.empty:
        raise DataError(f"{where} has no data rows")
    return df


def _int_if_clean(s: pd.Series) -> pd.Series:
    """Convert to int64 when every value is an integer (as number or canonical text)."""
    if pd.api.types.is_integer_dtype(s.dtype):
        return s
    if s.isna().any() or len(s) == 0:
        return s
    num = pd.to_numeric(s, errors="coerce")
    if num.isna().any() or not np.all(np.mod(num.to_numpy(float), 1) == 0):
        return s
    as_int = num.astype(np.int64)
    if (
        not pd.api.types.is_numeric_dtype(s.dtype)
        and not (as_int.astype(str) == s.astype(str)).all()
    ):
        return s  # e.g. "007": keep text ids so that distinct ids stay distinct
    return as_int


def _numeric_if_clean(s: pd.Series) -> pd.Series:
    """Convert to numbers when every non-missing value is numeric; else keep as read (dirty)."""
    num = pd.to_numeric(s, errors="coerce")
    if (num.isna() & s.notna()).any():
        return s
    return num


def _year(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").round().astype("Int64")


def _split_tuple(s: pd.Series, sep: str | None) -> pd.Series:
    """Split text on ``sep`` (whitespace when None) into tuples; missing/blank -> ()."""

    def conv(v: object) -> tuple[str, ...]:
        if isinstance(v, tuple):
            return v
        if isinstance(v, (list, np.ndarray)):
            return tuple(str(x) for x in v)
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return ()
        return tuple(p.strip() for p in str(v).split(sep) if p.strip())

    return pd.Series([conv(v) for v in s], index=s.index, dtype=object)


# ---------------------------------------------------------------------------- file sources


def _file_reader(path: Path) -> tuple[Callable[[str], tuple[bytes, str]], Callable[[str], bool]]:
    """``(read(name) -> (bytes, label), has(name))`` over a folder or a zip archive."""
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            zf = zipfile.ZipFile(path)
            members = [m for m in zf.namelist() if not m.endswith("/")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot open zip archive {path}: {exc}") from exc

        def find(name: str) -> str | None:
            hits = sorted((m for m in members if m.rsplit("/", 1)[-1] == name), key=len)
            return hits[0] if hits else None

        def read_zip(name: str) -> tuple[bytes, str]:
            member = find(name)
            if member is None:
                raise DataError(
                    f"zip archive {path} has no {name}; expected the GroupLens archive "
                    "(re-download it or pass the unzipped folder)"
                )
            return zf.read(member), f"{path}:{member}"

        return read_zip, lambda name: find(name) is not None
    if path.is_dir():

        def read_dir(name: str) -> tuple[bytes, str]:
            p = path / name
            return _read_bytes(p), str(p)

        return read_dir, lambda name: (path / name).exists()
    if not path.exists():
        raise DataError(f"no such file or folder: {path}")
    raise DataError(f"{path} is neither a folder nor a zip archive")


def _resolve_nested(path: Path, marker: str) -> Path:
    """Accept both ``ml-100k/`` and its parent (as left by unzipping): find the folder holding marker."""
    if path.is_dir() and not (path / marker).exists():
        subs = [d for d in path.iterdir() if d.is_dir() and (d / marker).exists()]
        if len(subs) == 1:
            return subs[0]
    return path


# ---------------------------------------------------------------------------- MovieLens


def load_ml100k(path: str | Path | None = None) -> RawData:
    """Load MovieLens 100K.

    Args:
        path: a GroupLens folder or ``ml-100k.zip`` (``u.data``, ``u.user``, ``u.item``), or a
            RecBole atomic folder (``ml-100k.inter/.user/.item``). ``None``: the fetch cache
            (:func:`debiasrec.data.fetch.cache_dir`) if present, else the copy inside the
            installed ``recbole`` package, else download (:func:`debiasrec.data.fetch.fetch`).

    Returns:
        Raw frames with users ``age`` (int), ``gender``, ``occupation``, ``zip_code`` and items
        ``title``, ``year``, ``genres``; schema from :func:`ml100k_schema`.

    Raises:
        DataError: missing or malformed files, checksum mismatch of fetched files.
    """
    from debiasrec.data import fetch as _fetch

    if path is None:
        folder = _fetch.cached("ml-100k")
        if folder is None:
            folder = _fetch.recbole_ml100k_dir(verify=True)
        if folder is None:
            folder = _fetch.fetch("ml-100k")
        raw = load_ml100k(folder)
        raw.source = str(folder)
        return raw
    path = Path(path)
    if path.is_dir():
        path = _resolve_nested(path, "u.data")
        if not (path / "u.data").exists() and any(path.glob("*.inter")):
            raw = load_atomic(path, "ml-100k" if (path / "ml-100k.inter").exists() else None)
            return _ml100k_from_atomic(raw, path)
    read, has = _file_reader(path)
    inter_b, inter_where = read("u.data")
    inter = _parse_delimited(
        inter_b,
        inter_where,
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
        encoding="latin-1",
    )
    user_b, user_where = read("u.user")
    users = _parse_delimited(
        user_b,
        user_where,
        sep="|",
        names=["user_id", "age", "gender", "occupation", "zip_code"],
        encoding="latin-1",
        dtype={"gender": str, "occupation": str, "zip_code": str},
    )
    users["age"] = _int_if_clean(users["age"])
    genres = ML100K_GENRES
    if has("u.genre"):
        gb, gwhere = read("u.genre")
        g = _parse_delimited(gb, gwhere, sep="|", names=["genre", "code"], encoding="latin-1")
        genres = tuple(g.sort_values("code")["genre"].astype(str))
    item_b, item_where = read("u.item")
    raw_items = _parse_delimited(
        item_b,
        item_where,
        sep="|",
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *genres],
        encoding="latin-1",
        dtype={"title": str, "release_date": str, "video_release_date": str, "imdb_url": str},
    )
    items = _split_title_year(raw_items[["item_id", "title"]].copy())
    from_date = _year(raw_items["release_date"].str[-4:])
    items["year"] = items["year"].fillna(from_date)
    flags = raw_items[list(genres)].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    names = np.asarray(genres, dtype=object)
    items["genres"] = pd.Series([tuple(names[row]) for row in flags], dtype=object)
    items["release_date"] = raw_items["release_date"]
    items["imdb_url"] = raw_items["imdb_url"]
    return RawData(
        interactions=inter,
        users=users,
        items=items,
        schema=ml100k_schema(),
        name="ml-100k",
        source=str(path),
        users_source=user_where,
    )


def _split_title_year(items: pd.DataFrame) -> pd.DataFrame:
    """``"Toy Story (1995)"`` -> title ``"Toy Story"``, year 1995 (titles without a year kept)."""
    title = items["title"].astype("string")
    parts = title.str.extract(_TITLE_YEAR)
    items["title"] = parts[0].fillna(title.str.strip()).astype(object)
    items["year"] = _year(parts[1])
    return items


def _ml100k_from_atomic(raw: RawData, path: Path) -> RawData:
    for label, frame, cols in (
        ("users", raw.users, ("user_id", "age", "gender", "occupation")),
        ("items", raw.items, ("item_id", "title", "genres")),
    ):
        if frame is None:
            raise DataError(
                f"RecBole folder {path} has no {label} file (.{label[:-1]}); ML-100K needs it"
            )
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(
                f"{label} file in {path} lacks columns {missing}; found {list(frame.columns)}"
            )
    assert raw.users is not None  # for type checkers; checked above
    raw.users["age"] = _int_if_clean(raw.users["age"])
    raw.schema = ml100k_schema()
    raw.name = "ml-100k"
    return raw


def load_ml1m(path: str | Path | None = None) -> RawData:
    """Load MovieLens 1M from its folder or ``ml-1m.zip`` (``ratings.dat``, ``users.dat``, ``movies.dat``).

    Files are ``::``-separated latin-1 text. Ages are ML-1M's codes (1, 18, 25, 35, 45, 50, 56),
    bucketed by :data:`ML1M_AGE_BINS`; occupation codes are mapped to their names
    (:data:`ML1M_OCCUPATIONS`); genres are ``|``-separated. ``None``: the fetch cache, else
    download (:func:`debiasrec.data.fetch.fetch`).

    Raises:
        DataError: missing or malformed files.
    """
    if path is None:
        from debiasrec.data.fetch import fetch

        path = fetch("ml-1m")
    path = _resolve_nested(Path(path), "ratings.dat")
    read, _ = _file_reader(path)
    rb, rwhere = read("ratings.dat")
    inter = _parse_delimited(
        rb,
        rwhere,
        sep="::",
        names=["user_id", "item_id", "rating", "timestamp"],
        encoding="latin-1",
    )
    ub, uwhere = read("users.dat")
    users = _parse_delimited(
        ub,
        uwhere,
        sep="::",
        names=["user_id", "gender", "age", "occupation", "zip_code"],
        encoding="latin-1",
        dtype={"gender": str, "zip_code": str},
    )
    users["age"] = _int_if_clean(users["age"])
    occ = pd.to_numeric(users["occupation"], errors="coerce")
    users["occupation"] = occ.map(ML1M_OCCUPATIONS).fillna(users["occupation"].astype(str))
    users["occupation"] = users["occupation"].astype(str)
    mb, mwhere = read("movies.dat")
    movies = _parse_delimited(
        mb,
        mwhere,
        sep="::",
        names=["item_id", "title", "genres"],
        encoding="latin-1",
        dtype={"title": str, "genres": str},
    )
    items = _split_title_year(movies[["item_id", "title"]].copy())
    items["genres"] = _split_tuple(movies["genres"], "|")
    return RawData(
        interactions=inter,
        users=users[["user_id", "age", "gender", "occupation", "zip_code"]],
        items=items,
        schema=ml100k_schema(),
        name="ml-1m",
        source=str(path),
        users_source=uwhere,
    )


# ---------------------------------------------------------------------------- RecBole atomic


def _read_atomic_file(path: Path) -> pd.DataFrame:
    data = _read_bytes(path)
    where = str(path)
    _check_not_empty(data, where)
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    fields: list[str] = []
    types: list[str] = []
    for spec in header.split("\t"):
        if ":" not in spec:
            raise DataError(
                f"{where}, line 1: header field {spec!r} is not 'name:type' (RecBole atomic "
                "headers look like 'user_id:token\\titem_id:token\\trating:float')"
            )
        fname, ftype = spec.rsplit(":", 1)
        if ftype not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(
                f"{where}, line 1: field {fname!r} has unknown type {ftype!r}; "
                "use token, token_seq, float or float_seq"
            )
        fields.append(fname.strip())
        types.append(ftype)
    df = _parse_delimited(
        data,
        where,
        sep="\t",
        names=fields,
        encoding="utf-8",
        dtype=str,
        header_lines=1,
    )
    for fname, ftype in zip(fields, types, strict=True):
        col = df[fname]
        if ftype == "float":
            df[fname] = _numeric_if_clean(col)
        elif ftype == "token_seq" and fname not in ("movie_title", "title"):
            df[fname] = _split_tuple(col, None)
        elif ftype == "float_seq":
            df[fname] = pd.Series(
                [tuple(float(x) for x in t) for t in _split_tuple(col, None)], dtype=object
            )
    df = df.rename(columns={k: v for k, v in _ATOMIC_RENAMES.items() if k in df.columns})
    for idcol in ("user_id", "item_id"):
        if idcol in df.columns:
            df[idcol] = _int_if_clean(df[idcol])
    if "year" in df.columns:
        df["year"] = _year(df["year"])
    if "age" in df.columns:
        df["age"] = _int_if_clean(df["age"])
    return df


def load_atomic(
    path: str | Path, name: str | None = None, *, sensitive: Sequence[str] | None = None
) -> RawData:
    """Load RecBole atomic files ``<name>.inter`` (required), ``<name>.user``, ``<name>.item``.

    Headers are typed ``field:type`` (``token``, ``float``, ``token_seq``, ``float_seq``);
    ``token_seq`` becomes a tuple of strings (titles stay text) and ``movie_title``,
    ``release_year``, ``class`` become ``title``, ``year``, ``genres``.

    Args:
        path: the folder holding the atomic files.
        name: the file stem; default the folder name, else the only ``*.inter`` in the folder.
        sensitive: user columns to declare sensitive (kinds inferred, see :func:`infer_sensitive`).

    Raises:
        DataError: missing/ambiguous ``.inter``, malformed header or lines, missing id columns.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"RecBole atomic data must be a folder; {folder} is not one")
    if name is None:
        if (folder / f"{folder.name}.inter").exists():
            name = folder.name
        else:
            inters = sorted(folder.glob("*.inter"))
            if len(inters) != 1:
                raise DataError(
                    f"{folder} has {len(inters)} .inter files "
                    f"({[p.name for p in inters]}); pass name= to choose one"
                )
            name = inters[0].stem
    inter_path = folder / f"{name}.inter"
    inter = _read_atomic_file(inter_path)
    _require(inter, ("user_id", "item_id"), str(inter_path))
    users = items = None
    _check_scalars(inter, ("user_id", "item_id", "rating", "timestamp"), str(inter_path))
    if (folder / f"{name}.user").exists():
        users = _read_atomic_file(folder / f"{name}.user")
        _require(users, ("user_id",), str(folder / f"{name}.user"))
        _check_scalars(users, ("user_id",), str(folder / f"{name}.user"))
    if (folder / f"{name}.item").exists():
        items = _read_atomic_file(folder / f"{name}.item")
        _require(items, ("item_id",), str(folder / f"{name}.item"))
        _check_scalars(items, ("item_id",), str(folder / f"{name}.item"))
    return RawData(
        interactions=inter,
        users=users,
        items=items,
        schema=_table_schema(users, items, sensitive, str(folder / f"{name}.user")),
        name=name,
        source=str(folder),
        users_source=str(folder / f"{name}.user") if users is not None else "",
    )


# ---------------------------------------------------------------------------- CSV / Parquet


def _require(df: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1 and any(d in str(df.columns[0]) for d in ",;\t|"):
            hint = " (one column whose name holds a delimiter: is the delimiter right?)"
        raise DataError(
            f"{where} has no column {missing[0]!r} (required: {list(cols)}); found columns "
            f"{list(df.columns)}{hint}; rename them or pass columns={{'your_name': '{missing[0]}'}}"
        )


#: Interaction columns that must hold one scalar per row.
_INTERACTION_SCALARS = ("user_id", "item_id", "rating", "timestamp")

#: ``infer_dtype`` kinds of columns whose values are all plain scalars (no check needed).
_SCALAR_KINDS = frozenset(
    {"string", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty",
     "datetime64", "datetime", "date", "timedelta64", "timedelta", "time", "period", "categorical"}
)  # fmt: skip


def _check_scalars(df: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    """Raise if a column that must hold one number or text per row holds lists, dicts or bytes.

    Such values come from Parquet list/struct/binary columns (or pandas frames); ids and
    attributes made of them cannot be compared, counted or written back.
    """
    for col in cols:
        if col not in df.columns:
            continue
        s = df[col]
        if not pd.api.types.is_object_dtype(s.dtype) and not isinstance(s.dtype, pd.ArrowDtype):
            continue  # numeric, string, categorical, ... dtypes hold scalars
        kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind in _SCALAR_KINDS:
            continue
        values = s.to_numpy(dtype=object)
        bad = np.fromiter(
            (isinstance(v, (list, tuple, dict, set, np.ndarray, bytes, bytearray)) for v in values),
            dtype=bool,
            count=len(values),
        )
        if not bad.any():
            continue
        i = int(np.argmax(bad))
        v = values[i]
        what = (
            "a dict" if isinstance(v, dict) else "bytes" if isinstance(v, (bytes, bytearray)) else "a list"
        )
        shown = repr(v.tolist() if isinstance(v, np.ndarray) else v)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        fix = (
            "store the column as text (a UTF-8 string column), not as binary"
            if what == "bytes"
            else "give one value per row (explode or flatten the column)"
        )
        raise DataError(
            f"{where}: column {col!r} must hold one number or text per row, but data row {i + 1} "
            f"holds {what} ({shown}; {int(bad.sum())} such rows); {fix}"
        )


def _narrow_ids(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Integer id columns as int32 when every value fits (halves their memory; same ids)."""
    for col in cols:
        if col in df.columns and df[col].dtype == np.int64 and len(df):
            lo, hi = df[col].min(), df[col].max()
            if lo >= np.iinfo(np.int32).min and hi <= np.iinfo(np.int32).max:
                df[col] = df[col].astype(np.int32)
    return df


def check_delimiter(delimiter: str | None) -> str | None:
    """A CSV delimiter: one character, not a line break or quote; ``"\\t"``/``"tab"`` = tab.

    Raises:
        ConfigError: what is wrong with the given delimiter.
    """
    if delimiter is None:
        return None
    if not isinstance(delimiter, str):
        raise ConfigError(f"delimiter must be one character, got {delimiter!r}")
    if delimiter in ("\\t", "tab", "TAB"):
        return "\t"
    if len(delimiter) != 1:
        raise ConfigError(
            f"delimiter must be exactly one character, got {delimiter!r} "
            f"({len(delimiter)} characters); e.g. ',' ';' '|' or '\\t' (tab), or leave it out "
            "to detect it"
        )
    if delimiter in '\r\n"':
        raise ConfigError(
            f"delimiter {delimiter!r} cannot separate fields (it ends lines or quotes text); "
            "use e.g. ',' ';' '|' or '\\t'"
        )
    return delimiter


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise ``KeyboardInterrupt``.

    pandas reads a large CSV path with worker threads over a memory map; a ``KeyboardInterrupt``
    in the middle leaves the reading function while a worker still parses, and the process dies
    of a segmentation fault instead of exiting cleanly. A second Ctrl-C interrupts at once.
    Only in the main thread, and only when SIGINT has Python's default handler (an
    application's own handler is left alone); the previous handler is always restored.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pending:
        raise KeyboardInterrupt


def _infer_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in ("csv", "parquet"):
            raise DataError(f"unknown format {fmt!r} for {path}; use 'csv' or 'parquet'")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".csv", ".tsv", ".txt", ".dat", ".tab", ""):
        return "csv"
    raise DataError(
        f"cannot tell the format of {path} from its extension; pass fmt='csv' or 'parquet'"
    )


def _sniff(path: Path, encoding: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding=encoding, newline="") as f:
            sample = f.read(65536)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} cannot be decoded as {encoding}; pass encoding='latin-1' (or the file's "
            "encoding) or re-save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if "\n" in sample.rstrip("\n"):
        sample = sample[: sample.rfind("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_table(
    path: str | Path, *, fmt: str | None, delimiter: str | None, encoding: str, what: str
) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} file not found: {p}")
    if p.is_dir():
        raise DataError(f"{what} path {p} is a folder; pass the file")
    if p.stat().st_size == 0:
        raise DataError(f"{what} file {p} is empty")
    kind = _infer_format(p, fmt)
    if kind == "parquet":
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"cannot read Parquet file {p}: {exc}") from exc
    else:
        sep = delimiter if delimiter is not None else _sniff(p, encoding)
        try:
            with interrupts_deferred():
                df = pd.read_csv(p, sep=sep, encoding=encoding, engine="c")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{p} cannot be decoded as {encoding}; pass encoding='latin-1' (or the file's "
                "encoding) or re-save it as UTF-8"
            ) from exc
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{what} file {p} is empty") from exc
        except pd.errors.ParserError as exc:
            msg = str(exc).replace("Error tokenizing data. C error: ", "")
            raise DataError(
                f"{p}: {msg} (delimiter {sep!r}; header is line 1); fix that line or pass "
                "delimiter="
            ) from exc
    if df.empty:
        raise DataError(f"{what} file {p} has a header but no rows")
    return df


def _standardise(
    df: pd.DataFrame, columns: Mapping[str, str] | None, required: Sequence[str], where: str
) -> pd.DataFrame:
    df = df.rename(columns=lambda c: str(c).strip())
    if columns:
        df = df.rename(columns=dict(columns))
    aliases = {k: v for k, v in _TABLE_ALIASES.items() if k in df.columns and v not in df.columns}
    df = df.rename(columns=aliases)
    _require(df, required, where)
    return df


def _finish_items(items: pd.DataFrame, genre_sep: str) -> pd.DataFrame:
    if "genres" in items.columns:
        items["genres"] = _split_tuple(items["genres"], genre_sep)
    return items


def load_table(
    interactions: str | Path,
    users: str | Path | None = None,
    items: str | Path | None = None,
    *,
    fmt: str | None = None,
    delimiter: str | None = None,
    columns: Mapping[str, str] | None = None,
    genre_sep: str = "|",
    sensitive: Sequence[str] | None = None,
    name: str | None = None,
    encoding: str = "utf-8",
) -> RawData:
    """Load interactions (and optional users/items tables) from CSV or Parquet files.

    Args:
        interactions: file with ``user_id``, ``item_id`` and optionally ``rating``, ``timestamp``.
        users: file with ``user_id`` and attribute columns.
        items: file with ``item_id`` and e.g. ``title``, ``genres`` (``genre_sep``-separated).
        fmt: ``"csv"`` or ``"parquet"``; inferred from each file's extension when None.
        delimiter: CSV delimiter; sniffed (``, ; tab |``) when None.
        columns: renames applied to every table, source name -> standard name.
        genre_sep: separator of the ``genres`` column.
        sensitive: user columns to declare sensitive (kinds inferred, see :func:`infer_sensitive`).
        name: dataset name (default: the interactions file stem).
        encoding: text encoding of CSV files.

    Raises:
        DataError: missing/empty/unreadable files, bad lines, missing required columns, unknown
            sensitive attribute names.
    """
    ipath = Path(interactions)
    delimiter = check_delimiter(delimiter)
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ConfigError(
            f"unknown text encoding {encoding!r}; use e.g. 'utf-8' or 'latin-1'"
        ) from None
    if sensitive is not None:
        sensitive = attribute_names(sensitive)

    def read(
        p: str | Path, what: str, required: Sequence[str], scalars: Sequence[str]
    ) -> pd.DataFrame:
        df = _read_table(p, fmt=fmt, delimiter=delimiter, encoding=encoding, what=what)
        df = _standardise(df, columns, required, f"{what} file {p}")
        _check_scalars(df, scalars, f"{what} file {p}")
        return _narrow_ids(df, ("user_id", "item_id"))

    inter = read(ipath, "interactions", ("user_id", "item_id"), _INTERACTION_SCALARS)
    u = None if users is None else read(users, "users", ("user_id",), ("user_id",))
    it = (
        None
        if items is None
        else _finish_items(read(items, "items", ("item_id",), ("item_id",)), genre_sep)
    )
    stem = ipath.name.split(".")[0]
    return RawData(
        interactions=inter,
        users=u,
        items=it,
        schema=_table_schema(u, it, sensitive, f"users file {users}"),
        name=name or stem,
        source=str(ipath),
        users_source="" if users is None else f"users file {users}",
    )


def from_pandas(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    genre_sep: str = "|",
    sensitive: Sequence[str] | None = None,
    name: str = "dataset",
) -> RawData:
    """Wrap in-memory frames as :class:`RawData` (copies; same conventions as :func:`load_table`).

    Raises:
        DataError: a non-DataFrame argument, missing required columns, unknown sensitive names.
    """
    for label, df in (("interactions", interactions), ("users", users), ("items", items)):
        if df is not None and not isinstance(df, pd.DataFrame):
            raise DataError(f"{label} must be a pandas DataFrame, got {type(df).__name__}")
    inter = _standardise(interactions.copy(), columns, ("user_id", "item_id"), "interactions")
    _check_scalars(inter, _INTERACTION_SCALARS, "interactions")
    u = None if users is None else _standardise(users.copy(), columns, ("user_id",), "users table")
    if u is not None:
        _check_scalars(u, ("user_id",), "users table")
    it = (
        None
        if items is None
        else _finish_items(
            _standardise(items.copy(), columns, ("item_id",), "items table"), genre_sep
        )
    )
    if it is not None:
        _check_scalars(it, ("item_id",), "items table")
    return RawData(
        interactions=inter,
        users=u,
        items=it,
        schema=_table_schema(u, it, sensitive),
        name=name,
        source="pandas",
        users_source="" if u is None else "users table",
    )


# ---------------------------------------------------------------------------- dispatcher


def load(source: str | Path, **kw: object) -> RawData:
    """Load a dataset by name or path.

    ``"ml-100k"``/``"ml100k"`` -> :func:`load_ml100k`; ``"ml-1m"``/``"ml1m"`` -> :func:`load_ml1m`
    (cache or download); a folder (or zip) with ``u.data`` -> ML-100K, with ``ratings.dat`` ->
    ML-1M, with ``*.inter`` -> :func:`load_atomic`; any other file -> :func:`load_table` (``kw``
    are passed on, e.g. ``users=``, ``items=``, ``sensitive=``).

    Raises:
        DataError: an unknown name or path, or options that the chosen loader does not take.
    """
    s = str(source)
    p = Path(s).expanduser()

    def no_kw(what: str) -> None:
        if kw:
            raise DataError(f"options {sorted(kw)} do not apply to {what} (loaded from {s})")

    if not p.exists():
        key = s.lower().replace("_", "-")
        if key in ("ml-100k", "ml100k"):
            no_kw("ML-100K")
            return load_ml100k()
        if key in ("ml-1m", "ml1m"):
            no_kw("ML-1M")
            return load_ml1m()
        raise DataError(
            f"{s!r} is neither an existing file or folder nor a known dataset name "
            "(known: 'ml-100k', 'ml-1m')"
        )
    if p.is_dir():
        if (_resolve_nested(p, "u.data") / "u.data").exists():
            no_kw("ML-100K")
            return load_ml100k(p)
        if (_resolve_nested(p, "ratings.dat") / "ratings.dat").exists():
            no_kw("ML-1M")
            return load_ml1m(p)
        if any(p.glob("*.inter")):
            other = sorted(set(kw) - {"name", "sensitive"})
            if other:
                raise DataError(
                    f"options {other} do not apply to RecBole atomic files (loaded from {s}); "
                    "the folder's .user/.item files are used"
                )
            return load_atomic(p, **kw)  # type: ignore[arg-type]
        raise DataError(
            f"folder {p} holds no known layout (u.data for ML-100K, ratings.dat for ML-1M, "
            "*.inter for RecBole atomic); pass the interactions file instead"
        )
    if zipfile.is_zipfile(p):
        _, has = _file_reader(p)
        if has("u.data"):
            no_kw("ML-100K")
            return load_ml100k(p)
        if has("ratings.dat"):
            no_kw("ML-1M")
            return load_ml1m(p)
        raise DataError(f"zip archive {p} has neither u.data (ML-100K) nor ratings.dat (ML-1M)")
    return load_table(p, **kw)  # type: ignore[arg-type]
