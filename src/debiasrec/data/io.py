"""Datasets and splits on disk: schema JSON + Parquet (the one way they are written and read).

Layout of :meth:`Dataset.save(DIR) <debiasrec.data.dataset.Dataset.save>`::

    DIR/dataset.json          format version, name, schema, sizes, column kinds, fingerprint
    DIR/users.parquet         user_id + the user table (one row per user code, in code order)
    DIR/items.parquet         item_id + the item table (one row per item code, in code order)
    DIR/interactions.parquet  user_id, item_id [, rating, timestamp, weight]  (original ids)

A :class:`~debiasrec.data.split.Split` shares one users/items table, so
:meth:`Split.save(DIR) <debiasrec.data.split.Split.save>` writes ``train.parquet``,
``valid.parquet`` and ``test.parquet`` (interactions with original ids: the result-folder
contract) beside the same ``users.parquet``, ``items.parquet`` and ``dataset.json``.

Reading back gives the same codes, tables, schema and weights: the fingerprint is checked. Ids
that Parquet cannot hold in one column (a vocabulary mixing integers and strings, e.g. real users
plus appended synthetic ones) are kept in ``dataset.json`` and the interactions are stored by code.
Multi-valued category cells (tuples such as genres) come back as tuples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from debiasrec.data.schema import Schema
from debiasrec.errors import DataError

if TYPE_CHECKING:
    from debiasrec.data.dataset import Dataset
    from debiasrec.data.split import Split

FORMAT = "debiasrec-dataset"
VERSION = 1
PARTS = ("train", "valid", "test")


def _mixed(vocab: pd.Index) -> bool:
    """Ids Parquet cannot hold as one typed column (anything but all-str in an object index)."""
    if vocab.dtype != object:
        return False
    kinds = {type(x) for x in vocab}
    return not kinds <= {str}


def _json_id(x: Any) -> Any:
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    return str(x)


def _tuple_columns(table: pd.DataFrame) -> list[str]:
    out = []
    for col in table.columns:
        s = table[col]
        if s.dtype == object:
            present = s.dropna()
            if len(present) and all(isinstance(v, tuple) for v in present):
                out.append(col)
    return out


def _table_frame(ds: Dataset, kind: str) -> tuple[pd.DataFrame, list[Any] | None]:
    vocab = ds.user_vocab if kind == "user" else ds.item_vocab
    table = (ds.user_table if kind == "user" else ds.item_table).copy()
    table = table.reset_index(drop=True)
    if _mixed(vocab):
        return table, [_json_id(x) for x in vocab]
    table.insert(0, f"{kind}_id", vocab.to_numpy())
    return table, None


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
    except (ValueError, TypeError, ImportError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: a column Parquet cannot hold ({exc})") from exc
    os.replace(tmp, path)


def _interactions(ds: Dataset, by_code: bool) -> pd.DataFrame:
    frame = ds.interactions_frame(original_ids=not by_code)
    if by_code:
        frame = frame.rename(columns={"user_id": "user_code", "item_id": "item_code"})
    return frame


def _write_tables(ds: Dataset, folder: Path, extra: dict[str, Any]) -> bool:
    """users.parquet, items.parquet and dataset.json; returns whether interactions go by code."""
    users, user_ids = _table_frame(ds, "user")
    items, item_ids = _table_frame(ds, "item")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "name": ds.name,
        "schema": ds.schema.model_dump(mode="json"),
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "user_ids": user_ids,
        "item_ids": item_ids,
        "tuple_columns": {
            "user": _tuple_columns(ds.user_table),
            "item": _tuple_columns(ds.item_table),
        },
        **extra,
    }
    _write_parquet(users, folder / "users.parquet")
    _write_parquet(items, folder / "items.parquet")
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return user_ids is not None or item_ids is not None


def save_dataset(ds: Dataset, folder: str | Path) -> None:
    """Write ``ds`` into ``folder`` (created); see the module docstring for the layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_code = _mixed(ds.user_vocab) or _mixed(ds.item_vocab)
    _write_parquet(_interactions(ds, by_code), folder / "interactions.parquet")
    _write_tables(
        ds, folder, {"kind": "dataset", "by_code": by_code, "fingerprint": ds.fingerprint()}
    )


def save_split(split: Split, folder: str | Path) -> None:
    """Write a split: ``{train,valid,test}.parquet`` with shared tables (module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = split.train
    for part in split:
        if part.n_users != train.n_users or not part.user_vocab.equals(train.user_vocab):
            raise DataError("the parts of a split must share their user vocabulary")
    by_code = _mixed(train.user_vocab) or _mixed(train.item_vocab)
    for name, part in zip(PARTS, split, strict=True):
        _write_parquet(_interactions(part, by_code), folder / f"{name}.parquet")
    _write_tables(
        train,
        folder,
        {
            "kind": "split",
            "by_code": by_code,
            "names": [p.name for p in split],
            "fingerprints": [p.fingerprint() for p in split],
        },
    )


# ---------------------------------------------------------------------------------------- read
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path.parent} holds no saved dataset ({path.name} is missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable dataset description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a debiasrec dataset description")
    if int(meta.get("version", 0)) > VERSION:
        raise DataError(
            f"{path}: written by a newer debiasrec (format {meta.get('version')}); upgrade"
        )
    return meta


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path} is missing")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: cannot read it as Parquet ({exc})") from None


def _vocab_and_table(
    folder: Path, meta: dict[str, Any], kind: str
) -> tuple[pd.Index, pd.DataFrame]:
    table = _read_parquet(folder / f"{kind}s.parquet")
    ids = meta.get(f"{kind}_ids")
    if ids is not None:
        vocab = pd.Index(ids, dtype=object)
    else:
        col = f"{kind}_id"
        if col not in table.columns:
            raise DataError(f"{folder / f'{kind}s.parquet'} has no {col!r} column")
        vocab = pd.Index(table[col])
        table = table.drop(columns=[col])
    for col in meta.get("tuple_columns", {}).get(kind, []):
        table[col] = [
            tuple(v.tolist())
            if isinstance(v, np.ndarray)
            else (tuple(v) if isinstance(v, list) else v)
            for v in table[col]
        ]
    return vocab, table


def _from_frame(
    frame: pd.DataFrame,
    path: Path,
    meta: dict[str, Any],
    user_vocab: pd.Index,
    item_vocab: pd.Index,
    user_table: pd.DataFrame,
    item_table: pd.DataFrame,
    name: str,
) -> Dataset:
    from debiasrec.data.dataset import Dataset, _codes

    need = ("user_code", "item_code") if meta.get("by_code") else ("user_id", "item_id")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}")
    if meta.get("by_code"):
        users = frame["user_code"].to_numpy(np.int64)
        items = frame["item_code"].to_numpy(np.int64)
    else:
        users = _codes(user_vocab, frame["user_id"])
        items = _codes(item_vocab, frame["item_id"])
    for label, codes, n in (("user", users, len(user_vocab)), ("item", items, len(item_vocab))):
        bad = (codes < 0) | (codes >= n)
        if bad.any():
            raise DataError(
                f"{path}: row {int(np.flatnonzero(bad)[0])} names a {label} absent from the "
                f"saved {label}s table"
            )
    return Dataset(
        users,
        items,
        user_vocab=user_vocab,
        item_vocab=item_vocab,
        ratings=frame["rating"].to_numpy(np.float32) if "rating" in frame else None,
        timestamps=frame["timestamp"].to_numpy(np.int64) if "timestamp" in frame else None,
        weights=frame["weight"].to_numpy(np.float32) if "weight" in frame else None,
        user_table=user_table,
        item_table=item_table,
        schema=Schema.model_validate(meta["schema"]),
        name=name,
    )


def _check_fingerprint(ds: Dataset, expected: str | None, where: Path) -> None:
    if expected is not None and ds.fingerprint() != expected:
        raise DataError(
            f"{where}: the data read back differs from what was saved (fingerprint "
            f"{ds.fingerprint()} != {expected}); the files were changed or are corrupt"
        )


def _open(
    folder: Path, kind: str
) -> tuple[dict[str, Any], pd.Index, pd.DataFrame, pd.Index, pd.DataFrame]:
    """The description and the user and item vocabularies and tables of a saved ``kind``."""
    meta = _read_json(folder / "dataset.json")
    if meta.get("kind") != kind:
        raise DataError(f"{folder} holds a saved {meta.get('kind')}, not a {kind}")
    uv, ut = _vocab_and_table(folder, meta, "user")
    iv, it = _vocab_and_table(folder, meta, "item")
    return meta, uv, ut, iv, it


def load_saved_dataset(folder: str | Path) -> Dataset:
    """Read a dataset written by :func:`save_dataset`.

    Raises:
        DataError: missing or corrupt files (the message names the file).
    """
    folder = Path(folder)
    meta, uv, ut, iv, it = _open(folder, "dataset")
    path = folder / "interactions.parquet"
    ds = _from_frame(_read_parquet(path), path, meta, uv, iv, ut, it, str(meta.get("name")))
    _check_fingerprint(ds, meta.get("fingerprint"), folder)
    return ds


def load_saved_split(folder: str | Path) -> Split:
    """Read a split written by :func:`save_split`.

    Raises:
        DataError: missing or corrupt files (the message names the file).
    """
    from debiasrec.data.split import Split

    folder = Path(folder)
    meta, uv, ut, iv, it = _open(folder, "split")
    names: Sequence[str] = meta.get("names") or [f"{meta.get('name')}:{p}" for p in PARTS]
    fps: Sequence[str | None] = meta.get("fingerprints") or [None] * 3
    parts = []
    for part, name, fp in zip(PARTS, names, fps, strict=True):
        path = folder / f"{part}.parquet"
        ds = _from_frame(_read_parquet(path), path, meta, uv, iv, ut, it, name)
        _check_fingerprint(ds, fp, path)
        parts.append(ds)
    return Split(*parts)


__all__ = ["load_saved_dataset", "load_saved_split", "save_dataset", "save_split"]
